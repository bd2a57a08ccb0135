"""Mobile numbers: validated and normalised to E.164 with ``phonenumbers`` (region CN)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType


class PhoneError(ValueError):
    """A number we refuse, with a message fit for the person who typed it."""


_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize_phone(raw: str, region: str = "CN") -> str:
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except NumberParseException as exc:
        raise PhoneError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("not a valid phone number")
    if phonenumbers.number_type(number) not in _MOBILE:
        raise PhoneError("not a mobile number (an SMS code must reach it)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
