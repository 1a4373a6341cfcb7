"""Properties of the reply parser over what attackers and real phones send, complementing the
crash fuzz in test_reply_parser.py (fixed clock, one zone) with varying clocks, zones, locales,
windows and hostile text:

- it never raises, and answers only with its documented vocabulary;
- a date it accepts without a problem is inside the carrier's window in the customer's calendar
  (tomorrow up to `max_days` ahead), whatever the clock and zone, midnight and DST included;
- a phone number it extracts is a valid E.164 number;
- an action it offers without a problem is one the reason allows;
- it is deterministic, and its work is bounded on huge input.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ndr_options import REPLY_KINDS
from domain.reply_parser import parse_reply
from domain.taxonomy import NdrAction, NdrReason, allowed_customer_actions

ZONES = [
    "Asia/Kolkata",
    "Asia/Seoul",
    "America/New_York",
    "Europe/London",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "UTC",
]
LOCALES = ["en", "en-IN", "en-US", "hi", "hi-IN", "ko", "ko-KR", "xx", ""]
PIECES = [
    "1",
    "2",
    "3",
    "4",
    "5",
    "0",
    "99",
    "tomorrow",
    "kal",
    "parso",
    "कल",
    "परसों",
    "내일",
    "모레",
    "today",
    "aaj",
    "Saturday",
    "shanivar",
    "토요일",
    "30 nov",
    "12월 1일",
    "31/12",
    "2/29",
    "after 5pm",
    "morning",
    "शाम",
    "stop",
    "STOP",
    "cancel",
    "cancel order",
    "don't cancel",
    "mat karo",
    "취소",
    "반품",
    "return",
    "call me on 98765 43210",
    "+91 98765 43210",
    "+1 (415) 555-0100",
    "010-1234-5678",
    "my address is 12 MG Road",
    "landmark near temple",
    "I was home, nobody came",
    "koi nahi aaya",
    "yes",
    "no",
    "haan",
    "네",
    "ref AB12",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "'; DROP TABLE ndr_cases; --",
    "\u202e",
    "\x00",
    "🙏",
]
reply_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(PIECES), max_size=6).map(" ".join),
    st.tuples(st.lists(st.sampled_from(PIECES), max_size=3), st.text(max_size=40)).map(
        lambda t: " ".join(t[0]) + t[1]
    ),
)
# Clocks across years, hours and DST edges: aware datetimes in UTC, seen in the customer's zone.
clocks = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
contexts = st.sampled_from([None, "asking", "awaiting_date", "awaiting_details"])
channels = st.sampled_from(["sms", "whatsapp", "email", "web"])
reasons = st.sampled_from([r for r in NdrReason])


def _parse(
    text: str,
    reason: NdrReason,
    now: datetime,
    tz: str,
    locale: str,
    max_days: int,
    ctx: str | None,
    channel: str,
    allowed=None,
):  # type: ignore[no-untyped-def]
    acts = allowed_customer_actions(reason) if allowed is None else allowed
    return parse_reply(
        text,
        reason=reason,
        allowed_actions=acts,
        now=now,
        tz=tz,
        locale=locale,
        max_days=max_days,
        context_state=ctx,
        channel=channel,
    )


@settings(max_examples=300, deadline=None)
@given(
    reply_text,
    reasons,
    clocks,
    st.sampled_from(ZONES),
    st.sampled_from(LOCALES),
    st.integers(1, 14),
    contexts,
    channels,
)
def test_answers_stay_inside_the_contract(text, reason, now, tz, locale, max_days, ctx, channel) -> None:  # type: ignore[no-untyped-def]
    r = _parse(text, reason, now, tz, locale, max_days, ctx, channel)
    assert r.kind in REPLY_KINDS
    assert 0.0 <= r.confidence <= 1.0
    if r.action is not None:
        assert isinstance(r.action, NdrAction)
        if r.problem is None:
            assert r.action in allowed_customer_actions(reason)
    if r.requested_date is not None:
        d = date.fromisoformat(r.requested_date)
        if r.problem is None:
            today = now.astimezone(ZoneInfo(tz)).date()
            assert today + timedelta(days=1) <= d <= today + timedelta(days=max_days), (text, r)
    if r.phone is not None:
        num = phonenumbers.parse(r.phone)
        assert r.phone.startswith("+") and phonenumbers.is_valid_number(num)
        assert phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164) == r.phone
    if r.keyword is not None:
        assert r.keyword == r.keyword.upper()


@settings(max_examples=100, deadline=None)
@given(reply_text, reasons, clocks, st.sampled_from(ZONES), st.sampled_from(LOCALES), contexts, channels)
def test_deterministic(text, reason, now, tz, locale, ctx, channel) -> None:  # type: ignore[no-untyped-def]
    assert _parse(text, reason, now, tz, locale, 6, ctx, channel) == _parse(
        text, reason, now, tz, locale, 6, ctx, channel
    )


@settings(max_examples=100, deadline=None)
@given(reply_text, clocks, st.sampled_from(ZONES), contexts, channels)
def test_nothing_is_offered_when_nothing_is_allowed(text, now, tz, ctx, channel) -> None:  # type: ignore[no-untyped-def]
    # Non-actionable reasons allow nothing: any action the parser reads comes with a problem.
    r = _parse(text, NdrReason.out_of_delivery_area, now, tz, "en-IN", 6, ctx, channel, allowed=())
    assert r.action is None or r.problem is not None


def test_work_is_bounded_on_huge_input() -> None:
    now = datetime(2026, 11, 26, 8, 30, tzinfo=UTC)
    for text in (
        "kal " * 250_000,
        "9" * 1_000_000,
        ("1 " + "x" * 999) * 1000,
        "\u0928\u0939\u0940\u0902 " * 200_000,
    ):
        started = time.perf_counter()
        r = _parse(text, NdrReason.customer_unavailable, now, "Asia/Kolkata", "hi-IN", 6, None, "sms")
        assert r.kind in REPLY_KINDS
        assert time.perf_counter() - started < 2.0
