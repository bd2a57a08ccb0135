"""Mobile numbers: validated and normalised to E.164 with ``phonenumbers`` (region CN)."""

from __future__ import annotations

from collections.abc import Collection

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType


class PhoneError(ValueError):
    """A number we refuse, with a message fit for the person who typed it."""


class CountryNotAllowed(PhoneError):
    """A valid mobile number of a country the city does not send codes to.

    SMS pumping (toll fraud) asks a site to text premium or far-away numbers whose
    operators share the termination fee with the fraudster; an allow-list of country
    calling codes (``[sms] allowed_country_codes``) takes those numbers off the table."""


_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize_phone(
    raw: str, region: str = "CN", allowed_countries: Collection[str] | None = None
) -> str:
    """``raw`` as E.164; ``allowed_countries`` (``{"+86"}``), when given, must hold its
    country calling code (else ``CountryNotAllowed``)."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except NumberParseException as exc:
        raise PhoneError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError("not a valid phone number")
    if phonenumbers.number_type(number) not in _MOBILE:
        raise PhoneError("not a mobile number (an SMS code must reach it)")
    if allowed_countries is not None and f"+{number.country_code}" not in allowed_countries:
        raise CountryNotAllowed(f"codes are not sent to +{number.country_code} numbers")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
