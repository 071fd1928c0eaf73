"""Mail settings: MAIL_URL, MAIL_FROM and PUBLIC_BASE_URL parsed at start-up, one ConfigError naming the bad one,
and the SMTP password never shown; header text made one safe line."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_settings
from app.mail.outbox import header_text
from app.mail.transport import MailUrl, parse_mail_url

GOOD = {"MAIL_URL": "smtp://user:hunter2-secret@mail.example.com:587?starttls=true",
        "MAIL_FROM": "keyfob@example.com", "PUBLIC_BASE_URL": "https://keys.example.com"}


def settings(tmp_path, **values):
    return load_settings({"KEYFOB_ENV": "development", "KEYFOB_INSTANCE_PATH": str(tmp_path), **values})


def test_good_mail_settings_are_parsed(tmp_path):
    config = settings(tmp_path, **{**GOOD, "PUBLIC_BASE_URL": "https://keys.example.com/"})
    assert config["MAIL_URL"] == MailUrl("mail.example.com", 587, "starttls", "user", "hunter2-secret")
    assert config["PUBLIC_BASE_URL"] == "https://keys.example.com"
    assert "hunter2" not in repr(config["MAIL_URL"]) and "hunter2" not in str(config["MAIL_URL"])
    assert parse_mail_url("smtps://mail.example.com") == MailUrl("mail.example.com", 465, "tls")
    assert parse_mail_url("smtp://localhost:25").security == "none"


@pytest.mark.parametrize(("values", "named"), [
    ({**GOOD, "MAIL_URL": "http://user:hunter2-secret@mail.example.com"}, "MAIL_URL"),
    ({**GOOD, "MAIL_URL": "smtp://user:hunter2-secret@mail.example.com:99999"}, "MAIL_URL"),
    ({**GOOD, "MAIL_URL": "smtps://user:hunter2-secret@mail.example.com?starttls=true"}, "MAIL_URL"),
    ({**GOOD, "MAIL_URL": "smtp://user:hunter2-secret@mail.example.com?tls=maybe"}, "MAIL_URL"),
    ({**GOOD, "MAIL_URL": "smtp://user:hunter2-secret@mail.example.com/path"}, "MAIL_URL"),
    ({**GOOD, "MAIL_URL": "smtp://:hunter2-secret@"}, "MAIL_URL"),
    ({**GOOD, "MAIL_FROM": "not an address"}, "MAIL_FROM"),
    ({**GOOD, "MAIL_FROM": "keyfob@example.com\r\nBcc: x@evil.example"}, "MAIL_FROM"),
    ({"MAIL_URL": GOOD["MAIL_URL"], "PUBLIC_BASE_URL": GOOD["PUBLIC_BASE_URL"]}, "MAIL_FROM"),
    ({"MAIL_URL": GOOD["MAIL_URL"], "MAIL_FROM": GOOD["MAIL_FROM"]}, "PUBLIC_BASE_URL"),
    ({**GOOD, "PUBLIC_BASE_URL": "ftp://keys.example.com"}, "PUBLIC_BASE_URL"),
    ({**GOOD, "PUBLIC_BASE_URL": "keys.example.com"}, "PUBLIC_BASE_URL"),
    ({**GOOD, "PUBLIC_BASE_URL": "https://keys.example.com/?next=x"}, "PUBLIC_BASE_URL"),
    ({**GOOD, "PUBLIC_BASE_URL": "https://user:pw@keys.example.com"}, "PUBLIC_BASE_URL"),
    ({**GOOD, "PUBLIC_BASE_URL": "https://keys.example.com/a b"}, "PUBLIC_BASE_URL"),
    ({**GOOD, "MAIL_SEND_SECONDS": "0"}, "MAIL_SEND_SECONDS"),
])
def test_bad_mail_settings_fail_with_one_line_naming_them(tmp_path, values, named):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **values)
    message = str(caught.value)
    assert message.startswith(named) and "\n" not in message
    assert "hunter2" not in message


@pytest.mark.parametrize(("value", "expected"), [
    ("Hello\r\nBcc: x@evil.example", "Hello Bcc: x@evil.example"),
    ("a\x00b\tc\u2028d", "a b c d"),
    ("  spaced   out  ", "spaced out"),
    ("x" * 500, "x" * 200),
])
def test_header_text_is_one_safe_line(value, expected):
    assert header_text(value, 200) == expected
