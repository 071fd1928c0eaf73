"""Address confirmation's pages: the mailed link, a new link for a signed-in account, and the banner that offers it.

The link opens a page with one button, and only that button's POST confirms: mail scanners and link previews fetch
the links in a mail, and a GET that confirmed would let them confirm an address for someone who signed up with it.
Both answers carry the token in their URL, so they send no Referer and are never cached.
"""

from __future__ import annotations

from flask import flash, make_response, redirect, render_template, url_for
from flask_login import current_user, login_required

from app.accounts import confirmation
from app.accounts.signed_links import LinkError
from app.auth import bp
from app.auth.forms import ConfirmationForm
from app.auth.routes import _duration
from app.errors import error_response

PRIVATE = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _private(answer):
    response = make_response(answer)
    response.headers.update(PRIVATE)
    return response


def _refused(error: LinkError):
    if error.expired:
        return error_response(410, "link_expired", "This confirmation link has expired. Log in and ask for a new "
                                                   "one.", headers=PRIVATE)
    return error_response(400, "link_invalid", f"{error} Check that the whole link was copied, or log in and ask "
                                               "for a new one.", headers=PRIVATE)


@bp.get("/confirm-email/<token>")
def confirmation_page(token: str):
    try:
        user = confirmation.link_user(token)
    except LinkError as error:
        return _refused(error)
    return _private(render_template("auth/confirm_email.html", address=user.email,
                                    confirmed=user.email_confirmed_at is not None,
                                    form=ConfirmationForm(formdata=None)))


@bp.post("/confirm-email/<token>")
def confirm_address(token: str):
    try:
        user = confirmation.confirm(token)
    except LinkError as error:
        return _refused(error)
    flash(f"Thank you: {user.email} is confirmed. You can create API keys now.", "success")
    return _private(redirect(url_for("dashboard.index" if current_user.is_authenticated else "auth.login")))


@bp.post("/account/confirm-email")
@login_required
def resend_confirmation():
    if not confirmation.pending(current_user):
        flash("Your address needs no confirmation: you can create API keys.", "info")
        return redirect(url_for("dashboard.index"))
    wait = confirmation.resend(current_user)
    if wait:
        return error_response(429, "too_many_requests", f"We sent you a link a short while ago. Look for it in your "
                                                        f"inbox, or try again in {_duration(wait)}.",
                              headers={"Retry-After": str(wait)})
    flash(f"We sent a new link to {current_user.email}. It works for "
          f"{confirmation.LINK_LIFETIME.days} days.", "success")
    return redirect(url_for("dashboard.index"))


@bp.app_context_processor
def inject_confirmation_banner() -> dict:
    # Functions, not values: most pages are drawn for people who have nothing to confirm, and ask nothing more.
    return {"confirmation_pending": confirmation.pending,
            "confirmation_form": lambda: ConfirmationForm(formdata=None)}
