"""Keyfob: self-hosted API key management. `create_app()` builds the whole application."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import ROOT, ConfigError, load_settings, read_environment
from app.extensions import db, login_manager, migrate
from app.request_body import KeyfobRequest
from app.sessions import KeyfobSessionInterface

_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_ITERABLE_COROUTINE


class Keyfob(Flask):
    """Flask, with request bodies read by Keyfob's strict parser, sessions opened only when a cookie came, and
    unexpected errors logged in one line."""

    request_class = KeyfobRequest

    def ensure_sync(self, func):
        """Flask asks this of every hook and view on every request (a dozen times a request), through
        inspect.iscoroutinefunction; Keyfob has no async code, so a plain function's code flags answer at once."""
        code = getattr(func, "__code__", None)
        if code is not None and not code.co_flags & _ASYNC_FLAGS:
            return func
        return super().ensure_sync(func)

    def request_context(self, environ):
        from app.metrics import REQUEST_STARTED

        environ[REQUEST_STARTED] = time.perf_counter()
        return super().request_context(environ)

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
    app.session_interface = KeyfobSessionInterface()
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    _init_database(app)
    store = _init_counters(app)
    _init_accounts(app, store)
    _init_keys(app, store)
    _init_mail(app)
    from app.csrf import init_csrf

    init_csrf(app)
    from app.request_guard import init_request_guard

    init_request_guard(app)

    from app.errors import init_error_handlers
    from app.favicon import init_favicon
    from app.metrics import init_metrics
    from app.security_headers import init_security_headers
    from app.templating import init_templating

    init_error_handlers(app)
    init_security_headers(app)
    init_templating(app)
    init_metrics(app)
    init_favicon(app)

    from app import admin, api, auth, dashboard, health
    from app.accounts.cli import users_cli
    from app.keys.cli import keys_cli, verifiers_cli
    from app.mail.cli import mail_cli
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
    app.cli.add_command(mail_cli)
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
    import app.mail.models  # noqa: F401


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
    from app.accounts.passkeys import PasskeySettings
    from app.accounts.passwords import PasswordHasher
    from app.accounts.throttle import (
        CONFIRMATION_RESENDS,
        RESET_ADDRESS_NAMESPACE,
        RESET_IP_NAMESPACE,
        SECOND_STEP_NAMESPACE,
        SIGN_UP_NOTICES,
        AttemptThrottle,
        LoginThrottle,
        RegistrationThrottle,
    )
    from app.accounts.two_factor import TwoFactorSettings

    login_manager.init_app(app)
    _remember_cookie_only_when_sent(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Log in to see that page."
    login_manager.login_message_category = "info"
    AccountsCore(
        hasher=PasswordHasher(time_cost=app.config["PASSWORD_HASH_TIME_COST"],
                              memory_cost=app.config["PASSWORD_HASH_MEMORY_KIB"],
                              parallelism=app.config["PASSWORD_HASH_PARALLELISM"]),
        login_throttle=LoginThrottle(store, app.config["LOGIN_THROTTLE_PER_ACCOUNT"],
                                     app.config["LOGIN_THROTTLE_PER_IP"]),
        # The second step is throttled like the first, with counters of its own.
        second_step_throttle=LoginThrottle(store, app.config["LOGIN_THROTTLE_PER_ACCOUNT"],
                                           app.config["LOGIN_THROTTLE_PER_IP"], SECOND_STEP_NAMESPACE),
        registration_throttle=RegistrationThrottle(store, app.config["REGISTRATION_THROTTLE_PER_IP"]),
        confirmation_resends=AttemptThrottle(store, *CONFIRMATION_RESENDS),
        sign_up_notices=AttemptThrottle(store, *SIGN_UP_NOTICES),
        password_resets_per_ip=AttemptThrottle(store, RESET_IP_NAMESPACE,
                                               app.config["PASSWORD_RESET_THROTTLE_PER_IP"]),
        password_resets_per_address=AttemptThrottle(store, RESET_ADDRESS_NAMESPACE,
                                                    app.config["PASSWORD_RESET_THROTTLE_PER_ADDRESS"]),
    ).install(app)
    TwoFactorSettings.from_config(app.config).install(app)
    PasskeySettings.from_config(app.config).install(app)


def _remember_cookie_only_when_sent(app: Flask) -> None:
    """Flask-Login looks for remember-me work after every request by reading the session, which marks it used: every
    answer, JSON ones included, cost a session save and got `Vary: Cookie`. Keyfob signs in without remember-me, so
    there is work only when a browser sends a remember-me cookie (Flask-Login then clears it at sign-out): its hook
    runs, in its place, for those requests alone."""
    from flask import request

    remember = login_manager._update_remember_cookie
    cookie = app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
    hooks = app.after_request_funcs[None]

    def _update_remember_cookie(response):
        return remember(response) if cookie in request.environ.get("HTTP_COOKIE", "") else response

    hooks[hooks.index(remember)] = _update_remember_cookie


def _init_keys(app: Flask, store) -> None:
    from app.keys import key_changes
    from app.keys.core import KeyCore, KeySettings
    from app.keys.lookup_cache import GENERATION_FILE, Generation, LookupCache
    from app.keys.ratelimit import KeyRateLimiter
    from app.keys.usage import UsageBuffer

    try:
        changes = Generation(Path(app.instance_path) / GENERATION_FILE)
    except OSError as error:
        raise ConfigError(f"KEYFOB_INSTANCE_PATH={app.instance_path!r} cannot hold the key-change counter every "
                          f"process of the host shares ({GENERATION_FILE}): {error.strerror or error}") from None
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


def _init_mail(app: Flask) -> None:
    from app.mail.core import MailCore

    MailCore.from_app(app).install(app)
