"""The account page's notification settings: which mails the owner wants (expiry reminders and the alerts about
their keys). Every mail links here (/account#notifications)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import flash, g, make_response, redirect, render_template, url_for
from flask_login import current_user, login_required

from app.accounts import service
from app.actors import signed_in_person
from app.auth import bp
from app.auth.forms import NotificationsForm
from app.auth.routes import account
from app.htmx import is_htmx
from app.mail.core import MailCore


@dataclass(frozen=True)
class NotificationSettings:
    """What the fragment shows: the form (as posted, with its errors, after a refused POST), whether mail is on,
    and whether it was just saved."""

    form: NotificationsForm
    mail_on: bool
    saved: bool


@bp.app_template_global()
def notification_settings() -> NotificationSettings:
    """The fragment's values. The account page draws it with the signed-in person's settings; the POST below leaves
    the posted form in `g` first, so the same page or fragment shows its errors."""
    form = g.get("notifications_form") or NotificationsForm(formdata=None, obj=current_user)
    return NotificationSettings(form, MailCore.current().sender is not None, g.get("notifications_saved", False))


@bp.post("/account/notifications")
@login_required
def notifications():
    form = NotificationsForm()
    g.notifications_form = form
    if form.validate_on_submit():
        service.set_notifications(current_user, form.switches(), actor=signed_in_person())
        if not is_htmx():
            flash("Saved your notification settings.", "success")
            return redirect(url_for("auth.account", _anchor="notifications"))
        g.notifications_saved = True
        return render_template("account/_notifications.html")
    if is_htmx():
        return render_template("account/_notifications.html"), 422
    response = make_response(account())  # the whole account page, its other sections as they are
    response.status_code = 422
    return response
