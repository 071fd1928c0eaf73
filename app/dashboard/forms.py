"""Dashboard forms. They check the shape of the input; the key core checks the rules (scopes, expiry policy, IPs)
and its KeyInputError is shown next to the field it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from wtforms import (
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from app.forms import BoundedDateField, Form
from app.keys import policy
from app.keys.policy import KeyInputError
from app.keys.scopes import UnknownScopeError, normalise_scopes
from app.keys.service import GRACE_PERIODS

EXPIRY_PRESETS = (7, 30, 90, 365)
GRACE_LABELS = {"none": "No grace: the old key stops now", "1h": "1 hour", "24h": "24 hours", "7d": "7 days"}


def at_most(length: int) -> Length:
    """The key core's own wording, so a too-long field reads the same on the form and from the API."""
    return Length(max=length, message=f"Use at most {length} characters.")


class CheckboxesField(SelectMultipleField):
    """Several checkboxes sharing one name, one per choice."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class KeySettingsForm(Form):
    """What can be changed on a key after it is made."""

    name = StringField("Name", validators=[InputRequired("Give the key a name, so you can tell it apart later."),
                                           at_most(policy.NAME_LENGTH)],
                       description="What uses this key, such as “billing sync” or “Ada's laptop”.")
    description = TextAreaField("Description", validators=[Optional(), at_most(policy.DESCRIPTION_LENGTH)],
                                render_kw={"rows": 2})
    scopes = CheckboxesField("Scopes", validate_choice=False,
                             description="What the key may do. Give it only what it needs.")
    allowed_ips = TextAreaField(
        "Allowed IP addresses", render_kw={"rows": 3, "spellcheck": "false"},
        description="One address or CIDR range per line (IPv4 or IPv6). Leave empty to allow any address.")
    rate_limit = IntegerField("Rate limit", validators=[Optional(), NumberRange(1, policy.MAX_RATE_LIMIT)],
                              description="Requests per minute. Leave empty for no limit.",
                              render_kw={"inputmode": "numeric"})
    next = HiddenField()

    def __init__(self, *args, catalogue: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scopes.choices = [SelectChoice(name, name) for name in catalogue]
        self.scope_descriptions = catalogue

    # The key core checks these again; checking them here too shows every mistake at once, not one per try.
    def validate_scopes(self, field) -> None:
        try:
            normalise_scopes(field.data or (), self.scope_descriptions)
        except UnknownScopeError as error:
            raise ValidationError(str(error)) from None

    def validate_allowed_ips(self, field) -> None:
        try:
            policy.clean_networks(field.data)
        except KeyInputError as error:
            raise ValidationError(error.message) from None


class CreateKeyForm(KeySettingsForm):
    expiry = RadioField("Expires", validators=[InputRequired("Choose when the key expires.")])
    expires_on = BoundedDateField("Expiry date", validators=[Optional()],
                                  description="The key stops working at this time of day on that date (UTC).")

    def __init__(self, *args, catalogue: dict[str, str], max_days: int, allow_never: bool, default_days: int,
                 **kwargs) -> None:
        super().__init__(*args, catalogue=catalogue, expiry=str(default_days), **kwargs)
        presets = sorted({days for days in EXPIRY_PRESETS if days <= max_days} | {default_days})
        choices = [SelectChoice(str(days), f"In {days} days") for days in presets]
        choices.append(SelectChoice("date", "On a date"))
        if allow_never:
            choices.append(SelectChoice("never", "Never"))
        self.expiry.choices = choices
        self.max_days = max_days

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        # Checked here, not in a field validator: Optional() ends the date field's checks when it is empty.
        if self.expiry.data == "date" and self.expires_on.data is None and not self.expires_on.errors:
            self.expires_on.errors = [*self.expires_on.errors, "Choose a date, or one of the other expiry options."]
            return False
        return valid

    def expires_at(self, now: datetime) -> datetime | None:
        """The chosen expiry as a UTC datetime (None for never); the key core checks it against the policy."""
        if self.expiry.data == "never":
            return None
        if self.expiry.data == "date":
            return datetime.combine(self.expires_on.data, now.timetz()).astimezone(UTC)
        return now + timedelta(days=int(self.expiry.data))


class RotateForm(Form):
    grace = SelectField("Keep the old key working for", default="24h",
                        choices=[SelectChoice(value, label) for value, label in GRACE_LABELS.items()],
                        validators=[InputRequired()])
    next = HiddenField()

    def validate_grace(self, field) -> None:
        if field.data not in GRACE_PERIODS:
            raise ValidationError("Choose one of the listed grace periods.")


class RevokeForm(Form):
    reason = StringField("Reason", validators=[Optional(), at_most(policy.REASON_LENGTH)],
                         description="Optional: why the key is revoked, for the audit log.")
    confirmed = HiddenField()
    next = HiddenField()


class ActionForm(Form):
    """Only a button: renew, disable and enable need nothing but the CSRF token and where to return."""

    next = HiddenField()
