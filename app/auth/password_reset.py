"""Forgotten passwords: ask for a link by mail, then choose a new password with it.

The mailed link is `/reset-password?token=...`. Opening it checks the token, keeps it in the session (a signed,
HttpOnly cookie) and redirects to `/reset-password` with no token: from then on the token is in no URL, so not in
the browser's history, not in a Referer, not in any log line of a later request, and the page's form posts without
it. The first request's query string is not in Keyfob's access log either (gunicorn.conf.py logs the path alone).
Every answer of the reset page sends `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from app.accounts import password_reset
from app.accounts.service import AccountError
from app.auth import bp
from app.auth.forms import ForgotPasswordForm, ResetPasswordForm
from app.auth.routes import _duration, _form_page
from app.auth.second_factor import after_password

SESSION_KEY = "password_reset_token"
SENT_KEY = "password_reset_sent_to"
LINK_MINUTES = int(password_reset.LINK_LIFETIME.total_seconds() // 60)


@bp.after_app_request
def _keep_reset_page_private(response):
    # By path, so that every answer of the page gets them: errors (CSRF, 405, 503, 500) as well as the view's own.
    if request.path == password_reset.RESET_PATH:
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
    return response


def _client() -> tuple[str, str]:
    return request.remote_addr or "unknown", request.user_agent.string


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    if not password_reset.by_mail_possible():
        return render_template("auth/forgot_password.html", mail_off=True)
    sent_to = session.pop(SENT_KEY, None) if request.method == "GET" else None
    if isinstance(sent_to, str):
        # One answer whether or not the address has an account, and whether or not a mail went out.
        return render_template("auth/forgot_password.html", sent_to=sent_to, link_minutes=LINK_MINUTES)
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        try:
            password_reset.request_reset(form.email.data, *_client())
        except password_reset.ResetThrottled as throttled:
            form.form_errors.append("Too many reset links asked for from your address. "
                                    f"Try again in {_duration(throttled.retry_after)}.")
            return _form_page("auth/forgot_password.html", form, 429, {"Retry-After": str(throttled.retry_after)})
        except AccountError as error:  # the form checked the address already; the service is the rule's home
            form.email.errors.append(error.message)
        else:
            session[SENT_KEY] = form.email.data.strip()  # shown once by the page this redirects to
            return redirect(url_for("auth.forgot_password"))
    return _form_page("auth/forgot_password.html", form)


def _refused(error: password_reset.ResetLinkError):
    session.pop(SESSION_KEY, None)
    page = render_template("auth/reset_password.html", refused=error, link_minutes=LINK_MINUTES)
    return page, 400 if error.malformed else 410


@bp.route(password_reset.RESET_PATH, methods=["GET", "POST"])
def reset_password():
    if request.method == "GET" and "token" in request.args:
        try:
            password_reset.user_for_link(request.args["token"])
        except password_reset.ResetLinkError as error:
            return _refused(error)
        session[SESSION_KEY] = request.args["token"]
        return redirect(url_for("auth.reset_password"), 303)
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        if request.method == "GET":  # come here by hand, or back after using the link: where to get one
            return render_template("auth/reset_password.html", no_link=True)
        # A form posted after its link was used, or after the session ended (the token went with it).
        flash(f"{password_reset.ResetLinkError(malformed=False)} Ask for a new one.", "error")
        return redirect(url_for("auth.reset_password"))
    try:
        user = password_reset.user_for_link(token)
    except password_reset.ResetLinkError as error:
        return _refused(error)
    form = ResetPasswordForm()
    form.account_email = user.email
    if form.validate_on_submit():
        try:
            user = password_reset.reset_password(token, form.password.data, *_client())
        except password_reset.ResetLinkError as error:
            return _refused(error)
        except AccountError as error:
            form[error.field].errors.append(error.message)
        else:
            # The link stands in for the password, not for a second factor: an account that has one is asked for
            # it next. Either way the session is cleared, the token with it (so the flash comes after).
            response = after_password(user, None)
            flash("Your password is changed and you are signed in. Every other session has ended."
                  if current_user.is_authenticated else
                  "Your password is changed and every other session has ended. To sign in, enter a code from "
                  "your authenticator app.", "success")
            return response
    return _form_page("auth/reset_password.html", form)
