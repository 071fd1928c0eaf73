"""Sign-in forms. Each one carries its own CSRF token (Flask-WTF)."""

from wtforms import EmailField, HiddenField, PasswordField, ValidationError
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
