"""A real SMTP server for the mail tests (aiosmtpd on loopback), and apps that send to it."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.policy import default

import pytest
from aiosmtpd.controller import Controller


class Recorder:
    """aiosmtpd's handler: keeps every message the server accepted, with its envelope."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        # Replies to give instead of accepting: per recipient address at RCPT, and to every DATA.
        self.refuse_recipients: dict[str, str] = {}
        self.data_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        if address in self.refuse_recipients:
            return self.refuse_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        if self.data_reply is not None:
            return self.data_reply
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def messages(self):
        return [message_from_bytes(raw, policy=default) for _, _, raw in self.received]


class SmtpServer:
    """An SMTP server on a fixed loopback port that a test can stop and start again."""

    def __init__(self, **controller_options) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.recorder = Recorder()
        # aiosmtpd's Controller options: tls_context (STARTTLS), ssl_context (TLS from the start), authenticator, ...
        self._options = controller_options
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **self._options)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp():
    """A running SMTP server; `smtp.recorder.received` holds what it accepted."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_down():
    """An SMTP server that is not running yet (the test starts it)."""
    server = SmtpServer()
    yield server
    server.stop()


def mail_settings(server: SmtpServer) -> dict:
    return {"MAIL_URL": server.url, "MAIL_FROM": "keyfob@example.com",
            "PUBLIC_BASE_URL": "https://keys.example.com", "MAIL_SEND_SECONDS": "3600"}
