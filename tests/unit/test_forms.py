"""Every form of the app is built on app.forms.Form, which never reads a JSON body or a file as form data."""

from __future__ import annotations

from flask_wtf import FlaskForm

import app.admin.forms
import app.auth.forms
import app.dashboard.forms  # noqa: F401  (importing the modules defines their forms)
from app.forms import Form


def _subclasses(cls) -> set[type]:
    found = set(cls.__subclasses__())
    for subclass in list(found):
        found |= _subclasses(subclass)
    return found


def test_every_form_in_the_app_reads_only_form_fields():
    forms = {cls for cls in _subclasses(FlaskForm) if cls.__module__.startswith("app.")}
    assert len(forms) >= 9
    assert {cls for cls in forms if not issubclass(cls, Form)} == set(), "build these on app.forms.Form"
