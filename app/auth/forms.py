"""Sign-in forms. Each one carries its own CSRF token (Flask-WTF)."""

from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField, ValidationError
from wtforms.validators import EqualTo, InputRequired, Length

from app.accounts.passwords import MAX_LENGTH, MIN_LENGTH, RECOMMENDED_LENGTH, password_problem
from app.accounts.service import AccountError, normalise_email
from app.forms import Form


class LoginForm(Form):
    email = EmailField("Email", validators=[InputRequired("Enter your email address."), Length(max=254)],
                       render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password", validators=[InputRequired("Enter your password."),
                                                     Length(max=MAX_LENGTH)],
                             render_kw={"autocomplete": "current-password"})
    next = HiddenField()


def _new_password(label: str = "Password") -> PasswordField:
    return PasswordField(
        label,
        validators=[InputRequired("Choose a password.")],
        description=f"At least {MIN_LENGTH} characters; {RECOMMENDED_LENGTH} or more is better. "
                    "A passphrase of a few words works well.",
        render_kw={"autocomplete": "new-password", "minlength": MIN_LENGTH, "maxlength": MAX_LENGTH},
    )


def _repeated_password() -> PasswordField:
    return PasswordField(
        "Repeat password",
        validators=[InputRequired("Repeat the password."), EqualTo("password", "The passwords do not match.")],
        render_kw={"autocomplete": "new-password"},
    )


def _checked_email(field) -> None:
    try:
        normalise_email(field.data or "")
    except AccountError as error:
        raise ValidationError(error.message) from None


class RegisterForm(Form):
    email = EmailField("Email", validators=[InputRequired("Enter your email address."), Length(max=254)],
                       render_kw={"autocomplete": "email", "autofocus": True})
    password = _new_password()
    confirm = _repeated_password()
    next = HiddenField()

    def validate_email(self, field) -> None:
        _checked_email(field)

    def validate_password(self, field) -> None:
        problem = password_problem(field.data or "", self.email.data)
        if problem:
            raise ValidationError(problem)


class ForgotPasswordForm(Form):
    email = EmailField("Email", validators=[InputRequired("Enter your email address."), Length(max=254)],
                       render_kw={"autocomplete": "email", "autofocus": True})

    def validate_email(self, field) -> None:
        _checked_email(field)


class ResetPasswordForm(Form):
    """The new password, checked by the same rules as at sign-up against the address of the account it is for
    (`account_email`, set by the view)."""

    password = _new_password("New password")
    confirm = _repeated_password()
    account_email: str | None = None

    def validate_password(self, field) -> None:
        problem = password_problem(field.data or "", self.account_email)
        if problem:
            raise ValidationError(problem)


class LogoutForm(Form):
    """No fields: it exists so the logout button posts a CSRF token."""


class ConfirmationForm(Form):
    """No fields: the "Confirm my address" and "Send a new link" buttons post a CSRF token with it."""


class Switch(BooleanField):
    """A checkbox that is on when it sends what a checkbox sends ("y", or "on" without a value), off when absent:
    any other value (a hand-made "maybe", two values) is an error on the field, never read as "on"."""

    ON = ("y", "on", "true", "1")

    def process_formdata(self, valuelist):
        if not valuelist:
            self.data = False
        elif len(valuelist) == 1 and str(valuelist[0]).lower() in self.ON:
            self.data = True
        else:
            self.data = False
            raise ValueError("Choose on or off.")


class NotificationsForm(Form):
    """The account page's notification settings: one switch per User.notify_* column."""

    notify_expiry = Switch("Expiry reminders", description="30, 7 and 1 days before one of your keys expires, "
                                                           "and when it has expired.")
    notify_suspension = Switch("A key suspended for its rate limit",
                               description="When one of your keys kept exceeding its rate limit and is refused for "
                                           "a while.")
    notify_new_network = Switch("A key used from a new network",
                                description="The first use of a key from an IP network (an IPv4 /24 or IPv6 /64) it "
                                            "was never used from; at most one mail an hour per key.")
    notify_admin_action = Switch("A key revoked or disabled by an admin",
                                 description="When someone else, an administrator, stops one of your keys.")

    def switches(self) -> dict[str, bool]:
        return {field.name: field.data for field in self if isinstance(field, Switch)}


# -- two-factor sign-in (app/auth/two_factor.py) ---------------------------------------------------------------------
# The codes are bounded here and parsed by the core (accounts.two_factor.parse_code), which says what is wrong.

_CODE_KW = {"autocomplete": "one-time-code", "inputmode": "text", "autocapitalize": "off", "spellcheck": "false",
            "maxlength": 64}


class SecondStepForm(Form):
    code = StringField("Code", validators=[InputRequired("Enter the code from your authenticator app.")],
                       description="The 6 digits your authenticator app shows, or one of your recovery codes.",
                       render_kw={**_CODE_KW, "autofocus": True})


class EnrolForm(Form):
    code = StringField("Code from the app", validators=[InputRequired("Enter the code the app shows.")],
                       render_kw={**_CODE_KW, "inputmode": "numeric"})
    next = HiddenField()


class DisableTwoFactorForm(Form):
    password = PasswordField("Password", validators=[InputRequired("Enter your password."), Length(max=MAX_LENGTH)],
                             render_kw={"autocomplete": "current-password"})
    code = StringField("Code", validators=[InputRequired("Enter a current code.")],
                       description="From your authenticator app, or one of your recovery codes.", render_kw=_CODE_KW)


class RecoveryCodesForm(Form):
    proof = PasswordField("Password or a current code",
                          validators=[InputRequired("Enter your password or a current code."),
                                      Length(max=MAX_LENGTH)],
                          render_kw={"autocomplete": "current-password"})


class PasskeyForm(Form):
    """Registering a passkey: its name, and the browser's answer (filled in by static/js/passkeys.js)."""
    name = StringField("Name", validators=[InputRequired("Give the passkey a name, such as the device it is on."),
                                           Length(max=64, message="Keep the name to 64 characters.")],
                       description="So that you can tell your passkeys apart, such as “Work laptop”.",
                       render_kw={"maxlength": 64, "autocomplete": "off"})
    credential = HiddenField()


class PasskeySignInForm(Form):
    """The second step with a passkey: the browser's answer (filled in by static/js/passkeys.js)."""
    credential = HiddenField()


class RemovePasskeyForm(Form):
    proof = PasswordField("Password or a current code",
                          validators=[InputRequired("Enter your password or a current code."),
                                      Length(max=MAX_LENGTH)],
                          render_kw={"autocomplete": "current-password"})
