"""MAIL_URL's STARTTLS, TLS from the start, and login, against a real SMTP server (aiosmtpd) holding a certificate
the test makes (openssl) and the sender trusts through SSL_CERT_FILE, as an operator's own CA would be."""

from __future__ import annotations

import ssl
import subprocess

import pytest
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from app.extensions import db
from app.mail.core import MailCore
from app.mail.models import OutboxMessage
from app.mail.outbox import queue
from tests.functional.mail.conftest import SmtpServer

USER, PASSWORD = "keyfob", "s3cret-Pa55word"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _server_context(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    return context


def _login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    # handled=False: aiosmtpd answers a refusal with its 535 (handled=True would leave the client waiting).
    return AuthResult(success=auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode(),
                      handled=False)


@pytest.fixture
def secure_smtp(certificate):
    """Start a server of the kind asked: "starttls" (login only after STARTTLS) or "tls" (TLS from the start)."""
    servers = []

    def start(kind: str) -> SmtpServer:
        context = _server_context(certificate)
        # aiosmtpd offers AUTH only after its own STARTTLS (auth_require_tls); on a TLS port it is TLS already.
        options = ({"tls_context": context, "require_starttls": True, "auth_require_tls": True}
                   if kind == "starttls" else {"ssl_context": context, "auth_require_tls": False})
        # PLAIN only: smtplib tries LOGIN after a refused PLAIN, with an initial response aiosmtpd does not take.
        server = SmtpServer(authenticator=_login, auth_exclude_mechanism=["LOGIN"], **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _send_one(app):
    with app.app_context():
        queue("ada@example.com", "Your key expires soon", "Key billing sync expires.", reason="you own a key",
              settings_link="/account#notifications")
        db.session.commit()
    done = MailCore.of(app).sender.send_due()
    with app.app_context():
        return done, db.session.scalars(select(OutboxMessage)).one()


def _settings(url: str) -> dict:
    return {"MAIL_URL": url, "MAIL_FROM": "keyfob@example.com", "PUBLIC_BASE_URL": "https://keys.example.com"}


@pytest.mark.parametrize("kind, url", [
    ("starttls", "smtp://{user}:{password}@127.0.0.1:{port}?starttls=true"),
    ("tls", "smtps://{user}:{password}@127.0.0.1:{port}"),
])
def test_mail_goes_through_tls_and_login(apps, secure_smtp, certificate, monkeypatch, kind, url):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    server = secure_smtp(kind)
    app = apps(**_settings(url.format(user=USER, password=PASSWORD, port=server.port)))

    done, row = _send_one(app)

    assert (done.sent, done.failed) == (1, 0)
    assert row.status() == "sent"
    [(_, recipients, _)] = server.recorder.received
    assert recipients == ["ada@example.com"]


def test_a_wrong_password_waits_for_a_fix_and_never_shows_the_password(apps, secure_smtp, certificate, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    server = secure_smtp("starttls")
    app = apps(**_settings(f"smtp://{USER}:not-the-Pa55word@127.0.0.1:{server.port}?starttls=true"))

    done, row = _send_one(app)

    assert (done.sent, done.failed) == (0, 1)
    assert row.status() == "retrying"  # a refused login is the settings' fault, not the message's
    assert row.last_error.startswith("SMTPAuthenticationError: 535")
    assert "not-the-Pa55word" not in row.last_error
    assert server.recorder.received == []


def test_an_untrusted_certificate_is_refused(apps, secure_smtp, monkeypatch, tmp_path):
    # The server's certificate is not in the trusted set: the sender must not talk (nor log in) to it.
    empty = tmp_path / "no-ca.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    server = secure_smtp("tls")
    app = apps(**_settings(f"smtps://{USER}:{PASSWORD}@127.0.0.1:{server.port}"))

    done, row = _send_one(app)

    assert (done.sent, done.failed) == (0, 1)
    assert row.status() == "retrying" and "CERTIFICATE_VERIFY_FAILED" in row.last_error
    assert server.recorder.received == []
