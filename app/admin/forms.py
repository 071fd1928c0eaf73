"""The admin pages' filter forms: GET forms read from the query string, without CSRF (they change nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, NumberRange, Optional

from app.accounts import service as accounts
from app.audit.queries import AuditFilters
from app.forms import BoundedDateField, Form
from app.keys import policy
from app.keys.queries import ADMIN_SORTS, STATUSES, KeyFilters


class _QueryForm(Form):
    class Meta:
        csrf = False


class KeyFilterForm(_QueryForm):
    q = StringField("Search", description="Name, owner email or key start", validators=[Optional()])
    status = SelectField("Status", default="all", choices=[SelectChoice("all", "Any"), SelectChoice("live", "Live"),
                                                           *(SelectChoice(s, s.capitalize()) for s in STATUSES)])
    owner = StringField("Owner email", validators=[Optional()])
    scope = StringField("Scope", validators=[Optional()])
    expiring = IntegerField("Expiring within (days)", validators=[Optional(), NumberRange(1, policy.MAX_DAYS)])
    idle = IntegerField("Idle for (days)", validators=[Optional(), NumberRange(1, policy.MAX_DAYS)])
    never_expiring = BooleanField("Never expires")
    sort = SelectField("Sort", default="newest", choices=[SelectChoice(name, name.replace("_", " ").capitalize())
                                                          for name in ADMIN_SORTS])

    def filters(self) -> KeyFilters:
        return KeyFilters(search=self.q.data or "", status=self.status.data or "all", owner=self.owner.data or "",
                          scope=self.scope.data or "", expiring_within_days=self.expiring.data,
                          idle_days=self.idle.data, never_expiring=bool(self.never_expiring.data))


class AuditFilterForm(_QueryForm):
    user = StringField("User email", validators=[Optional()])
    key = StringField("Key", description="Its id or its start, such as kf_cVo3KB", validators=[Optional()])
    event = SelectField("Event", validate_choice=False, default="")
    since = BoundedDateField("From", validators=[Optional()])
    until = BoundedDateField("To (inclusive)", validators=[Optional()])

    def filters(self) -> AuditFilters:
        def midnight(day):
            return datetime.combine(day, time.min, UTC)

        actor_ids = None
        if (self.user.data or "").strip():
            user = accounts.find_user(self.user.data)
            actor_ids = (user.id,) if user is not None else ()  # an unknown email matches no event
        return AuditFilters(actor_ids=actor_ids, key=self.key.data or "", event=self.event.data or "",
                            since=midnight(self.since.data) if self.since.data else None,
                            until=midnight(self.until.data) + timedelta(days=1) if self.until.data else None)


class VerifierForm(Form):
    """A new verifier credential: the service's name and what it is. The core checks the name's rules."""

    name = StringField("Service name", validators=[InputRequired("Name the service, such as billing-service.")],
                       description="Lower-case letters, digits, dots, dashes and underscores.")
    description = StringField("Description", validators=[Optional()],
                              description="Optional: what the service is and who runs it.")
