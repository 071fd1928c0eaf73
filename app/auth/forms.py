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


class ConfirmationForm(Form):
    """No fields: the "Confirm my address" and "Send a new link" buttons post a CSRF token with it."""
