"""Sign-in forms. Each one carries its own CSRF token (Flask-WTF)."""

from wtforms import EmailField, HiddenField, PasswordField, StringField, ValidationError
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


class RegisterForm(Form):
    email = EmailField("Email", validators=[InputRequired("Enter your email address."), Length(max=254)],
                       render_kw={"autocomplete": "email", "autofocus": True})
    password = PasswordField(
        "Password",
        validators=[InputRequired("Choose a password.")],
        description=f"At least {MIN_LENGTH} characters; {RECOMMENDED_LENGTH} or more is better. "
                    "A passphrase of a few words works well.",
        render_kw={"autocomplete": "new-password", "minlength": MIN_LENGTH, "maxlength": MAX_LENGTH},
    )
    confirm = PasswordField(
        "Repeat password",
        validators=[InputRequired("Repeat the password."), EqualTo("password", "The passwords do not match.")],
        render_kw={"autocomplete": "new-password"},
    )
    next = HiddenField()

    def validate_email(self, field) -> None:
        try:
            normalise_email(field.data or "")
        except AccountError as error:
            raise ValidationError(error.message) from None

    def validate_password(self, field) -> None:
        problem = password_problem(field.data or "", self.email.data)
        if problem:
            raise ValidationError(problem)


class LogoutForm(Form):
    """No fields: it exists so the logout button posts a CSRF token."""


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
