"""Phone numbers: E.164 normalisation, "can this number get an SMS", and its time zone.

Pure (phonenumbers' metadata ships inside the package; no I/O). Error messages name the
problem but never echo the number: they end up in API responses and logs.
"""

from __future__ import annotations

import phonenumbers
from babel.core import get_global
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType
from phonenumbers import timezone as pn_timezone

# Types that can never receive an SMS or a WhatsApp message. UNKNOWN, VOIP and
# FIXED_LINE_OR_MOBILE (the whole North American plan looks like this) stay allowed: we cannot
# prove they are landlines, and the provider will answer 21614 if they are.
_NOT_MOBILE = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.UAN,
        PhoneNumberType.VOICEMAIL,
        PhoneNumberType.PAGER,
    }
)

_PARSE_PROBLEMS = {
    NumberParseException.INVALID_COUNTRY_CODE: "has no valid country code (give it in +<country> form or set the merchant's default region)",
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}

# Countries spanning several zones whose numbers do not always pin one down (toll-free, some
# mobile ranges): the most populous zone is the least surprising guess for quiet hours.
_PRIMARY_ZONE = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "MX": "America/Mexico_City",
    "RU": "Europe/Moscow",
    "ID": "Asia/Jakarta",
    "KZ": "Asia/Almaty",
    "CN": "Asia/Shanghai",
}


def normalize(raw: str, default_region: str | None = "IN") -> str:
    """Return the number in E.164 (`+919876543210`).

    `default_region` (ISO country, e.g. the merchant's "IN") is used for numbers written
    without a `+<country>` prefix. Raises ValueError naming the problem.
    """
    if raw is None or not str(raw).strip():
        raise ValueError("phone number is empty")
    region = (default_region or "").upper() or None
    try:
        num = phonenumbers.parse(str(raw), region)
    except NumberParseException as exc:
        raise ValueError(
            f"phone number {_PARSE_PROBLEMS.get(exc.error_type, 'could not be parsed')}"
        ) from None
    if not phonenumbers.is_possible_number(num):
        reason = phonenumbers.is_possible_number_with_reason(num)
        why = {
            phonenumbers.ValidationResult.TOO_SHORT: "is too short",
            phonenumbers.ValidationResult.TOO_LONG: "is too long",
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has an invalid country code",
            phonenumbers.ValidationResult.INVALID_LENGTH: "has an impossible length",
        }.get(reason, "is not possible")
        raise ValueError(
            f"phone number {why} for region {phonenumbers.region_code_for_number(num) or region}"
        )
    if not phonenumbers.is_valid_number(num):
        where = phonenumbers.region_code_for_country_code(num.country_code)
        raise ValueError(f"phone number is not a valid number in {where} (no such number range)")
    return phonenumbers.format_number(num, PhoneNumberFormat.E164)


def _parse_e164(e164: str) -> phonenumbers.PhoneNumber:
    if not e164 or not e164.startswith("+"):
        raise ValueError("expected an E.164 number starting with '+'")
    try:
        return phonenumbers.parse(e164, None)
    except NumberParseException:
        raise ValueError("not an E.164 phone number") from None


def is_valid(e164: str) -> bool:
    """A real, assigned-range number in E.164 (what normalize() would accept)."""
    try:
        return phonenumbers.is_valid_number(_parse_e164(e164))
    except ValueError:
        return False


def number_type(e164: str) -> str:
    """The number's kind as a lower-case name: mobile, fixed_line, fixed_line_or_mobile, voip, ..."""
    t = phonenumbers.number_type(_parse_e164(e164))
    for name, value in vars(PhoneNumberType).items():
        if not name.startswith("_") and value == t:
            return name.lower()
    return "unknown"


def is_mobile(e164: str) -> bool:
    """False when the number is known not to take SMS/WhatsApp (landline, toll-free, ...)."""
    return phonenumbers.number_type(_parse_e164(e164)) not in _NOT_MOBILE


def region_for(e164: str) -> str | None:
    """ISO country of the number (`IN`, `KR`), or None."""
    return phonenumbers.region_code_for_number(_parse_e164(e164))


def _canonical_zone(zone: str) -> str:
    # phonenumbers still uses old names (Asia/Calcutta); CLDR knows the canonical ones.
    return get_global("zone_aliases").get(zone, zone)


def timezone_for(e164: str | None, country: str | None = None, default: str = "UTC") -> str:
    """IANA time zone of the recipient, for quiet hours.

    From the number when it names exactly one zone; otherwise from the address `country`
    (or the number's country) when that has one zone or a well-known primary zone;
    otherwise the first zone the number allows; otherwise `default`.
    """
    zones: list[str] = []
    region = None
    num: phonenumbers.PhoneNumber | None = None
    if e164:
        try:
            num = _parse_e164(e164)
        except ValueError:
            num = None
        if num is not None:
            region = phonenumbers.region_code_for_number(num)
            zones = [
                _canonical_zone(z)
                for z in pn_timezone.time_zones_for_number(num)
                if z != pn_timezone.UNKNOWN_TIMEZONE
            ]
            zones = list(dict.fromkeys(zones))
    if len(zones) == 1:
        return zones[0]
    territory = get_global("territory_zones")
    main = (
        phonenumbers.region_code_for_country_code(num.country_code) if num is not None else None
    )  # GG -> GB
    for place in [c for c in dict.fromkeys(((country or "").upper(), main, region)) if c]:
        place_zones = [_canonical_zone(z) for z in territory.get(place, [])]
        if zones:
            # the number allows several zones: take the country's own where they agree
            agreed = [z for z in place_zones if z in zones]
            if place in _PRIMARY_ZONE and _PRIMARY_ZONE[place] in zones:
                return _PRIMARY_ZONE[place]
            if agreed:
                return agreed[0]
            continue
        if len(place_zones) == 1:
            return place_zones[0]
        if place in _PRIMARY_ZONE:
            return _PRIMARY_ZONE[place]
    return zones[0] if zones else default
