"""Key pages: the list with the renewal warnings, create, detail (edit, rotate, renew, disable, revoke).

Every action is a plain form POST that works without JavaScript (it redirects back with a flash message). htmx
requests for row and renewal-list actions get the changed fragment, with the renewal list and the flash messages
as out-of-band swaps. A new or rotated key is shown in the POST's own answer, never stored, never in a URL, and
sent with `Cache-Control: no-store`.
"""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from app.actors import signed_in_person
from app.auth.redirects import safe_next
from app.auth.second_factor import enrolment_required
from app.charts import CHART_DAYS, stacked_daily_chart
from app.dashboard import bp
from app.dashboard.forms import ActionForm, CreateKeyForm, KeySettingsForm, RevokeForm, RotateForm
from app.database import utcnow
from app.extensions import login_manager
from app.forms import show_error_on
from app.htmx import from_htmx, is_htmx
from app.keys import queries, service
from app.keys.core import settings
from app.keys.models import ApiKey
from app.keys.policy import KeyInputError
from app.keys.service import KeyStateError

RENEWAL_LIST_LIMIT = 10  # the soonest few, at the top of the page; the list links to the rest
LIST_FILTERS = ("live", *queries.STATUSES)


@bp.before_request
def _require_login():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return enrolment_required()  # TWO_FACTOR_FOR_EVERYONE (or an admin's own keys, under TWO_FACTOR_FOR_ADMINS)


def _back(form, default: str | None = None) -> str:
    return safe_next(form.next.data) or default or url_for("dashboard.index")


def _renewal(now) -> dict:
    """The renewal list's template values: the soonest keys, and how many there are in all (the list says when it
    shows only some, and links to the rest)."""
    keys = queries.renewal_list(current_user, now, limit=RENEWAL_LIST_LIMIT)
    total = len(keys)
    if total == RENEWAL_LIST_LIMIT:
        total = queries.renewal_list_size(current_user, now)
    return {"renewal_keys": keys, "renewal_total": total}


def _settings_form(key: ApiKey, *, submitted: bool) -> KeySettingsForm:
    """The edit form: what was just posted, or else the key's current settings."""
    catalogue = settings().catalogue
    if submitted:
        return KeySettingsForm(catalogue=catalogue)
    return KeySettingsForm(catalogue=catalogue, formdata=None, data={
        "name": key.name, "description": key.description, "scopes": list(key.scopes),
        "allowed_ips": "\n".join(key.allowed_ips), "rate_limit": key.rate_limit,
    })


def _create_form() -> CreateKeyForm:
    s = settings()
    return CreateKeyForm(catalogue=s.catalogue, max_days=s.max_lifetime_days, allow_never=s.allow_non_expiring,
                         default_days=s.default_lifetime_days)


def _shown_once(key: ApiKey, token: str, *, rotated_grace: str | None = None):
    """The one answer that carries a plaintext key: never cached, never kept in htmx's history."""
    response = make_response(render_template("dashboard/created.html", key=key, token=token,
                                             rotated_grace=rotated_grace, now=utcnow()))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


# -- the list ------------------------------------------------------------------------------------------------------

@bp.get("/")
def index():
    now = utcnow()
    status = request.args.get("status", "live")
    if status not in LIST_FILTERS:
        status = "live"
    search = request.args.get("q", "").strip()[:100]
    listing = queries.key_page(current_user.id, now=now, warning_days=settings().warning_days, status=status,
                               search=search, page=request.args.get("page", 1, type=int))
    context = {"listing": listing, "status": status, "search": search, "now": now}
    if is_htmx():
        return render_template("dashboard/_key_list.html", **context)
    ended = None
    if status == "live" and not search:
        ended = queries.key_page(current_user.id, now=now, warning_days=settings().warning_days, status="ended",
                                 per_page=10)
    return render_template("dashboard/index.html", ended=ended, **_renewal(now), **context)


# -- create --------------------------------------------------------------------------------------------------------

@bp.route("/new", methods=["GET", "POST"])
def create():
    form = _create_form()
    if form.validate_on_submit():
        now = utcnow()
        try:
            key, token = service.create(
                current_user, form.name.data, form.scopes.data, form.expires_at(now), actor=signed_in_person(),
                description=form.description.data or "", allowed_ips=form.allowed_ips.data or "",
                rate_limit=form.rate_limit.data, now=now)
        except KeyInputError as error:
            show_error_on(form, error, {"expires_at": "expires_on" if form.expiry.data == "date" else "expiry"})
        else:
            return _shown_once(key, token)
    return render_template("dashboard/new.html", form=form), 422 if form.errors or form.form_errors else 200


# -- one key -------------------------------------------------------------------------------------------------------

def _detail_page(key: ApiKey, *, settings_form=None, rotate_form=None, status: int = 200):
    now = utcnow()
    chart = stacked_daily_chart(queries.daily_usage([key.id], CHART_DAYS, now.date()))
    return render_template(
        "dashboard/detail.html", key=key, now=now, chart=chart, events=queries.key_events(key.id),
        **queries.key_services(key.id),
        settings_form=settings_form or _settings_form(key, submitted=False),
        rotate_form=rotate_form or RotateForm(formdata=None), action_form=ActionForm(formdata=None),
        revoke_form=RevokeForm(formdata=None),
        renewed_expiry=service.renewal_expiry(key, now),
    ), status


@bp.get("/<int:key_id>")
def detail(key_id: int):
    return _detail_page(queries.get_key(key_id, current_user))


@bp.post("/<int:key_id>")
def edit(key_id: int):
    key = queries.get_key(key_id, current_user)
    form = _settings_form(key, submitted=True)
    if form.validate_on_submit():
        try:
            changed = service.update(key, actor=signed_in_person(), name=form.name.data,
                                     description=form.description.data or "", scopes=form.scopes.data,
                                     allowed_ips=form.allowed_ips.data or "", rate_limit=form.rate_limit.data)
        except KeyInputError as error:
            show_error_on(form, error)
        except KeyStateError as error:
            flash(str(error), "error")
            return redirect(url_for("dashboard.detail", key_id=key.id))
        else:
            flash(f"Saved {key.name}." if changed else "Nothing changed.", "success" if changed else "info")
            return redirect(url_for("dashboard.detail", key_id=key.id))
    return _detail_page(key, settings_form=form, status=422)


@bp.post("/<int:key_id>/rotate")
def rotate(key_id: int):
    key = queries.get_key(key_id, current_user)
    form = RotateForm()
    if form.validate_on_submit():
        try:
            token = service.rotate(key, form.grace.data, actor=signed_in_person())
        except KeyInputError as error:
            form.grace.errors = [*form.grace.errors, error.message]
        except KeyStateError as error:
            flash(str(error), "error")
            return redirect(url_for("dashboard.detail", key_id=key.id))
        else:
            return _shown_once(key, token, rotated_grace=form.grace.data)
    return _detail_page(key, rotate_form=form, status=422)


def _after_change(form, key: ApiKey, message: str, *, fragment: str, status: int = 200, category: str = "success",
                  refresh_lists: bool = False):
    """Answer a changed key: htmx gets `fragment` plus the renewal list and flashes out of band; a plain form POST
    is sent back where it came from. `refresh_lists` asks the page's key table to reload itself, for a change made
    outside it (a renewal from the renewal list); a row action swaps its own row instead."""
    flash(message, category)
    if not is_htmx():
        return redirect(_back(form, url_for("dashboard.detail", key_id=key.id)))
    now = utcnow()
    response = make_response(render_template(
        fragment, key=key, now=now, **_renewal(now)), status)
    if refresh_lists:
        response.headers["HX-Trigger"] = "keys-changed"
    return response


def _state_refused(form, key: ApiKey, error: KeyStateError, fragment: str):
    return _after_change(form, key, str(error), fragment=fragment, status=409, category="error")


@bp.post("/<int:key_id>/renew")
def renew(key_id: int):
    key = queries.get_key(key_id, current_user)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    now = utcnow()
    try:
        service.renew(key, actor=signed_in_person(), now=now)
    except KeyStateError as error:
        return _state_refused(form, key, error, "dashboard/_renewal_update.html")
    return _after_change(form, key, f"Renewed {key.name}: it now expires on {key.expires_at:%d %b %Y}.",
                         fragment="dashboard/_renewal_update.html", refresh_lists=True)


def _switch(key_id: int, disabled: bool):
    key = queries.get_key(key_id, current_user)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        service.update(key, actor=signed_in_person(), disabled=disabled)
    except KeyStateError as error:
        return _state_refused(form, key, error, "dashboard/_row_update.html")
    message = (f"Disabled {key.name}: requests with it are refused until you enable it." if disabled
               else f"Enabled {key.name}.")
    return _after_change(form, key, message, fragment="dashboard/_row_update.html")


@bp.post("/<int:key_id>/disable")
def disable(key_id: int):
    return _switch(key_id, True)


@bp.post("/<int:key_id>/enable")
def enable(key_id: int):
    return _switch(key_id, False)


@bp.route("/<int:key_id>/revoke", methods=["GET", "POST"])
def revoke(key_id: int):
    """Without JavaScript, GET and an unconfirmed POST show a confirmation page; with htmx, hx-confirm asks."""
    key = queries.get_key(key_id, current_user)
    form = RevokeForm()
    if request.method == "POST" and not from_htmx() and not form.confirmed.data:
        # Without JavaScript no hx-confirm dialog asked: the page asks, keeping the reason typed so far.
        form.confirmed.data = "yes"
    elif request.method == "POST" and form.validate_on_submit():
        try:
            service.revoke(key, form.reason.data or "", actor=signed_in_person())
        except KeyInputError as error:
            show_error_on(form, error)
        except KeyStateError as error:
            return _state_refused(form, key, error, "dashboard/_row_update.html")
        else:
            return _after_change(form, key, f"Revoked {key.name}. Requests with it are refused from now on.",
                                 fragment="dashboard/_row_update.html")
    elif request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
    status = 422 if form.errors or form.form_errors else 200
    return render_template("dashboard/revoke.html", key=key, form=form, now=utcnow()), status
