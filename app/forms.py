"""The base of every form, and the fields whose input needs bounding before a view does arithmetic with it."""

from __future__ import annotations

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto as _AUTO  # the marker for "no formdata given: read the request"
from wtforms import DateField

from app import dates

SUBMIT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Form(FlaskForm):
    """Flask-WTF's form, reading the posted form fields, never a JSON body or an uploaded file.

    Flask-WTF would fill any form from a JSON body; the layout builds the sign-out form on every page, so a JSON
    array posted anywhere reached it, even while an error page was being drawn. Pages take forms only (a JSON body
    to a page is refused with 415 by request_guard.py); this keeps every form, error pages' included, from reading
    one regardless.
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if formdata is not _AUTO:
                return formdata  # given by the view, such as request.args for a filter form
            # No form of Keyfob's takes a file: an uploaded one is ignored, never a field's value.
            if request.method not in SUBMIT_METHODS:
                return None
            return request.form or None


class BoundedDateField(DateField):
    """A date between dates.EARLIEST and dates.LATEST; any other is an error on the field, never a value."""

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if self.data is not None and not dates.in_range(self.data):
            self.data = None
            raise ValueError(dates.OUT_OF_RANGE)


def show_error_on(form: Form, error, field_names: dict[str, str] | None = None) -> None:
    """Put a core's refusal (anything with `field` and `message`) next to the field it names, through `field_names`
    when the form calls it otherwise, or above the form when no field fits."""
    name = (field_names or {}).get(error.field, error.field)
    if name in form:
        form[name].errors = [*form[name].errors, error.message]
    else:
        form.form_errors.append(error.message)
