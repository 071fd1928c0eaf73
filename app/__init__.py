"""Keyfob: self-hosted API key management. `create_app()` builds the whole application."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import ROOT, ConfigError, load_settings, read_environment
from app.extensions import csrf, db, login_manager, migrate
from app.request_body import KeyfobRequest


class Keyfob(Flask):
    """Flask, with request bodies read by Keyfob's strict parser and unexpected errors logged in one line."""

    request_class = KeyfobRequest

    def log_exception(self, exc_info) -> None:
        from app.errors import log_unexpected

        log_unexpected(self, "unexpected error", exc_info[1])


def create_app(config: Mapping[str, Any] | None = None) -> Keyfob:
    """Build the app from the environment (and `.env`), with `config` overriding both. Raises ConfigError."""
    settings = load_settings(read_environment(os.environ, Path.cwd() / ".env"), config)
    app = Keyfob(
        __name__,
        instance_path=settings["INSTANCE_PATH"],
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_mapping(settings)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    _init_database(app)
    store = _init_counters(app)
    _init_accounts(app, store)
    _init_keys(app, store)
    from app.fetch_metadata import init_fetch_metadata

    init_fetch_metadata(app)  # before CSRF: a cross-site change is refused for that reason, token or not
    csrf.init_app(app)
    from app.request_guard import init_request_guard

    init_request_guard(app)

    from app.errors import init_error_handlers
    from app.favicon import init_favicon
    from app.htmx import init_htmx
    from app.metrics import init_metrics
    from app.security_headers import init_security_headers
    from app.templating import init_templating

    init_error_handlers(app)
    init_security_headers(app)
    init_templating(app)
    init_htmx(app)
    init_metrics(app)
    init_favicon(app)

    from app import admin, api, auth, dashboard, health
    from app.accounts.cli import users_cli
    from app.keys.cli import keys_cli, verifiers_cli
    from app.proxy_auth.routes import bp as proxy_auth_bp

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(proxy_auth_bp)
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(verifiers_cli)
    return app


def _init_database(app: Flask) -> None:
    from app.database import end_sessions_safely, engine_options, tune_sqlite

    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    try:
        db.init_app(app)
    except (ArgumentError, NoSuchModuleError, ImportError) as error:
        raise ConfigError(f"DATABASE_URL cannot be used: {error}") from None
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True, compare_type=True)
    end_sessions_safely(app, db.session)  # registered after db.init_app, so it runs before its teardown
    with app.app_context():
        tune_sqlite(db.engine)

    # Importing the models registers their tables with the metadata (for migrations and the drift test).
    import app.accounts.models  # noqa: F401
    import app.audit.models  # noqa: F401
    import app.keys.models  # noqa: F401


def _init_counters(app: Flask):
    from app.counters import StoreConfigError, install, open_store

    try:
        store = open_store(app.config["RATELIMIT_STORAGE_URI"])
    except StoreConfigError as error:
        raise ConfigError(f"RATELIMIT_STORAGE_URI cannot be used: {error}") from None
    install(app, store)
    return store


def _init_accounts(app: Flask, store) -> None:
    from app.accounts.core import AccountsCore
    from app.accounts.passwords import PasswordHasher
    from app.accounts.throttle import LoginThrottle, RegistrationThrottle

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Log in to see that page."
    login_manager.login_message_category = "info"
    AccountsCore(
        hasher=PasswordHasher(time_cost=app.config["PASSWORD_HASH_TIME_COST"],
                              memory_cost=app.config["PASSWORD_HASH_MEMORY_KIB"],
                              parallelism=app.config["PASSWORD_HASH_PARALLELISM"]),
        login_throttle=LoginThrottle(store, app.config["LOGIN_THROTTLE_PER_ACCOUNT"],
                                     app.config["LOGIN_THROTTLE_PER_IP"]),
        registration_throttle=RegistrationThrottle(store, app.config["REGISTRATION_THROTTLE_PER_IP"]),
    ).install(app)


def _init_keys(app: Flask, store) -> None:
    from app.keys import key_changes
    from app.keys.core import KeyCore, KeySettings
    from app.keys.lookup_cache import GENERATION_FILE, Generation, LookupCache
    from app.keys.ratelimit import KeyRateLimiter
    from app.keys.usage import UsageBuffer

    changes = Generation(Path(app.instance_path) / GENERATION_FILE)
    changes.install(app)
    max_age, size = app.config["VERIFY_CACHE_SECONDS"], app.config["VERIFY_CACHE_SIZE"]
    listener = None
    with app.app_context():
        if db.engine.dialect.name == "postgresql" and max_age > 0:
            listener = key_changes.ChangeListener.for_engine(
                db.engine, app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {}), changes.bump)
    key_changes.watch(db.session.session_factory.class_)
    KeyCore(
        settings=KeySettings.from_config(app.config),
        limiter=KeyRateLimiter(store, app.config["KEY_SUSPEND_AFTER"]),
        usage=UsageBuffer(app, app.config["USAGE_FLUSH_SECONDS"]),
        changes=changes,
        key_cache=LookupCache(changes, max_age, size),
        verifier_cache=LookupCache(changes, max_age, size),
        listener=listener,
    ).install(app)
