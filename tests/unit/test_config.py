"""Settings: defaults, parsing, and one-line errors naming the setting."""

from __future__ import annotations

import pytest

from app.config import SETTINGS, ConfigError, load_settings, read_environment

PRODUCTION = {"KEYFOB_ENV": "production", "SECRET_KEY": "s" * 40, "KEY_PEPPER": "p" * 40}


def settings(tmp_path, **values):
    return load_settings({"KEYFOB_INSTANCE_PATH": str(tmp_path), **values})


def test_production_defaults(tmp_path):
    config = settings(tmp_path, **PRODUCTION)
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'keyfob.db'}"
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["SESSION_COOKIE_HTTPONLY"] is True
    assert config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert config["TESTING"] is False
    assert config["PASSWORD_HASH_MEMORY_KIB"] == 65536


@pytest.mark.parametrize(("values", "named"), [
    ({"KEYFOB_ENV": "production"}, "SECRET_KEY"),
    ({"KEYFOB_ENV": "production", "SECRET_KEY": "s" * 40}, "KEY_PEPPER"),
    ({**PRODUCTION, "KEY_PEPPER": "short"}, "KEY_PEPPER"),
    ({**PRODUCTION, "KEY_PREFIX": "Bad_Prefix"}, "KEY_PREFIX"),
    ({**PRODUCTION, "MAX_KEY_LIFETIME_DAYS": "0"}, "MAX_KEY_LIFETIME_DAYS"),
    ({**PRODUCTION, "ALLOW_NON_EXPIRING_KEYS": "maybe"}, "ALLOW_NON_EXPIRING_KEYS"),
    ({**PRODUCTION, "API_SCOPES": "not json"}, "API_SCOPES"),
    ({**PRODUCTION, "API_SCOPES": '["a list"]'}, "API_SCOPES"),
    ({**PRODUCTION, "API_SCOPES": '{"bad scope!": "x"}'}, "API_SCOPES"),
    ({**PRODUCTION, "SERVICE_API_KEY": "short"}, "SERVICE_API_KEY"),
    ({**PRODUCTION, "SERVICE_API_KEY": "v" * 40, "SERVICE_API_KEY_SCOPES": "nope"}, "SERVICE_API_KEY_SCOPES"),
    ({**PRODUCTION, "USAGE_FLUSH_SECONDS": "0"}, "USAGE_FLUSH_SECONDS"),
    ({**PRODUCTION, "SECRET_KEY": "short"}, "SECRET_KEY"),
    ({"KEYFOB_ENV": "staging"}, "KEYFOB_ENV"),
    ({**PRODUCTION, "DATABASE_URL": "not a url"}, "DATABASE_URL"),
    ({**PRODUCTION, "TRUSTED_PROXIES": "two"}, "TRUSTED_PROXIES"),
    ({**PRODUCTION, "TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES"),
    ({**PRODUCTION, "LOGIN_THROTTLE_PER_IP": "lots"}, "LOGIN_THROTTLE_PER_IP"),
    ({**PRODUCTION, "PASSWORD_HASH_MEMORY_KIB": "1024"}, "PASSWORD_HASH_MEMORY_KIB"),
    ({**PRODUCTION, "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "19456"}, "PASSWORD_HASH_TIME_COST"),
    ({**PRODUCTION, "PASSWORD_HASH_PARALLELISM": "0"}, "PASSWORD_HASH_PARALLELISM"),
    # Absurdly large numbers: refused here, instead of overflowing deep inside argon2 or datetime later.
    ({**PRODUCTION, "PASSWORD_HASH_MEMORY_KIB": "9999999999999999999999"}, "PASSWORD_HASH_MEMORY_KIB"),
    ({**PRODUCTION, "PASSWORD_HASH_PARALLELISM": "100000"}, "PASSWORD_HASH_PARALLELISM"),
    ({**PRODUCTION, "PASSWORD_HASH_PARALLELISM": "64", "PASSWORD_HASH_MEMORY_KIB": "256"},
     "8 KiB per lane"),  # argon2 itself would fail at the first hash with a traceback
    ({**PRODUCTION, "KEY_SUSPENSION_SECONDS": "99999999999999999"}, "KEY_SUSPENSION_SECONDS"),
    ({**PRODUCTION, "MAX_KEY_LIFETIME_DAYS": "99999999999"}, "MAX_KEY_LIFETIME_DAYS"),
    ({**PRODUCTION, "RENEWAL_WARNING_DAYS": "0"}, "RENEWAL_WARNING_DAYS"),
    ({**PRODUCTION, "METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
    ({**PRODUCTION, "FAILED_ATTEMPTS_ALERT": "often"}, "FAILED_ATTEMPTS_ALERT"),
])
def test_bad_settings_fail_with_one_line_naming_them(tmp_path, values, named):
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **values)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


@pytest.mark.parametrize("memory,time_cost", [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)])
def test_every_owasp_minimum_is_accepted(tmp_path, memory, time_cost):
    config = settings(tmp_path, **PRODUCTION, PASSWORD_HASH_MEMORY_KIB=str(memory),
                      PASSWORD_HASH_TIME_COST=str(time_cost))
    assert config["PASSWORD_HASH_MEMORY_KIB"] == memory


@pytest.mark.parametrize("given,expected", [
    ("postgres://u:p@db/keyfob", "postgresql+psycopg://u:p@db/keyfob"),
    ("postgresql://u:p@db/keyfob", "postgresql+psycopg://u:p@db/keyfob"),
    ("postgresql+psycopg://u:p@db/keyfob", "postgresql+psycopg://u:p@db/keyfob"),
    ("sqlite:////var/lib/keyfob.db", "sqlite:////var/lib/keyfob.db"),
])
def test_database_urls(tmp_path, given, expected):
    assert settings(tmp_path, **PRODUCTION, DATABASE_URL=given)["SQLALCHEMY_DATABASE_URI"] == expected


@pytest.mark.parametrize(("setting", "filename"), [("SECRET_KEY", "secret_key"), ("KEY_PEPPER", "key_pepper")])
def test_development_secrets_are_generated_once_and_kept(tmp_path, setting, filename):
    first = settings(tmp_path, KEYFOB_ENV="development")[setting]
    second = settings(tmp_path, KEYFOB_ENV="development")[setting]
    assert first == second and len(first) >= 32
    path = tmp_path / filename
    assert path.read_text().strip() == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert settings(tmp_path / "other", KEYFOB_ENV="development")[setting] != first


def test_scope_catalogue_adds_to_the_built_ins(tmp_path):
    config = settings(tmp_path, **PRODUCTION, API_SCOPES='{"billing:read": "See invoices"}')
    assert config["API_SCOPES"] == {"keys:read": config["API_SCOPES"]["keys:read"],
                                    "keys:write": config["API_SCOPES"]["keys:write"],
                                    "billing:read": "See invoices"}


def test_environment_wins_over_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("KEYFOB_ENV=development\nTRUSTED_PROXIES=2\n")
    merged = read_environment({"TRUSTED_PROXIES": "1"}, dotenv)
    assert merged == {"KEYFOB_ENV": "development", "TRUSTED_PROXIES": "1"}
    assert read_environment({}, tmp_path / "missing.env") == {}


def test_overrides_pass_unknown_flask_keys_through(tmp_path):
    config = load_settings({"KEYFOB_INSTANCE_PATH": str(tmp_path), **PRODUCTION}, {"WTF_CSRF_ENABLED": False})
    assert config["WTF_CSRF_ENABLED"] is False


def test_settings_names_are_unique():
    names = [setting.name for setting in SETTINGS]
    assert len(names) == len(set(names))
