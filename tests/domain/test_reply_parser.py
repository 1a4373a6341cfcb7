"""Table tests for the reply parser: realistic replies in English, Hindi (Devanagari and Hinglish)
and Korean, including the traps (STOP is an opt-out, "kal" in a dispute is yesterday, a negated
cancellation is not a cancellation, a bare number after "pick a date" is a day of the month)."""

from __future__ import annotations

import socket
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.reply_parser import KINDS, _Parse, parse_reply
from domain.taxonomy import NdrAction, NdrReason, allowed_customer_actions

IST = "Asia/Kolkata"
KST = "Asia/Seoul"
# Thursday 26 Nov 2026, 14:00 in India. Window: Fri 27 Nov .. Wed 2 Dec.
NOW_IN = datetime(2026, 11, 26, 14, 0, tzinfo=ZoneInfo(IST))
# Thursday 26 Nov 2026 14:00 in Seoul.
NOW_KR = datetime(2026, 11, 26, 14, 0, tzinfo=ZoneInfo(KST))

UNAV = NdrReason.customer_unavailable

# (text, expected kind, expected action, expected date, extra expectations)
ENGLISH = [
    ("1", "choice", "reattempt", None, {"option": 1}),
    ("2", "choice", "reschedule", None, {"option": 2}),
    ("3", "choice", "update_address", None, {"option": 3}),
    ("4", "rto", "rto", None, {"option": 4}),
    ("Option 2", "choice", "reschedule", None, {"option": 2}),
    ("1.", "choice", "reattempt", None, {}),
    ("１", "choice", "reattempt", None, {}),  # full-width digit from a phone keyboard
    ("1 deliver tomorrow", "choice", "reattempt", None, {"option": 1}),
    ("tomorrow", "date", "reschedule", "2026-11-27", {}),
    ("Tmrw pls", "date", "reschedule", "2026-11-27", {}),
    ("deliver on Saturday after 5pm", "date", "reschedule", "2026-11-28", {"time_hint": "after 17:00"}),
    ("Saturday", "date", "reschedule", "2026-11-28", {}),
    ("next monday", "date", "reschedule", "2026-11-30", {}),
    ("day after tomorrow in the evening", "date", "reschedule", "2026-11-28", {"time_hint": "evening"}),
    ("in 3 days", "date", "reschedule", "2026-11-29", {}),
    ("30 nov", "date", "reschedule", "2026-11-30", {}),
    ("Please deliver on 1st December", "date", "reschedule", "2026-12-01", {}),
    ("30/11", "date", "reschedule", "2026-11-30", {}),
    ("not tomorrow, saturday is better", "date", "reschedule", "2026-11-28", {}),
    ("I'm not available tomorrow. Sunday works", "date", "reschedule", "2026-11-29", {}),
    ("today please", "choice", "reattempt", None, {}),
    ("call 9876543210", "phone", "update_phone", None, {"phone": "+919876543210"}),
    ("my number is +91 98765 43210", "phone", "update_phone", None, {"phone": "+919876543210"}),
    (
        "my address is 12 MG Road, 2nd Cross, Indiranagar, Bengaluru 560038",
        "address", "update_address", None, {"address": "12 MG Road, 2nd Cross, Indiranagar, Bengaluru 560038"},
    ),
    (
        "New address: Flat 4B, Lake View Apts, landmark: opp SBI ATM, call 9812345678",
        "address", "update_address", None,
        {"address": "Flat 4B, Lake View Apts, landmark: opp SBI ATM", "landmark": "opp SBI ATM", "phone": "+919812345678"},
    ),
    ("I want to change my address", "choice", "update_address", None, {"option": 3}),
    ("I was home, nobody came", "dispute", "reattempt", None, {}),
    ("I was at home the whole day and no one called me. Deliver tomorrow", "dispute", "reschedule", "2026-11-27", {}),
    ("cancel order", "rto", "rto", None, {"confidence": 0.85}),
    ("please cancel", "rto", "rto", None, {}),
    ("return it", "rto", "rto", None, {}),
    ("I don't want it anymore", "rto", "rto", None, {}),
    ("STOP", "opt_out", None, None, {"keyword": "STOP"}),
    ("Stop.", "opt_out", None, None, {"keyword": "STOP"}),
    ("unsubscribe", "opt_out", None, None, {"keyword": "UNSUBSCRIBE"}),
    ("stop sending me messages", "opt_out", None, None, {}),
    ("START", "opt_in", None, None, {"keyword": "START"}),
    ("hello?", "unclear", None, None, {}),
    ("what is this", "unclear", None, None, {}),
    ("K7QM", "case_ref", None, None, {"case_ref": "K7QM"}),
]

HINDI = [
    ("kal", "date", "reschedule", "2026-11-27", {}),
    ("कल", "date", "reschedule", "2026-11-27", {}),
    ("कल शाम को भेज दो", "date", "reschedule", "2026-11-27", {"time_hint": "evening"}),
    ("परसों", "date", "reschedule", "2026-11-28", {}),
    ("parso aana", "date", "reschedule", "2026-11-28", {}),
    ("shanivar ko bhejna", "date", "reschedule", "2026-11-28", {}),
    ("शनिवार 5 बजे के बाद", "date", "reschedule", "2026-11-28", {"time_hint": "after 17:00"}),
    ("2 din baad", "date", "reschedule", "2026-11-28", {}),
    ("30 नवंबर", "date", "reschedule", "2026-11-30", {}),
    ("kal nahi, parso", "date", "reschedule", "2026-11-28", {}),
    ("aaj hi bhej do", "choice", "reattempt", None, {}),
    ("dubara bhejo", "choice", "reattempt", None, {}),
    ("mera number 9123456780 hai", "phone", "update_phone", None, {"phone": "+919123456780"}),
    ("मेरा पता 45 गांधी नगर, जयपुर 302015 है", "address", "update_address", None, {"address": "45 गांधी नगर, जयपुर 302015"}),
    ("mera address: B-12 Lajpat Nagar, Delhi", "address", "update_address", None, {"address": "B-12 Lajpat Nagar, Delhi"}),
    ("main ghar pe tha koi nahi aaya", "dispute", "reattempt", None, {}),
    ("मैं घर पर था, कोई नहीं आया", "dispute", "reattempt", None, {}),
    ("नहीं चाहिए", "rto", "rto", None, {}),
    ("order cancel kar do", "rto", "rto", None, {}),
    ("wapas bhej do", "rto", "rto", None, {}),
    ("message mat bhejo", "opt_out", None, None, {}),
]

KOREAN = [
    ("내일", "date", "reschedule", "2026-11-27", {}),
    ("내일 오후", "date", "reschedule", "2026-11-27", {"time_hint": "afternoon"}),
    ("내일 오후 3시 이후에 와주세요", "date", "reschedule", "2026-11-27", {"time_hint": "after 15:00"}),
    ("모레", "date", "reschedule", "2026-11-28", {}),
    ("토요일에 배달해 주세요", "date", "reschedule", "2026-11-28", {}),
    ("다음주 월요일", "date", "reschedule", "2026-11-30", {}),
    ("12월 1일 오전", "date", "reschedule", "2026-12-01", {"time_hint": "morning"}),
    ("3일 후", "date", "reschedule", "2026-11-29", {}),
    ("2번", "choice", "reschedule", None, {"option": 2}),
    ("반품", "rto", "rto", None, {}),
    ("반품해 주세요", "rto", "rto", None, {}),
    ("주문 취소할게요", "rto", "rto", None, {}),
    ("필요 없어요", "rto", "rto", None, {}),
    ("전화번호 010-1234-5678로 연락주세요", "phone", "update_phone", None, {"phone": "+821012345678"}),
    ("주소는 서울시 강남구 테헤란로 123, 4층입니다", "address", "update_address", None, {"address": "서울시 강남구 테헤란로 123, 4층"}),
    ("집에 있었는데 아무도 안 왔어요", "dispute", "reattempt", None, {}),
    ("내일은 안 돼요. 모레 오세요", "date", "reschedule", "2026-11-28", {}),
]

TRAPS = [
    # Bare CANCEL is a Twilio opt-out keyword on SMS/WhatsApp: Twilio has already blocked us, so
    # it is an opt-out, never a return-to-origin.
    ("CANCEL", "opt_out", None, None, {"keyword": "CANCEL"}),
    ("cancel!", "opt_out", None, None, {"keyword": "CANCEL"}),
    ("END", "opt_out", None, None, {"keyword": "END"}),
    # Negated cancellations keep the parcel.
    ("don't cancel", "choice", "reattempt", None, {}),
    ("please do not cancel, I will be home", "choice", "reattempt", None, {}),
    ("cancel mat karo", "choice", "reattempt", None, {}),
    ("취소하지 마세요 내일 다시 배송해주세요", "date", "reschedule", "2026-11-27", {}),
    ("반품 안 할게요 받을게요", "choice", "reattempt", None, {}),
    # A date and a "don't want" together: the non-destructive reading (reschedule).
    ("aaj nahi chahiye, kal bhejo", "date", "reschedule", "2026-11-27", {}),
    ("aaj mat bhejo", "unclear", None, None, {}),  # "not today" is not "never"
    # "kal" describing the failed attempt is yesterday: not a requested date.
    ("main kal pura din ghar pe tha, koi nahi aaya", "dispute", "reattempt", None, {}),
    ("I was home yesterday, nobody came", "dispute", "reattempt", None, {}),
    # "pata nahi" = "don't know", not an address ("pata" = address).
    ("pata nahi kab aayega", "unclear", None, None, {}),
    ("my address is correct", "choice", "reattempt", None, {}),
    ("deliver to me tomorrow", "date", "reschedule", "2026-11-27", {}),
    # Out of the window: kept as a date, with the problem stated.
    ("yesterday", "date", "reschedule", "2026-11-25", {"problem_code": "date_in_past"}),
    ("15 dec", "date", "reschedule", "2026-12-15", {"problem_code": "date_too_far"}),
    ("next thursday", "date", "reschedule", "2026-12-03", {"problem_code": "date_too_far"}),
    ("after 5pm", "unclear", None, None, {"time_hint": "after 17:00"}),  # when, but no day
    # "sun" is Hinglish for "listen", not Sunday.
    ("bhai sun lo", "unclear", None, None, {}),
    ("flat 5 ke paas", "unclear", None, None, {}),
    # "available" alone is not a wish for delivery; "not available" even less.
    ("I am not available this week", "unclear", None, None, {}),
    ("I'm available", "choice", "reattempt", None, {}),
    ("don't deliver", "rto", "rto", None, {"confidence": 0.7}),  # softer than "cancel order"
    ("don't deliver today, deliver tomorrow", "date", "reschedule", "2026-11-27", {}),
]


def _run(text: str, reason=UNAV, *, now=NOW_IN, tz=IST, locale="en-IN", **kw):  # type: ignore[no-untyped-def]
    return parse_reply(text, reason=reason, allowed_actions=allowed_customer_actions(reason), now=now, tz=tz, locale=locale, **kw)


def _check(r, kind, action, day, extra):  # type: ignore[no-untyped-def]
    assert r.kind == kind, r
    assert (r.action.value if r.action else None) == action, r
    assert r.requested_date == day, r
    for k, v in extra.items():
        assert getattr(r, k) == v, (k, r)
    if "problem_code" not in extra:
        assert r.problem is None, r


@pytest.mark.parametrize(("text", "kind", "action", "day", "extra"), ENGLISH)
def test_english(text, kind, action, day, extra):  # type: ignore[no-untyped-def]
    _check(_run(text, locale="en-IN"), kind, action, day, extra)


@pytest.mark.parametrize(("text", "kind", "action", "day", "extra"), HINDI)
def test_hindi(text, kind, action, day, extra):  # type: ignore[no-untyped-def]
    _check(_run(text, locale="hi-IN"), kind, action, day, extra)


@pytest.mark.parametrize(("text", "kind", "action", "day", "extra"), KOREAN)
def test_korean(text, kind, action, day, extra):  # type: ignore[no-untyped-def]
    _check(_run(text, now=NOW_KR, tz=KST, locale="ko-KR"), kind, action, day, extra)


@pytest.mark.parametrize(("text", "kind", "action", "day", "extra"), TRAPS)
def test_traps(text, kind, action, day, extra):  # type: ignore[no-untyped-def]
    _check(_run(text), kind, action, day, extra)


def test_at_least_sixty_realistic_replies():
    assert len(ENGLISH) + len(HINDI) + len(KOREAN) + len(TRAPS) >= 60


# ---- context ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "day", "problem"),
    [
        ("Saturday", "2026-11-28", None),
        ("30", "2026-11-30", None),
        ("1", "2026-12-01", None),  # the 1st, not "1 deliver tomorrow"
        ("4", "2026-12-04", "date_too_far"),  # the 4th: never "4 cancel"
        ("29th", "2026-11-29", None),
        ("शनिवार को", "2026-11-28", None),
        ("agle somvar", "2026-11-30", None),
    ],
)
def test_after_pick_a_date_a_number_is_a_day_of_the_month(text, day, problem):  # type: ignore[no-untyped-def]
    r = _run(text, context_state="awaiting_date")
    assert (r.kind, r.action, r.requested_date, r.problem_code) == ("date", NdrAction.reschedule, day, problem)


def test_the_two_step_pick_a_date_conversation():
    first = _run("2", context_state="asking")
    assert (first.kind, first.action) == ("choice", NdrAction.reschedule)
    second = _run("Saturday", context_state="awaiting_date")
    assert (second.kind, second.requested_date) == ("date", "2026-11-28")


def test_free_text_after_change_address_is_the_address():
    r = _run("House 45, Sector 12, near Shiv mandir, Noida", NdrReason.address_issue, context_state="awaiting_details")
    assert (r.kind, r.action, r.address) == ("address", NdrAction.update_address, "House 45, Sector 12, near Shiv mandir, Noida")
    # Without the context the same words are not taken for an address (no PIN code, no marker).
    assert _run("near Shiv mandir", NdrReason.address_issue).kind == "unclear"


# ---- channel, reason and window -------------------------------------------------------


def test_bare_cancel_by_email_or_web_is_a_return_not_an_opt_out():
    assert _run("cancel", channel="email").kind == "rto"
    assert _run("Cancel", channel="web").action == NdrAction.rto
    assert _run("cancel", channel="whatsapp").kind == "opt_out"
    assert _run("STOP", channel="email").kind == "opt_out"


def test_actions_the_reason_does_not_allow_are_flagged():
    # payment_issue offers reschedule, reattempt and rto only.
    r = _run("call 9876543210", NdrReason.payment_issue)
    assert (r.kind, r.action, r.problem_code) == ("phone", NdrAction.update_phone, "action_not_allowed")
    assert _run("3", NdrReason.payment_issue).problem_code == "action_not_allowed"
    assert _run("kal", NdrReason.payment_issue).ok


def test_dispute_on_a_non_actionable_reason_carries_no_action():
    r = _run("nobody came, I was home", NdrReason.not_attempted)
    assert (r.kind, r.action) == ("dispute", None)


def test_yes_confirms_only_where_the_question_was_a_confirmation():
    assert _run("haan", NdrReason.customer_refused).action == NdrAction.reattempt
    assert _run("haan", UNAV).kind == "unclear"
    # On SMS "YES" is Twilio's opt-in keyword whatever the reason.
    assert _run("YES", NdrReason.customer_refused).kind == "opt_in"


def test_max_days_is_the_carriers_window():
    assert _run("1 dec").problem is None
    r = _run("1 dec", max_days=3)
    assert r.problem_code == "date_too_far" and "at most 3 days ahead" in (r.problem or "")


def test_dates_resolve_in_the_customers_time_zone():
    # 16:00 UTC on 26 Nov is already 01:00 on 27 Nov in Seoul: "내일" is the 28th there.
    now = datetime(2026, 11, 26, 16, 0, tzinfo=ZoneInfo("UTC"))
    assert _run("내일", now=now, tz=KST, locale="ko-KR").requested_date == "2026-11-28"
    assert _run("tomorrow", now=now, tz=IST).requested_date == "2026-11-27"  # 21:30 in India


def test_weekday_that_is_today_means_next_week():
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=ZoneInfo(IST))
    r = _run("Saturday", now=saturday)
    assert (r.requested_date, r.problem_code) == ("2026-12-05", "date_too_far")


def test_a_date_without_a_year_rolls_into_next_year():
    now = datetime(2026, 12, 30, 12, 0, tzinfo=ZoneInfo(IST))
    r = _run("2 jan", now=now)
    assert (r.requested_date, r.problem) == ("2027-01-02", None)


def test_us_date_order_for_en_us():
    now = datetime(2026, 11, 26, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    assert _run("11/30", now=now, tz="America/New_York", locale="en-US").requested_date == "2026-11-30"


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        parse_reply("1", reason=UNAV, allowed_actions=(), now=datetime(2026, 11, 26), tz=IST, locale="en")


def test_dateparser_makes_no_network_calls(monkeypatch: pytest.MonkeyPatch):
    def refuse(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("the reply parser tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert _run("30 nov").requested_date == "2026-11-30"
    assert _run("12월 1일", now=NOW_KR, tz=KST, locale="ko-KR").requested_date == "2026-12-01"


# ---- robustness ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=300),
    reason=st.sampled_from(list(NdrReason)),
    ctx=st.sampled_from([None, "asking", "awaiting_date", "awaiting_details", "decided"]),
    channel=st.sampled_from(["sms", "whatsapp", "email", "web"]),
)
def test_no_input_crashes_the_parser(text, reason, ctx, channel):  # type: ignore[no-untyped-def]
    r = _run(text, reason, context_state=ctx, channel=channel)
    assert r.kind in KINDS
    assert 0.0 <= r.confidence <= 1.0
    if r.action is not None and r.problem_code != "action_not_allowed":
        assert r.action in allowed_customer_actions(reason)


_PIECES = ["kal", "कल", "내일", "2", "4", "cancel", "stop", "nahi", "मत", "안", "saturday", "30/11", "12월", "1일",
           "9876543210", "my address is", "after 5pm", "ghar pe tha", "0", "99", "31/02", "2026-02-30", "+", "\u200d",
           "99:99", "25 baje", "landmark:", "31st", "feb 30", "in 99 days", "०९८७६", "İ"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=8).map(" ".join))
def test_no_mix_of_meaningful_pieces_crashes_the_parser(text):  # type: ignore[no-untyped-def]
    # The inner path, without run()'s last-resort guard: the guard must not be what keeps it alive.
    _Parse(text, "customer_unavailable", allowed_customer_actions(UNAV), NOW_IN, IST, "en-IN", 6, None, "sms", None)._run()
    r = _run(text, context_state="awaiting_date")
    assert r.kind in KINDS
    if r.requested_date:
        datetime.strptime(r.requested_date, "%Y-%m-%d")
