"""Phone normalisation, landline detection and time zones (domain/phones.py)."""

from __future__ import annotations

import pytest

from domain import phones


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+91 98765 43210", "IN", "+919876543210"),
        ("098765 43210", "IN", "+919876543210"),  # national trunk prefix
        ("98765-43210", "IN", "+919876543210"),
        ("010-1234-5678", "KR", "+821012345678"),
        ("+82 10 1234 5678", "IN", "+821012345678"),  # explicit country wins over the default
        ("(415) 555-2671", "US", "+14155552671"),
    ],
)
def test_normalize_to_e164(raw: str, region: str, expected: str) -> None:
    assert phones.normalize(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "problem"),
    [
        ("", "IN", "empty"),
        ("hello", "IN", "not a phone number"),
        ("12345", "IN", "too short"),
        ("98765 43210", None, "country code"),
        ("+91 55555 55555", "IN", "not a valid number in IN"),  # no such Indian number range
        ("+91 98765 43210 12345 678", "IN", "too long"),
    ],
)
def test_normalize_names_the_problem(raw: str, region: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        phones.normalize(raw, region)
    # the message goes into API responses and logs: never echo the number
    digits = "".join(c for c in raw if c.isdigit())
    if len(digits) >= 6:
        assert digits not in str(info.value).replace(" ", "")


@pytest.mark.parametrize(
    ("e164", "mobile"),
    [
        ("+919876543210", True),  # Indian mobile
        ("+918022223333", False),  # Bengaluru landline
        ("+821012345678", True),  # Korean mobile
        ("+8223123456", False),  # Seoul landline
        ("+14155552671", True),  # NANP: fixed_line_or_mobile, cannot be ruled out
        ("+18005550199", False),  # toll-free
    ],
)
def test_is_mobile(e164: str, mobile: bool) -> None:
    assert phones.is_mobile(e164) is mobile


def test_number_type_names() -> None:
    assert phones.number_type("+918022223333") == "fixed_line"
    assert phones.number_type("+919876543210") == "mobile"


def test_is_mobile_refuses_non_e164() -> None:
    with pytest.raises(ValueError, match="E.164"):
        phones.is_mobile("9876543210")


@pytest.mark.parametrize(
    ("e164", "country", "tz"),
    [
        ("+919876543210", None, "Asia/Kolkata"),  # canonical name, not phonenumbers' Asia/Calcutta
        ("+821012345678", None, "Asia/Seoul"),
        ("+14155552671", None, "America/Los_Angeles"),  # area code pins the zone
        ("+447911123456", None, "Europe/London"),  # several zones allowed: the country's own
        ("+18005550199", "US", "America/New_York"),  # toll-free spans the country: primary zone
        (None, "KR", "Asia/Seoul"),  # no phone: the address country
        (None, None, "UTC"),
    ],
)
def test_timezone_for(e164: str | None, country: str | None, tz: str) -> None:
    assert phones.timezone_for(e164, country) == tz


def test_region_for() -> None:
    assert phones.region_for("+821012345678") == "KR"


def test_is_valid() -> None:
    assert phones.is_valid("+919876543210")
    assert not phones.is_valid("+91555")
    assert not phones.is_valid("9876543210")
