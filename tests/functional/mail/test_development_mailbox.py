"""Development without MAIL_URL: mail goes through the outbox into .eml files in the instance folder, and the log."""

from __future__ import annotations

import logging
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from app.extensions import db
from app.mail.core import MailCore
from app.mail.outbox import queue


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record) -> None:
        self.lines.append(record.getMessage())


def test_development_mail_is_a_file_in_the_mailbox_and_a_log_line(apps):
    app = apps(KEYFOB_ENV="development", MAIL_SEND_SECONDS="3600")
    with app.app_context():
        queue("ada@example.com", "Welcome", "Hello Ada.", reason="you signed up", settings_link="/account")
        db.session.commit()

    # Our own handler on the logger: the migrations' logging set-up replaces the root's handlers, caplog's too.
    lines, logger = Lines(), logging.getLogger("app.mail.transport")
    logger.addHandler(lines)
    try:
        assert MailCore.of(app).sender.send_due().sent == 1
    finally:
        logger.removeHandler(lines)

    [path] = (Path(app.instance_path) / "mailbox").glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=default)
    assert message["Subject"] == "Welcome"
    assert "http://127.0.0.1:5000/account" in message.get_body(("plain",)).get_content()
    assert any("ada@example.com" in line and str(path) in line for line in lines.lines)


def test_production_without_mail_url_queues_nothing(apps, runner):
    app = apps(KEYFOB_ENV="production", SESSION_COOKIE_SECURE=False)
    with app.app_context():
        assert queue("ada@example.com", "Welcome", "Hello.", reason="you signed up", settings_link="/") is None
    result = app.test_cli_runner().invoke(args=["mail", "send"])
    assert result.exit_code != 0 and "mail is off" in result.output


def test_flask_mail_list_and_send(apps):
    app = apps(MAIL_SEND_SECONDS="3600")
    with app.app_context():
        queue("ada@example.com", "Welcome", "Hello.", reason="you signed up", settings_link="/account")
        db.session.commit()
    cli = app.test_cli_runner()
    listed = cli.invoke(args=["mail", "list"])
    assert "queued" in listed.output and "ada@example.com" in listed.output and "1 waiting" in listed.output
    sent = cli.invoke(args=["mail", "send"])
    assert sent.exit_code == 0 and "sent 1" in sent.output
    assert "0 waiting" in cli.invoke(args=["mail", "list"]).output
    assert "sent" in cli.invoke(args=["mail", "list", "--all"]).output


def test_mailbox_writers_at_once_never_share_a_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from app.mail.transport import MailboxTransport

    # Each writer counts the files before any has written: all start from the same number.
    transports = [MailboxTransport(tmp_path / "mailbox") for _ in range(8)]
    for transport in transports:
        transport.open()
    raws = [f"Subject: mail {n}\r\n\r\nbody {n}\r\n".encode() for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda transport, raw: transport.send("k@example.com", "ada@example.com", raw), transports, raws))

    files = sorted((tmp_path / "mailbox").glob("*.eml"))
    assert len(files) == 8
    assert sorted(path.read_bytes() for path in files) == sorted(raws)
