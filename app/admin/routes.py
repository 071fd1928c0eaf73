"""Admin pages. Every route checks the role on the server; every change is made through the core as the admin,
so it lands in the audit log with their name, IP and user agent."""

from __future__ import annotations

import csv
import io

from flask import (
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user

from app.accounts import service as accounts
from app.accounts import two_factor
from app.accounts.models import User
from app.actors import signed_in_person
from app.admin import bp
from app.admin.forms import AuditFilterForm, KeyFilterForm, VerifierForm
from app.audit import queries as audit_queries
from app.audit import service as audit
from app.audit.models import Alert
from app.auth.redirects import safe_next
from app.auth.second_factor import enrolment_required
from app.charts import CHART_DAYS, stacked_daily_chart
from app.dashboard.forms import ActionForm, RevokeForm
from app.database import MAX_ID, utcnow
from app.errors import error_response
from app.extensions import db, login_manager
from app.forms import show_error_on
from app.keys import queries, service, verifiers
from app.keys.core import settings
from app.keys.policy import KeyInputError
from app.keys.service import KeyStateError

HEALTH_REASONS = {
    "never_expiring": "Never expire",
    "idle": "Not used for 30 days or more",
    "every_scope": "Hold every scope",
    "owner_deactivated": "Belong to a deactivated user",
}


@bp.before_request
def _require_admin():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    return enrolment_required()  # TWO_FACTOR_FOR_ADMINS: no admin page before a second factor is set up


def _back(default: str) -> str:
    return safe_next(request.form.get("next")) or default


def _checked_post() -> None:
    if not ActionForm().validate_on_submit():
        abort(400)


# -- pages -----------------------------------------------------------------------------------------------------------

@bp.get("/")
def overview():
    now = utcnow()
    return render_template(
        "admin/overview.html", now=now, totals=queries.totals(now, settings().warning_days),
        chart=stacked_daily_chart(queries.daily_usage(None, CHART_DAYS, now.date())),
        top=queries.top_keys(CHART_DAYS, now.date()), alerts=audit_queries.alerts(open_only=True, limit=5),
        open_alerts=audit_queries.open_alert_count())


@bp.get("/keys")
def keys():
    now = utcnow()
    form = KeyFilterForm(formdata=request.args)
    filters = form.filters() if form.validate() else KeyFilterForm(formdata=None).filters()
    listing = queries.admin_key_page(filters, now=now, warning_days=settings().warning_days, sort=form.sort.data,
                                     page=request.args.get("page", 1, type=int))
    arguments = {name: value for name, value in request.args.items() if name != "page"}
    return render_template("admin/keys.html", form=form, listing=listing, arguments=arguments, now=now,
                           action_form=ActionForm())


@bp.get("/keys/<int:key_id>")
def key(key_id: int):
    key = queries.get_key(key_id)
    now = utcnow()
    return render_template(
        "admin/key.html", key=key, now=now,
        chart=stacked_daily_chart(queries.daily_usage([key.id], CHART_DAYS, now.date())),
        events=queries.key_events(key.id, limit=100), action_form=ActionForm(), revoke_form=RevokeForm(),
        **queries.key_services(key.id))


@bp.get("/alerts")
def alerts():
    show_all = request.args.get("show") == "all"
    return render_template("admin/alerts.html", alerts=audit_queries.alerts(open_only=not show_all, limit=200),
                           show_all=show_all, now=utcnow(), action_form=ActionForm())


@bp.get("/health")
def health():
    now = utcnow()
    return render_template("admin/health.html", lists=queries.health_lists(now, settings().catalogue),
                           reasons=HEALTH_REASONS, now=now,
                           action_form=ActionForm())


@bp.get("/users")
def users():
    counts = queries.key_counts_by_owner(utcnow())
    return render_template("admin/users.html", users=accounts.list_users(), counts=counts, now=utcnow(),
                           action_form=ActionForm())


def _audit_form() -> AuditFilterForm:
    form = AuditFilterForm(formdata=request.args)
    form.event.choices = [("", "Any event"), *((name, name) for name in audit_queries.event_names())]
    return form


@bp.get("/audit")
def audit_log():
    form = _audit_form()
    filters = form.filters() if form.validate() else AuditFilterForm(formdata=None).filters()
    page = max(request.args.get("page", 1, type=int), 1)
    events, more = audit_queries.audit_page(filters, page)
    arguments = {name: value for name, value in request.args.items() if name != "page"}
    return render_template("admin/audit.html", form=form, events=events, page=page, more=more,
                           arguments=arguments, now=utcnow())


CSV_COLUMNS = ("time", "event", "actor", "key_id", "key", "detail", "ip", "user_agent")


@bp.get("/audit.csv")
def audit_csv():
    form = _audit_form()
    if not form.validate():
        # A file has no place to show a filter's error, and exporting everything instead would mislead.
        problems = "; ".join(f"{form[name].label.text}: {' '.join(errors)}" for name, errors in form.errors.items())
        return error_response(400, "invalid_filter", f"The export's filters are not valid. {problems}")
    filters = form.filters()

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for event in audit_queries.audit_rows(filters):
            writer.writerow([event.created_at.isoformat(), event.event, event.actor, event.key_id or "",
                             event.key_display or "", _csv_safe(event.detail), event.ip or "",
                             _csv_safe(event.user_agent)])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        if not buffer.tell():
            yield buffer.getvalue()

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f"attachment; filename=keyfob-audit-{utcnow():%Y%m%d-%H%M}.csv"
    return response


def _csv_safe(text: str | None) -> str:
    """Text a spreadsheet will show, not run: a cell starting with = + - @ is a formula to Excel (CSV injection),
    and a user agent or a reason is whatever a client chose to send."""
    text = text or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# -- actions ---------------------------------------------------------------------------------------------------------

@bp.post("/keys/<int:key_id>/disable")
def disable_key(key_id: int):
    return _switch(key_id, disabled=True)


@bp.post("/keys/<int:key_id>/enable")
def enable_key(key_id: int):
    return _switch(key_id, disabled=False)


def _switch(key_id: int, *, disabled: bool):
    _checked_post()
    key = queries.get_key(key_id)
    try:
        service.update(key, actor=signed_in_person(), disabled=disabled)
    except KeyStateError as error:
        flash(str(error), "error")
    else:
        flash(f"{'Disabled' if disabled else 'Enabled'} {key.name} ({key.display_start}).", "success")
    return redirect(_back(url_for("admin.key", key_id=key.id)))


@bp.post("/keys/<int:key_id>/revoke")
def revoke_key(key_id: int):
    key = queries.get_key(key_id)
    form = RevokeForm()
    if not form.validate_on_submit():
        flash(" ".join(form.reason.errors) or "The form expired; try again.", "error")
        return redirect(url_for("admin.key", key_id=key.id))
    try:
        service.revoke(key, form.reason.data or "", actor=signed_in_person())
    except (KeyInputError, KeyStateError) as error:
        flash(getattr(error, "message", str(error)), "error")
    else:
        flash(f"Revoked {key.name} ({key.display_start}).", "success")
    return redirect(url_for("admin.key", key_id=key.id))


@bp.post("/keys/<int:key_id>/unsuspend")
def lift_suspension(key_id: int):
    _checked_post()
    key = queries.get_key(key_id)
    service.lift_suspension(key, actor=signed_in_person())
    flash(f"Lifted the suspension of {key.name} ({key.display_start}).", "success")
    return redirect(_back(url_for("admin.key", key_id=key.id)))


@bp.post("/alerts/<int:alert_id>/acknowledge")
def acknowledge_alert(alert_id: int):
    _checked_post()
    alert = db.session.get(Alert, alert_id) if alert_id <= MAX_ID else None
    if alert is None:
        abort(404)
    audit.acknowledge_alert(alert, signed_in_person())
    flash("Alert acknowledged.", "success")
    return redirect(_back(url_for("admin.alerts")))


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id) if user_id <= MAX_ID else None
    if user is None:
        abort(404)
    return user


@bp.post("/users/<int:user_id>/<any(promote, demote, deactivate, reactivate):action>")
def change_user(user_id: int, action: str):
    _checked_post()
    user = _user(user_id)
    try:
        if action in ("promote", "demote"):
            accounts.set_admin(user, action == "promote", actor=signed_in_person())
        else:
            accounts.set_active(user, action == "reactivate", actor=signed_in_person())
    except accounts.AccountError as error:
        flash(error.message, "error")
        return redirect(url_for("admin.users"))
    flash(f"{action.capitalize()}d {user.email}.", "success")  # promoted, demoted, deactivated, reactivated
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/reset-two-factor")
def reset_two_factor(user_id: int):
    _checked_post()
    user = _user(user_id)
    try:
        two_factor.reset(user, actor=signed_in_person())
    except two_factor.TwoFactorError as error:
        flash(error.message, "error")
    else:
        flash(f"Reset the second factor of {user.email}: their password alone signs them in now.", "success")
    return redirect(url_for("admin.users"))


# -- verifier credentials --------------------------------------------------------------------------------------------

def _verifier(verifier_id: int):
    verifier = verifiers.get_verifier(verifier_id)
    if verifier is None:
        abort(404)
    return verifier


def _credential_shown_once(verifier, token: str, *, rotated: bool):
    """The one answer that carries a verifier's plaintext credential: never cached."""
    response = make_response(render_template("admin/verifier_created.html", verifier=verifier, token=token,
                                             rotated=rotated))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/verifiers", methods=["GET", "POST"], endpoint="verifiers")
def verifiers_page():
    form = VerifierForm()
    if form.validate_on_submit():
        try:
            verifier, token = verifiers.create(form.name.data, actor=signed_in_person(),
                                               description=form.description.data or "")
        except verifiers.VerifierError as error:
            show_error_on(form, error)
        else:
            return _credential_shown_once(verifier, token, rotated=False)
    status = 422 if form.errors or form.form_errors else 200
    return render_template("admin/verifiers.html", verifiers=verifiers.list_verifiers(), form=form, now=utcnow(),
                           action_form=ActionForm()), status


@bp.post("/verifiers/<int:verifier_id>/rotate")
def rotate_verifier(verifier_id: int):
    _checked_post()
    verifier = _verifier(verifier_id)
    try:
        token = verifiers.rotate(verifier, actor=signed_in_person())
    except verifiers.VerifierError as error:
        flash(error.message, "error")
        return redirect(url_for("admin.verifiers"))
    return _credential_shown_once(verifier, token, rotated=True)


@bp.post("/verifiers/<int:verifier_id>/revoke")
def revoke_verifier(verifier_id: int):
    _checked_post()
    verifier = _verifier(verifier_id)
    try:
        verifiers.revoke(verifier, actor=signed_in_person())
    except verifiers.VerifierError as error:
        flash(error.message, "error")
    else:
        flash(f"Revoked the verifier {verifier.name}: it can check no key from now on.", "success")
    return redirect(url_for("admin.verifiers"))
