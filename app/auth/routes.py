"""Register, log in, log out, and the account page."""

from __future__ import annotations

import hmac

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user

from app.accounts import confirmation, service
from app.accounts.core import accounts_core
from app.accounts.models import User
from app.auth import bp
from app.auth.forms import LoginForm, LogoutForm, RegisterForm
from app.auth.redirects import safe_next
from app.auth.second_factor import after_password, begin_session
from app.errors import error_response
from app.extensions import db, login_manager


@login_manager.user_loader
def load_user(session_user_id: str) -> User | None:
    """The session names a user and the nonce they had when it began; a later logout changed the nonce."""
    user_id, _, nonce = session_user_id.partition(":")
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active or not hmac.compare_digest(user.session_nonce, nonce):
        return None
    return user


def _after_login(form) -> str:
    return safe_next(form.next.data) or url_for("auth.index")


def _form_keeping_next(form_class):
    """The form, with the page to return to (?next=) carried in a hidden field from the first GET."""
    form = form_class()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    return form


def _form_page(template: str, form, status: int | None = None, headers: dict | None = None):
    """Render a form page; a form with errors answers 422 so scripts and htmx can tell it failed."""
    if status is None:
        status = 422 if form.errors else 200
    return render_template(template, form=form), status, headers or {}


@bp.get("/")
def index():
    return redirect(url_for("dashboard.index" if current_user.is_authenticated else "auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    if not current_app.config["ALLOW_REGISTRATION"]:
        return error_response(403, "registration_closed", "This Keyfob does not take new sign-ups. Ask an "
                                                          "administrator to make you an account.")
    if current_user.is_authenticated:
        return redirect(url_for("auth.index"))
    form = _form_keeping_next(RegisterForm)
    if form.validate_on_submit():
        wait = accounts_core().registration_throttle.attempt(request.remote_addr or "unknown")
        if wait:
            form.form_errors.append(f"Too many accounts tried from your address. Try again in {_duration(wait)}.")
            return _form_page("auth/register.html", form, 429, {"Retry-After": str(wait)})
        try:
            if confirmation.required():
                # One answer whether or not the address has an account: sign-up no longer tells.
                address = confirmation.sign_up(form.email.data, form.password.data)
                return render_template("auth/check_inbox.html", address=address,
                                       link_days=confirmation.LINK_LIFETIME.days)
            user = service.create_user(form.email.data, form.password.data)
        except service.AccountError as error:
            form[error.field].errors.append(error.message)
        else:
            begin_session(user)
            flash("Welcome to Keyfob. Your account is ready.", "success")
            return redirect(_after_login(form))
    return _form_page("auth/register.html", form)


def _duration(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} minutes"


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("auth.index"))
    form = _form_keeping_next(LoginForm)
    if form.validate_on_submit():
        throttle = accounts_core().login_throttle
        account, ip = form.email.data.strip().lower(), request.remote_addr or "unknown"
        wait = throttle.retry_after(account, ip)
        if wait:
            form.form_errors.append(f"Too many failed attempts. Try again in {wait} s.")
            return _form_page("auth/login.html", form, 429, {"Retry-After": str(wait)})
        user = service.authenticate(form.email.data, form.password.data)
        if user is not None:
            throttle.record_success(account)
            return after_password(user, form.next.data)  # signed in, or on to the second step
        throttle.record_failure(account, ip)
        form.form_errors.append("The email or password is incorrect.")
    return _form_page("auth/login.html", form)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        service.end_sessions(current_user)
        logout_user()
    session.clear()
    flash("You have logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.get("/account")
@login_required
def account():
    return render_template("account/account.html")


@bp.app_context_processor
def inject_logout_form() -> dict:
    # Drawn on every page, error pages included: it only renders its CSRF token, so it never reads the request.
    return {"logout_form": LogoutForm(formdata=None)}
