"""Whole numbers from requests (ids, page sizes) written in ASCII digits only.

Python's int() also takes "+1", " 1", "1.0" (through Django's and DRF's integer fields),
full-width "１" and Arabic-Indic "٣": several spellings of one id would slip past anything
that compares ids as text (caches, logs, the repeated-parameter check). A JSON number is taken
as it is, except a float or a boolean."""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError
from rest_framework import serializers

DIGITS = re.compile(r"[0-9]+\Z")
ID_MAX = 2**63 - 1  # Postgres' bigint


def ascii_digits(value: object) -> bool:
    return isinstance(value, str) and DIGITS.match(value) is not None


class IntegerFormField(forms.IntegerField):
    def to_python(self, value):
        if value not in self.empty_values and not ascii_digits(value):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class IntegerApiField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not (isinstance(data, int) or ascii_digits(data)):
            self.fail("invalid")
        return super().to_internal_value(data)
