"""Settings from the environment (and a `.env` file), checked once at start-up.

Each setting is declared once in SETTINGS, with its default and what it is for; the README's configuration
table lists the same names (a test keeps the two in step). A missing or malformed value raises ConfigError
whose message is one line naming the setting.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import limits
from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.keys.policy import MAX_DAYS
from app.request_body import MAX_BODY_BYTES

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("production", "development", "testing")

# OWASP Password Storage Cheat Sheet: Argon2id with one of these (memory KiB, iterations) pairs, parallelism 1,
# is the minimum. A configuration is acceptable when it reaches at least one pair on both counts.
OWASP_ARGON2_MINIMUMS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


class ConfigError(Exception):
    """A setting is missing or malformed; str() is one line that names it."""


# gunicorn's "application failed to load" status: its master stops instead of respawning workers that cannot boot.
CONFIG_ERROR_EXIT = 4


def exit_for(error: ConfigError) -> NoReturn:
    """Stop the process with one clear line instead of a traceback: the operator needs the setting, not our stack."""
    print(f"keyfob: configuration error: {error}", file=sys.stderr)
    raise SystemExit(CONFIG_ERROR_EXIT) from None


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    parse: Callable[[Any], Any]
    help: str
    secret: bool = False  # its value is never echoed in an error


def _whole(low: int, high: int) -> Callable[[Any], int]:
    """A parser for a whole number from low to high: bounds keep absurd values from overflowing far from here."""

    def parse(value: Any) -> int:
        number = int(str(value).strip())
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low:,} to {high:,}")
        return number

    return parse


def _environment(value: Any) -> str:
    value = str(value).strip().lower()
    if value not in ENVIRONMENTS:
        raise ValueError(f"must be one of {', '.join(ENVIRONMENTS)}")
    return value


def _rate(value: Any) -> str:
    limits.parse(str(value))  # raises ValueError on anything it cannot read
    return str(value)


def _database_url(value: Any) -> str:
    url = str(value).strip()
    # Heroku and many hosts hand out postgres://; SQLAlchemy wants a dialect and we ship psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgres://")
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        make_url(url)
    except ArgumentError:
        raise ValueError("is not a database URL such as sqlite:///path/keyfob.db or postgresql://...") from None
    return url


def _text(value: Any) -> str:
    return str(value).strip()


def _boolean(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _seconds(value: Any) -> float:
    number = float(str(value).strip())
    if not 0 < number <= 3600:
        raise ValueError("must be a number of seconds between 0 and 3600")
    return number


def _cache_seconds(value: Any) -> float:
    number = float(str(value).strip())
    if not 0 <= number <= 3600:
        raise ValueError("must be a number of seconds from 0 (no cache) to 3600")
    return number


def _key_prefix(value: Any) -> str:
    from app.keys.tokens import PREFIX_PATTERN

    prefix = str(value).strip()
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError("must be 1-16 lower-case letters and digits, starting with a letter")
    return prefix


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return text

    return parse


def _scope_catalogue(value: Any) -> dict[str, str]:
    from app.keys.scopes import parse_catalogue

    return parse_catalogue(value)


def _mail_url(value: Any):
    from app.mail.transport import parse_mail_url

    return parse_mail_url(value)


def _mail_address(value: Any) -> str:
    from app.mail.transport import parse_address

    return parse_address(value)


def _public_base_url(value: Any) -> str:
    """An http(s) origin, optionally with a path prefix: what links in mail start with (no trailing slash)."""
    text = str(value).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("is not a URL such as https://keys.example.com") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password or any(ord(c) < 33 or c in "<>\"'\\" for c in text):
        raise ValueError("must be an http(s) URL such as https://keys.example.com, with no user, query or fragment")
    return text.rstrip("/")


def _scope_list(value: Any) -> tuple[str, ...]:
    return tuple(sorted(set(str(value).split())))


SETTINGS: tuple[Setting, ...] = (
    Setting("KEYFOB_ENV", "production", _environment,
            "`production`, `development` or `testing`. `make run` sets `development`."),
    Setting("SECRET_KEY", None, _text,
            "Signs sessions and CSRF tokens. Required in production (at least 32 characters); in development "
            "generated once into `instance/secret_key`."),
    Setting("DATABASE_URL", None, _database_url,
            "SQLAlchemy URL. Default: SQLite at `instance/keyfob.db`. `postgres://` and `postgresql://` "
            "mean PostgreSQL through psycopg 3."),
    Setting("KEYFOB_INSTANCE_PATH", None, _text,
            "Folder for the SQLite database and generated development secrets. Default: `instance/`."),
    Setting("TRUSTED_PROXIES", "0", _whole(0, 10),
            "How many reverse proxies sit in front of Keyfob; their `X-Forwarded-For`/`-Proto`/`-Host` "
            "headers are believed. Leave 0 when clients connect directly."),
    Setting("RATELIMIT_STORAGE_URI", "memory://", _text,
            "Where throttling counters live: `memory://` (one process) or `redis://host:6379/0` (shared)."),
    Setting("LOGIN_THROTTLE_PER_ACCOUNT", "5 per 5 minutes", _rate,
            "Failed logins allowed per email address in a moving window."),
    Setting("LOGIN_THROTTLE_PER_IP", "20 per 5 minutes", _rate,
            "Failed logins allowed per client IP in a moving window."),
    Setting("TWO_FACTOR_FOR_ADMINS", "true", _boolean,
            "Admins must sign in with a second factor (an authenticator app's code): an admin without one is sent "
            "to set it up before any admin page opens."),
    Setting("TWO_FACTOR_FOR_EVERYONE", "false", _boolean,
            "Everyone must sign in with a second factor: a user without one is sent to set it up before the "
            "dashboard opens."),
    Setting("ALLOW_REGISTRATION", "true", _boolean,
            "Let anyone who can reach Keyfob create an account at /register. Turn it off once your team has "
            "signed up: accounts are then made with `flask users create`."),
    Setting("REGISTRATION_THROTTLE_PER_IP", "10 per hour", _rate,
            "Account creations tried per client IP in a moving window. Registering tells whether an email "
            "has an account (unless `EMAIL_CONFIRMATION` is on), so this also bounds how fast addresses can be "
            "probed."),
    Setting("EMAIL_CONFIRMATION", "false", _boolean,
            "Sign-up mails a link that confirms the address, and answers \"check your inbox\" whether or not the "
            "address has an account, so sign-up no longer tells. An account cannot create keys until its address is "
            "confirmed. Needs mail: in production, `MAIL_URL`."),
    Setting("PASSWORD_RESET_THROTTLE_PER_ADDRESS", "3 per hour", _rate,
            "Password-reset mails sent to one address in a moving window; past it the page answers the same and "
            "sends nothing."),
    Setting("PASSWORD_RESET_THROTTLE_PER_IP", "10 per hour", _rate,
            "Password-reset requests per client IP in a moving window; past it the page answers 429."),
    Setting("PASSWORD_HASH_TIME_COST", "3", _whole(1, 100),
            "Argon2id iterations. With the memory cost, must reach OWASP's minimum."),
    Setting("PASSWORD_HASH_MEMORY_KIB", "65536", _whole(8, 4 * 1024 * 1024),
            "Argon2id memory in KiB (default 64 MiB, RFC 9106's low-memory profile)."),
    Setting("PASSWORD_HASH_PARALLELISM", "4", _whole(1, 64), "Argon2id lanes."),
    Setting("KEY_PREFIX", "kf", _key_prefix,
            "Starts every API key (`kf_...`): 1-16 lower-case letters and digits. Changing it invalidates no stored "
            "key but makes keys with the old prefix unusable."),
    Setting("KEY_PEPPER", None, _text,
            "Server-side secret mixed into every stored key digest (HMAC-SHA256). Required in production (32+ "
            "characters); in development generated once into `instance/key_pepper`. Also keys the stored secrets of "
            "authenticator apps (two-factor sign-in). Changing it invalidates every key and every enrolled "
            "authenticator."),
    Setting("MAX_KEY_LIFETIME_DAYS", "365", _whole(1, MAX_DAYS),
            "Longest expiry allowed at create, rotate and renew."),
    Setting("ALLOW_NON_EXPIRING_KEYS", "false", _boolean, "Allow keys without an expiry date."),
    Setting("API_SCOPES", '{"read:data": "Read data", "write:data": "Create, change and delete data"}',
            _scope_catalogue,
            "The deployment's own scopes as a JSON object `{\"name\": \"description\"}`, added to the built-in "
            "`keys:read` and `keys:write`. Names: letters, digits and `:._-`."),
    Setting("KEY_SUSPEND_AFTER", "100 per 1 minute", _rate,
            "Rate-limited requests a key may make in this window before it is suspended and an admin alert raised."),
    Setting("KEY_SUSPENSION_SECONDS", "900", _whole(1, 30 * 86400), "How long a suspension lasts."),
    Setting("SERVICE_API_KEY", None, _text,
            "Optional static key for one trusted service, accepted besides the issued keys (compared in constant "
            "time). Off when unset; 32+ characters."),
    Setting("SERVICE_API_KEY_SCOPES", "", _scope_list, "Space-separated scopes of `SERVICE_API_KEY`."),
    Setting("FAILED_ATTEMPTS_ALERT", "20 per 5 minutes", _rate,
            "Failed key verifications from one IP in this window that raise an admin alert (once per window)."),
    Setting("RENEWAL_WARNING_DAYS", "14", _whole(1, 365),
            "Keys expiring within this many days are listed at the top of the dashboard for renewal."),
    Setting("METRICS_TOKEN", None, _text,
            "Bearer token that lets a Prometheus server read `/metrics` (admins signed in may read it too). "
            "Unset: only admins. Use 32+ random characters."),
    Setting("FORWARD_AUTH_RULES", None, _text,
            "Path of the forward-auth rules file: which scopes each upstream route needs (`METHODS PATH SCOPES` a "
            "line; see \"Protect your services\"). Read and checked at start-up. Unset: no route has a rule."),
    Setting("FORWARD_AUTH_UNMATCHED", "refuse", _one_of("refuse", "any-key"),
            "What forward auth does with a path no rule matches: `refuse` it (403), or let `any-key` that is valid "
            "through."),
    Setting("VERIFY_CACHE_SECONDS", "1", _cache_seconds,
            "The longest each worker reuses what it read for a key or a verifier credential. On one host a change "
            "(revoke, disable, rotate, scopes, ...) reaches every worker at once whatever this is; across hosts on "
            "PostgreSQL it is pushed by `NOTIFY`, and this bounds how long a lost notification can matter. `0`: no "
            "cache."),
    Setting("VERIFY_CACHE_SIZE", "10000", _whole(1, 10_000_000),
            "How many keys (and, apart, verifier credentials) each worker keeps at most."),
    Setting("USAGE_FLUSH_SECONDS", "1", _seconds,
            "How often each process writes its buffered usage counts to the database."),
    Setting("MAIL_URL", None, _mail_url,
            "The SMTP server: `smtp://user:password@host:587?starttls=true` (STARTTLS), "
            "`smtps://user:password@host:465` (TLS from the start) or `smtp://host:25`. Unset: no mail in "
            "production; in development mail goes to the log and to `.eml` files in `instance/mailbox/`.", secret=True),
    Setting("MAIL_FROM", None, _mail_address, "The From address of Keyfob's mail. Required with `MAIL_URL`."),
    Setting("PUBLIC_BASE_URL", None, _public_base_url,
            "Where people reach Keyfob, such as `https://keys.example.com`: links in mail start with it. Required "
            "with `MAIL_URL`; in development `http://127.0.0.1:5000`. Passkeys are bound to its host and origin: "
            "they need it set, to a domain name (not an IP address), over HTTPS or on `localhost`."),
    Setting("MAIL_SEND_SECONDS", "10", _seconds,
            "How often each process's sender looks for mail that is due (once it has queued some); "
            "`flask mail send` sends what is due at once."),
)


def read_environment(environ: Mapping[str, str], dotenv_path: Path | None) -> dict[str, str]:
    """The process environment over the `.env` file: real variables win, as in every twelve-factor app."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(environ)
    return merged


def load_settings(source: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Turn raw settings into the Flask config mapping, or raise ConfigError naming the bad one.

    `overrides` (create_app's argument) may hold setting names, which are checked like the environment's,
    and any other Flask config key, which passes through unchanged.
    """
    raw = {**source, **(overrides or {})}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        value = raw.get(setting.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            value = setting.default
        if value is None:
            values[setting.name] = None
            continue
        try:
            values[setting.name] = setting.parse(value)
        except ValueError as error:
            shown = setting.name if setting.secret else f"{setting.name}={value!r}"
            raise ConfigError(f"{shown} {error}") from None

    env = values["KEYFOB_ENV"]
    instance = Path(values["KEYFOB_INSTANCE_PATH"] or ROOT / "instance")
    _check_argon2(values)

    secret_key = _server_secret(values, "SECRET_KEY", env, instance)
    pepper = _server_secret(values, "KEY_PEPPER", env, instance,
                            "; keep it secret and never change it (that invalidates every key)")
    service_key = values["SERVICE_API_KEY"]
    if service_key is not None and len(service_key) < 32:
        raise ConfigError("SERVICE_API_KEY is too short: use at least 32 random characters")
    if values["METRICS_TOKEN"] is not None and len(values["METRICS_TOKEN"]) < 32:
        raise ConfigError("METRICS_TOKEN is too short: use at least 32 random characters")
    unknown = set(values["SERVICE_API_KEY_SCOPES"]) - set(values["API_SCOPES"])
    if unknown:
        raise ConfigError(f"SERVICE_API_KEY_SCOPES names unknown scopes: {', '.join(sorted(unknown))}")

    if values["MAIL_URL"] is not None:
        for needed in ("MAIL_FROM", "PUBLIC_BASE_URL"):
            if values[needed] is None:
                raise ConfigError(f"{needed} is required when MAIL_URL is set")
    if values["EMAIL_CONFIRMATION"] and values["MAIL_URL"] is None and env == "production":
        # Mail is off then (app/mail/core.py): nobody could confirm, so nobody could ever create a key.
        raise ConfigError("EMAIL_CONFIRMATION=true needs mail: set MAIL_URL (with MAIL_FROM and PUBLIC_BASE_URL), "
                          "or turn EMAIL_CONFIRMATION off")

    values["FORWARD_AUTH_RULES"] = _forward_auth_rules(values["FORWARD_AUTH_RULES"], values["API_SCOPES"])

    database_url = values["DATABASE_URL"] or f"sqlite:///{instance / 'keyfob.db'}"
    config = {
        **values,
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": secret_key,
        "KEY_PEPPER": pepper,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env == "production",
        "SESSION_COOKIE_NAME": "keyfob_session",
        "PERMANENT_SESSION_LIFETIME": 60 * 60 * 12,
        "TESTING": env == "testing",
        # CSRF tokens live as long as the session; an expiring token only loses people's typing.
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": env == "production",
        "WTF_CSRF_CHECK_DEFAULT": False,  # app/csrf.py checks the token, method first
        # No request Keyfob serves needs more: a larger body is refused with 413 (one byte more, so that a chunked
        # body werkzeug cuts at this length shows as too long: KeyfobRequest.get_data).
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES + 1,
    }
    passthrough = {k: v for k, v in (overrides or {}).items() if k not in values}
    config.update(passthrough)
    return config


def _forward_auth_rules(path: str | None, catalogue: Mapping[str, str]) -> tuple:
    """The parsed rules file (app/proxy_auth/rules.py), or ConfigError naming the file and the bad line."""
    from app.proxy_auth.rules import RulesError, parse_rules

    if path is None:
        return ()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"FORWARD_AUTH_RULES={path!r} cannot be read: {error}") from None
    try:
        return parse_rules(text, catalogue)
    except RulesError as error:
        raise ConfigError(f"FORWARD_AUTH_RULES={path!r} {error}") from None


def _server_secret(values: Mapping[str, Any], name: str, env: str, instance: Path, advice: str = "") -> str:
    """A secret setting: required (32+ characters) in production, generated once into the instance folder
    elsewhere, so development needs no set-up."""
    value = values[name]
    if value is None:
        if env == "production":
            raise ConfigError(f"{name} is required in production: set it to 32+ random characters "
                              f"(python -c 'import secrets; print(secrets.token_urlsafe(48))'){advice}")
        return instance_secret(instance, name.lower())
    if env == "production" and len(value) < 32:
        raise ConfigError(f"{name} is too short for production: use at least 32 random characters")
    return value


def _check_argon2(values: Mapping[str, Any]) -> None:
    memory, time_cost = values["PASSWORD_HASH_MEMORY_KIB"], values["PASSWORD_HASH_TIME_COST"]
    if memory < 8 * values["PASSWORD_HASH_PARALLELISM"]:
        raise ConfigError(f"PASSWORD_HASH_MEMORY_KIB={memory} is too small for PASSWORD_HASH_PARALLELISM="
                          f"{values['PASSWORD_HASH_PARALLELISM']}: Argon2 needs at least 8 KiB per lane")
    if not any(memory >= m and time_cost >= t for m, t in OWASP_ARGON2_MINIMUMS):
        pairs = ", ".join(f"{m} KiB x {t}" for m, t in OWASP_ARGON2_MINIMUMS)
        raise ConfigError(f"PASSWORD_HASH_MEMORY_KIB={memory} with PASSWORD_HASH_TIME_COST={time_cost} "
                          f"is below OWASP's Argon2id minimum (one of {pairs})")


def instance_secret(instance: Path, name: str) -> str:
    """A random secret generated on first use and kept in the instance folder (development only)."""
    path = instance / name
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    instance.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: when two processes start at once, one writes and the other reads what it wrote.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
