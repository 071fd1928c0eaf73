"""Passkeys' pages: registering one from the account page, removing one, and the second step of signing in with one.
The rules are in app/accounts/passkeys.py.

The browser's half of each ceremony needs JavaScript (static/js/passkeys.js): it asks for the options (a POST that
returns JSON, with the CSRF token in its header, and keeps the challenge in the session), runs
navigator.credentials.create() or get(), and posts the answer as a plain form field, so the answer is a form post like
every other: a redirect, or the page again with the error.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from flask import abort, current_app, flash, jsonify, redirect, request, session, url_for
from flask_login import current_user, login_required

from app.accounts import passkeys as core
from app.accounts import two_factor
from app.actors import signed_in_person
from app.audit.service import Actor
from app.auth import bp
from app.auth.forms import PasskeyForm, PasskeySignInForm, RemovePasskeyForm
from app.auth.second_factor import StepAttempt, complete_sign_in, pending_user, waiting_sign_in
from app.auth.two_factor import _me, _page, second_step_page
from app.database import utcnow

REGISTRATION = "passkey_registration"  # the challenge of the passkey being created
ASSERTION = "passkey_assertion"  # the challenge of the second step's passkey request


def _keep_challenge(name: str, challenge: bytes) -> None:
    session[name] = {"challenge": base64.urlsafe_b64encode(challenge).decode(), "issued": utcnow().timestamp()}


def _take_challenge(name: str) -> tuple[bytes | None, datetime | None]:
    """The challenge kept under `name` and when it was issued, removed from the session (None, None if there is
    none, or it is damaged)."""
    kept = session.pop(name, None)
    if not isinstance(kept, dict):
        return None, None
    challenge, issued = kept.get("challenge"), kept.get("issued")
    if not isinstance(challenge, str) or not isinstance(issued, float | int):
        return None, None
    try:
        return base64.urlsafe_b64decode(challenge.encode()), datetime.fromtimestamp(issued, UTC)
    except (ValueError, OverflowError, OSError):
        return None, None


def _options(make, user, name: str):
    """The options JSON of a ceremony, its challenge kept in the session; a JSON 4xx when there can be none."""
    try:
        options, challenge = make(user)
    except core.PasskeyError as error:
        return jsonify(error={"code": "passkey_unavailable", "message": error.message}), 409
    _keep_challenge(name, challenge)
    return current_app.response_class(options, mimetype="application/json", headers={"Cache-Control": "no-store"})


# -- registering one -------------------------------------------------------------------------------------------------

@bp.post("/account/passkeys/options")
@login_required
def passkey_options():
    return _options(core.registration_options, current_user, REGISTRATION)


@bp.route("/account/passkeys/new", methods=["GET", "POST"])
@login_required
def passkey_new():
    form = PasskeyForm()
    if form.validate_on_submit():
        challenge, _ = _take_challenge(REGISTRATION)
        try:
            passkey = core.register(_me(), form.name.data, form.credential.data, challenge,
                                    actor=signed_in_person())
        except core.PasskeyError as error:
            (getattr(form, error.field).errors if error.field == "name" else form.form_errors).append(error.message)
        else:
            flash(f"Added the passkey {passkey.name!r}: use it at the second step of signing in.", "success")
            return redirect(url_for("auth.account"))
    form.credential.data = ""  # an answer is good once: the page shown again asks for a new one
    return _page("account/passkey_new.html", form=form, unavailable=core.settings().unavailable)


# -- removing one ----------------------------------------------------------------------------------------------------

@bp.route("/account/passkeys/<int:passkey_id>/remove", methods=["GET", "POST"])
@login_required
def passkey_remove(passkey_id: int):
    passkey = next((p for p in core.passkeys_of(current_user) if p.id == passkey_id), None)
    if passkey is None:
        abort(404)  # none, or someone else's: the same answer, so an id says nothing about other accounts
    form = RemovePasskeyForm()
    if form.validate_on_submit():
        try:
            name = core.remove(_me(), passkey_id, form.proof.data, actor=signed_in_person())
        except core.PasskeyError as error:
            form.proof.errors.append(error.message)
        else:
            flash(f"Removed the passkey {name!r}.", "success")
            return redirect(url_for("auth.account"))
    last = core.count(current_user) == 1 and not two_factor.is_enabled(current_user)
    return _page("account/passkey_remove.html", form=form, passkey=passkey, last=last,
                 required=two_factor.is_required(current_user))


# -- the second step of signing in -----------------------------------------------------------------------------------

def _no_pending():
    # 409, not 401: nothing is wrong with who asks; the sign-in this belongs to is not (or no longer) there.
    return jsonify(error={"code": "no_sign_in", "message": "No sign-in waits for a second step: log in again."}), 409


@bp.post("/login/two-factor/passkey/options")
def passkey_sign_in_options():
    user, _ = pending_user()
    if user is None or current_user.is_authenticated:
        return _no_pending()
    return _options(core.authentication_options, user, ASSERTION)


@bp.post("/login/two-factor/passkey")
def passkey_sign_in():
    user, elsewhere = waiting_sign_in()
    if user is None:
        return elsewhere
    form = PasskeySignInForm()
    if form.validate_on_submit():
        attempt = StepAttempt.of(user)
        wait = attempt.wait()
        if wait:
            form.form_errors.append(f"Too many failed attempts. Try again in {wait} s.")
            return second_step_page(user, passkey_form=form, status=429, headers={"Retry-After": str(wait)})
        challenge, issued = _take_challenge(ASSERTION)
        try:
            core.pass_second_step(user, form.credential.data, challenge, issued,
                                  actor=Actor.user(user, attempt.ip, request.user_agent.string))
        except core.PasskeyError as error:
            attempt.failed()
            form.form_errors.append(error.message)
        else:
            attempt.passed()
            return complete_sign_in(user)
    form.credential.data = ""  # an answer is good once: the page shown again asks for a new one
    return second_step_page(user, passkey_form=form)
