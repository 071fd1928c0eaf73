"""Two-factor sign-in's pages: the second step of signing in, and setting up, switching off and renewing the
recovery codes of an authenticator app from the account page. The rules are in app/accounts/two_factor.py."""

from __future__ import annotations

import segno
from flask import flash, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from app.accounts import passkeys
from app.accounts import two_factor as core
from app.actors import signed_in_person
from app.audit.service import Actor
from app.auth import bp
from app.auth.forms import DisableTwoFactorForm, EnrolForm, PasskeySignInForm, RecoveryCodesForm, SecondStepForm
from app.auth.redirects import safe_next
from app.auth.second_factor import StepAttempt, complete_sign_in, waiting_sign_in

# The secret being set up, sealed like a stored one (the session is a signed cookie, readable by its holder), until
# a code confirms it: nothing is written to the database before that.
ENROLMENT = "two_factor_enrolment"


def _page(template: str, status: int | None = None, *, no_store: bool = False, headers: dict | None = None,
          **context):
    """A page; with a form with errors, 422. `no_store`: it shows a secret, so no cache may keep it."""
    form = context.get("form")
    if status is None:
        status = 422 if form is not None and (form.errors or form.form_errors) else 200
    response = make_response(render_template(template, **context), status)
    response.headers.update(headers or {})
    if no_store:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def _show_error(form, error: core.TwoFactorError) -> None:
    field = getattr(form, error.field, None)
    (field.errors if field is not None else form.form_errors).append(error.message)


def _me():
    """The signed-in User itself (not Flask-Login's proxy), for the core to update."""
    return current_user._get_current_object()


# -- the second step of signing in -----------------------------------------------------------------------------------

def second_step_page(user, *, form=None, passkey_form=None, status: int | None = None, headers: dict | None = None):
    """The second step's page (templates/auth/two_factor.html): the code form when the authenticator is on, the
    passkey button when the user has a passkey; either form with its errors."""
    has_passkeys = passkeys.count(user) > 0
    if status is None and any(f is not None and (f.errors or f.form_errors) for f in (form, passkey_form)):
        status = 422
    return _page("auth/two_factor.html", status or 200, headers=headers,
                 form=form or SecondStepForm(formdata=None), codes=core.is_enabled(user),
                 passkey_form=passkey_form or PasskeySignInForm(formdata=None),
                 passkeys=has_passkeys and passkeys.available(),
                 passkeys_off=passkeys.settings().unavailable if has_passkeys else None)


@bp.route("/login/two-factor", methods=["GET", "POST"])
def second_step():
    user, elsewhere = waiting_sign_in()
    if user is None:
        return elsewhere
    form = SecondStepForm()
    if form.validate_on_submit():
        attempt = StepAttempt.of(user)
        wait = attempt.wait()
        if wait:
            form.form_errors.append(f"Too many wrong codes. Try again in {wait} s.")
            return second_step_page(user, form=form, status=429, headers={"Retry-After": str(wait)})
        actor = Actor.user(user, attempt.ip, request.user_agent.string)
        try:
            kind = core.pass_second_step(user, form.code.data, actor=actor)
        except core.TwoFactorError as error:
            attempt.failed()
            _show_error(form, error)
        else:
            attempt.passed()
            response = complete_sign_in(user)
            if kind == "recovery":  # after the session began: beginning it clears the session, flashes and all
                flash(f"You used a recovery code: {core.recovery_codes_left(user)} left. Make a new set on your "
                      "account page when you run low.", "info")
            return response
    return second_step_page(user, form=form)


# -- setting it up ---------------------------------------------------------------------------------------------------

def _enrolment_secret() -> str:
    """The secret being set up in this session (the same on a reload, so a scanned QR code stays good), or a new one."""
    sealed = session.get(ENROLMENT)
    key = core.settings().secret_key
    if isinstance(sealed, str):
        try:
            return core.decrypt_secret(key, sealed, current_user.id)
        except core.TwoFactorError:
            pass  # sealed for someone else, or under an older pepper: start afresh
    secret = core.new_secret()
    session[ENROLMENT] = core.encrypt_secret(key, secret, current_user.id)
    return secret


def _qr_code(uri: str) -> str:
    """The QR code as an SVG data: URI for an <img>: drawn on the server, so the page needs no script, and the
    Content-Security-Policy's img-src allows data: images."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=4, dark="#111", light="#fff")


@bp.route("/account/two-factor/enrol", methods=["GET", "POST"])
@login_required
def two_factor_enrol():
    if core.is_enabled(current_user):
        flash("Two-factor sign-in is already on.", "info")
        return redirect(url_for("auth.account"))
    form = EnrolForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
    secret = _enrolment_secret()
    if form.validate_on_submit():
        try:
            codes = core.enable(_me(), secret, form.code.data, actor=signed_in_person())
        except core.TwoFactorError as error:
            _show_error(form, error)
        else:
            session.pop(ENROLMENT, None)
            return _page("account/two_factor_recovery_codes.html", no_store=True, codes=codes, enrolled=True,
                         next_page=safe_next(form.next.data) or url_for("auth.account"))
    issuer = core.settings().issuer
    return _page("account/two_factor_enrol.html", no_store=True, form=form, issuer=issuer,
                 qr_code=_qr_code(core.otpauth_uri(secret, current_user.email, issuer)),
                 secret=core.grouped(secret), required=core.is_required(current_user))


# -- switching it off, and new recovery codes ------------------------------------------------------------------------

def _only_when_on():
    if core.is_enabled(current_user):
        return None
    flash("Two-factor sign-in is not on.", "info")
    return redirect(url_for("auth.account"))


@bp.route("/account/two-factor/disable", methods=["GET", "POST"])
@login_required
def two_factor_disable():
    off = _only_when_on()
    if off is not None:
        return off
    form = DisableTwoFactorForm()
    if form.validate_on_submit():
        try:
            core.disable(_me(), form.password.data, form.code.data, actor=signed_in_person())
        except core.TwoFactorError as error:
            _show_error(form, error)
        else:
            flash("The authenticator app is off: your passkeys still pass the second step."
                  if core.has_second_factor(current_user)
                  else "Two-factor sign-in is off: your password alone signs you in now.", "success")
            return redirect(url_for("auth.account"))
    return _page("account/two_factor_disable.html", form=form, required=core.is_required(current_user),
                 passkeys=passkeys.count(current_user))


@bp.route("/account/two-factor/recovery-codes", methods=["GET", "POST"])
@login_required
def recovery_codes():
    off = _only_when_on()
    if off is not None:
        return off
    form = RecoveryCodesForm()
    if form.validate_on_submit():
        try:
            codes = core.renew_recovery_codes(_me(), form.proof.data, actor=signed_in_person())
        except core.TwoFactorError as error:
            _show_error(form, error)
        else:
            return _page("account/two_factor_recovery_codes.html", no_store=True, codes=codes, enrolled=False,
                         next_page=url_for("auth.account"))
    return _page("account/two_factor_new_codes.html", form=form, left=core.recovery_codes_left(current_user))


@bp.app_template_global()
def two_factor_state(user) -> dict:
    """What the account page's two-factor section shows (templates/account/_two_factor.html), read only there."""
    enabled = core.is_enabled(user)
    return {"enabled": enabled, "enabled_at": user.totp_enabled_at, "required": core.is_required(user),
            "codes_left": core.recovery_codes_left(user) if enabled else 0,
            "passkeys": passkeys.passkeys_of(user), "passkeys_off": passkeys.settings().unavailable}


@bp.app_template_global()
def has_second_factor(user) -> bool:
    """Whether the user signs in with a second step (the admin's list of users shows it)."""
    return core.has_second_factor(user)
