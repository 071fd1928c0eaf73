"""What the mail tests read of the mail: deliver the outbox to the SMTP server, and the plain-text part."""

from __future__ import annotations

import threading

from app.mail.core import MailCore


def delivered(app, smtp) -> list:
    """Deliver the outbox, then every message the SMTP server received so far."""
    MailCore.of(app).sender.send_due()
    return smtp.recorder.messages()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def all_at_once(call, apps) -> list:
    """Call `call(app)` for every app (a process of its own, on one database), each in a thread, released together
    by a barrier; returns what the calls returned. Any call's exception fails the test here, in its own thread."""
    barrier = threading.Barrier(len(apps))
    results, errors = [], []

    def run(app):
        barrier.wait()
        try:
            results.append(call(app))
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    return results
