"""Under gunicorn each worker's mail sender starts with the worker (gunicorn.conf.py's post_worker_init): mail
queued by another process (here the test's own app on the same database) goes out without the worker queueing any."""

from __future__ import annotations

import time

from app import create_app
from app.extensions import db
from app.mail.outbox import queue
from tests.functional.mail.conftest import mail_settings
from tests.functional.served import gunicorn_with_a_key
from tests.support import close_app


def test_a_worker_sends_mail_another_process_queued(tmp_path, smtp):
    settings = {**mail_settings(smtp), "MAIL_SEND_SECONDS": "0.2"}
    with gunicorn_with_a_key(tmp_path, **settings) as served:
        # Same database and settings as the server, but a sender of its own that would wait an hour: only a worker's
        # sender can deliver this in time.
        queuing = create_app({**{name: value for name, value in served.env.items() if name not in ("PATH", "HOME")},
                              "MAIL_SEND_SECONDS": "3600"})
        try:
            with queuing.app_context():
                queue("ada@example.com", "Your key expires soon", "Key load expires.",
                      reason="you own a key that expires", settings_link="/account#notifications")
                db.session.commit()
        finally:
            close_app(queuing)
        deadline = time.monotonic() + 15
        while not smtp.recorder.received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [rcpt for _, rcpt, _ in smtp.recorder.received] == [["ada@example.com"]]
    assert smtp.recorder.messages()[0]["Subject"] == "Your key expires soon"
