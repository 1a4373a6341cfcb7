"""Pure notification decisions: what, where, when (workflows/notify_policy.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from workflows import notify_policy as np
from workflows.messages import ShipmentProfile


def profile(**kw) -> ShipmentProfile:
    base = dict(
        shipment_id="shp_1",
        merchant_id="acme",
        carrier="generic",
        tracking_number="T1",
        has_phone=True,
        phone_is_mobile=True,
        has_email=True,
        whatsapp_opt_in=True,
    )
    base.update(kw)
    return ShipmentProfile(**base)


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


# ---- what --------------------------------------------------------------------------------
def test_default_policy_notifies_key_milestones_not_every_scan() -> None:
    pol = np.MerchantPolicy()
    for m in ("picked_up", "out_for_delivery", "delivered", "delivery_failed", "on_hold", "rto_initiated"):
        assert np.purpose_for_milestone(pol, m) == m
    for m in ("in_transit", "created", "unknown", "rto_in_transit", "ndr_ask"):
        assert np.purpose_for_milestone(pol, m) is None


def test_merchant_can_turn_purposes_on_and_off() -> None:
    pol = np.policy_from_dict({"notify": {"in_transit": ["sms"], "picked_up": []}}, "acme")
    assert np.purpose_for_milestone(pol, "in_transit") == "in_transit"
    assert np.purpose_for_milestone(pol, "picked_up") is None
    assert np.purpose_for_milestone(pol, "delivered") == "delivered"  # untouched defaults stay


# ---- where -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, ["whatsapp", "sms", "email"]),
        ({"whatsapp_opt_in": False}, ["sms", "email"]),
        ({"phone_is_mobile": False}, ["email"]),  # landline: never SMS or WhatsApp
        ({"has_phone": False, "phone_is_mobile": False}, ["email"]),
        ({"has_email": False}, ["whatsapp", "sms"]),
        ({"has_email": False, "has_phone": False}, []),
    ],
)
def test_channels_for_honours_contact_facts(facts: dict, expected: list[str]) -> None:
    assert np.channels_for(np.MerchantPolicy(), "out_for_delivery", profile(**facts)) == expected


def test_channels_for_follows_merchant_order_and_exclusions() -> None:
    pol = np.policy_from_dict({"notify": {"delivered": ["email", "sms"]}}, "acme")
    assert np.channels_for(pol, "delivered", profile()) == ["email", "sms"]
    assert np.channels_for(pol, "delivered", profile(), exclude=["email"]) == ["sms"]
    assert np.channels_for(pol, "no_such_purpose", profile()) == []


def test_plan_first_channel_or_fan_out() -> None:
    pol = np.policy_from_dict(
        {"notify": {"delivered": {"channels": ["sms", "email"], "fan_out": True}}}, "acme"
    )
    p = np.plan(pol, "delivered", profile())
    assert p.send_now == ["sms", "email"] and p.fallback is False
    p = np.plan(pol, "picked_up", profile())
    assert p.send_now == ["whatsapp"] and p.order == ["whatsapp", "sms", "email"] and p.fallback is True
    assert np.plan(np.policy_from_dict({"fallback": False}, "x"), "picked_up", profile()).fallback is False


def test_fallback_walks_the_order_once() -> None:
    order = ["whatsapp", "sms", "email"]
    assert np.next_fallback_channel(order, ["whatsapp"]) == "sms"
    assert np.next_fallback_channel(order, ["whatsapp", "sms"]) == "email"
    assert np.next_fallback_channel(order, ["sms", "whatsapp", "email"]) is None
    assert np.next_fallback_channel([], []) is None


@pytest.mark.parametrize("status", ["failed", "skipped", "undelivered", "bounce", "dropped"])
def test_failure_statuses_trigger_fallback(status: str) -> None:
    assert np.is_failure(status)


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "queued", "processed", "deferred"])
def test_other_statuses_do_not(status: str) -> None:
    assert not np.is_failure(status)


# ---- configuration -----------------------------------------------------------------------
def test_policy_book_inherits_default_then_merchant() -> None:
    book = np.policy_book_from_dict(
        {
            "default": {
                "quiet_hours": "22:00-08:00",
                "merchant_name": "Our Shop",
                "notify": {"picked_up": ["sms"]},
            },
            "merchants": {
                "acme": {
                    "merchant_name": "Acme Fashions",
                    "default_region": "kr",
                    "notify": {"delivered": ["email"]},
                }
            },
        }
    )
    acme = book.policy_for("acme")
    assert acme.merchant_name == "Acme Fashions" and acme.default_region == "KR"
    assert acme.quiet_hours == "22:00-08:00"  # from default
    assert acme.rules["picked_up"].channels == ["sms"]  # from default
    assert acme.rules["delivered"].channels == ["email"]
    other = book.policy_for("zeta")
    assert other.merchant_id == "zeta" and other.merchant_name == "Our Shop"
    assert other.rules["delivered"].channels == ["whatsapp", "sms", "email"]


@pytest.mark.parametrize(
    ("conf", "problem"),
    [
        ({"notify": {"delivered": ["pigeon"]}}, "unknown channel.*pigeon"),
        ({"notify": {"teleported": ["sms"]}}, "unknown purpose 'teleported'"),
        ({"notify": {"delivered": ["sms", "sms"]}}, "listed twice"),
        ({"quiet_hours": "9pm-9am"}, "HH:MM-HH:MM"),
        ({"colour": "red"}, "unknown key.*colour"),
    ],
)
def test_bad_configuration_is_named(conf: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        np.policy_from_dict(conf, "acme")


def test_effective_quiet_hours() -> None:
    assert np.effective_quiet_hours(np.MerchantPolicy(), "21:00-09:00") == "21:00-09:00"
    assert np.effective_quiet_hours(np.MerchantPolicy(quiet_hours=""), "21:00-09:00") == ""  # merchant: off
    assert np.effective_quiet_hours(np.MerchantPolicy(quiet_hours="22:00-07:00"), "") == "22:00-07:00"


# ---- when --------------------------------------------------------------------------------
KOLKATA, SEOUL = "Asia/Kolkata", "Asia/Seoul"


@pytest.mark.parametrize(
    ("now_local", "tz", "opens_local"),
    [
        ("2026-11-27T20:59:00", KOLKATA, None),  # just before the window
        ("2026-11-27T21:00:00", KOLKATA, "2026-11-28T09:00:00"),  # window starts
        ("2026-11-27T23:45:00", KOLKATA, "2026-11-28T09:00:00"),  # evening: next morning
        ("2026-11-28T00:10:00", KOLKATA, "2026-11-28T09:00:00"),  # after midnight: same morning
        ("2026-11-28T08:59:59", KOLKATA, "2026-11-28T09:00:00"),
        ("2026-11-28T09:00:00", KOLKATA, None),  # the window has opened
        ("2026-11-28T14:00:00", KOLKATA, None),
        ("2026-11-27T22:30:00", SEOUL, "2026-11-28T09:00:00"),
        ("2026-11-28T03:00:00", SEOUL, "2026-11-28T09:00:00"),
        ("2026-12-31T23:30:00", SEOUL, "2027-01-01T09:00:00"),  # across the year
    ],
)
def test_quiet_hours_deadline(now_local: str, tz: str, opens_local: str | None) -> None:
    now = datetime.fromisoformat(now_local).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    got = np.quiet_hours_deadline(now, tz, "21:00-09:00")
    if opens_local is None:
        assert got is None
    else:
        assert got == datetime.fromisoformat(opens_local).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
        assert got.tzinfo is not None and got > now


def test_same_instant_differs_by_recipient_zone() -> None:
    # 14:00 UTC is 19:30 in Kolkata (fine) and 23:00 in Seoul (quiet).
    now = utc("2026-11-27T14:00:00+00:00")
    assert np.quiet_hours_deadline(now, KOLKATA) is None
    assert np.quiet_hours_deadline(now, SEOUL) == utc("2026-11-28T00:00:00+00:00")  # 09:00 KST


def test_quiet_hours_off_and_daytime_windows() -> None:
    now = utc("2026-11-27T18:00:00+00:00")  # 23:30 in Kolkata
    assert np.quiet_hours_deadline(now, KOLKATA, "") is None
    assert np.quiet_hours_deadline(now, KOLKATA, None) is None
    assert np.quiet_hours_deadline(now, KOLKATA, "00:00-00:00") is None
    lunch = utc("2026-11-27T07:45:00+00:00")  # 13:15 IST
    assert np.quiet_hours_deadline(lunch, KOLKATA, "13:00-14:00") == utc("2026-11-27T08:30:00+00:00")


def test_quiet_hours_across_dst_change() -> None:
    # Europe/London leaves summer time on 2026-10-25: 09:00 GMT that morning is 09:00 UTC.
    now = datetime(2026, 10, 24, 22, 30, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
    assert np.quiet_hours_deadline(now, "Europe/London") == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        np.quiet_hours_deadline(datetime(2026, 11, 27, 23, 0), KOLKATA)


def test_unknown_zone_falls_back_to_utc() -> None:
    now = utc("2026-11-27T23:00:00+00:00")
    assert np.quiet_hours_deadline(now, "Mars/Olympus") == utc("2026-11-28T09:00:00+00:00")


def test_email_is_never_deferred() -> None:
    night = utc("2026-11-27T20:00:00+00:00")  # 01:30 IST
    assert np.send_after(night, "email", KOLKATA) is None
    assert np.send_after(night, "sms", KOLKATA) == utc("2026-11-28T03:30:00+00:00")
    assert np.send_after(night, "whatsapp", KOLKATA) == utc("2026-11-28T03:30:00+00:00")


# ---- after a deferral --------------------------------------------------------------------
def test_delivered_overnight_sends_only_delivered() -> None:
    assert np.after_deferral(["out_for_delivery", "delivered"], "delivered") == ["delivered"]


@pytest.mark.parametrize(
    ("pending", "status", "expected"),
    [
        (["picked_up"], "in_transit", ["picked_up"]),  # silent progress keeps it true
        (["picked_up"], "out_for_delivery", []),  # a newer notified milestone replaced it
        (["picked_up", "out_for_delivery"], "out_for_delivery", ["out_for_delivery"]),
        (["out_for_delivery"], "delivery_failed", []),
        (["delivery_failed"], "out_for_delivery", []),  # reattempt under way
        (["delivery_failed"], "delivery_failed", ["delivery_failed"]),
        (["on_hold", "on_hold"], "on_hold", ["on_hold"]),  # once
        (["out_for_delivery"], "lost", []),  # terminal
        (["rto_initiated"], "rto_in_transit", ["rto_initiated"]),
        (["ndr_ask"], "delivery_failed", ["ndr_ask"]),
        (["ndr_ask", "ndr_reminder"], "delivered", []),  # delivered overnight: no questions
        (["ndr_confirm"], "out_for_delivery", ["ndr_confirm"]),
        (["ndr_confirm"], "delivered", []),
    ],
)
def test_after_deferral(pending: list[str], status: str, expected: list[str]) -> None:
    assert np.after_deferral(pending, status) == expected


def test_still_true_uses_the_merchants_notified_set() -> None:
    # When in_transit is notified too, a deferred picked_up is stale once in transit.
    assert np.still_true("picked_up", "in_transit", notified=[*np.MILESTONE_PURPOSES, "in_transit"]) is False
    assert np.still_true("picked_up", "in_transit") is True


def test_policy_is_plain_data_for_workflow_inputs() -> None:
    # Travels through Temporal's JSON converter: dataclasses of plain types only.
    from temporalio.converter import DataConverter

    pol = np.policy_from_dict({"notify": {"delivered": {"channels": ["sms"], "fan_out": True}}}, "acme")
    conv = DataConverter.default
    payloads = conv.payload_converter.to_payloads([pol])
    back = conv.payload_converter.from_payloads(payloads, [np.MerchantPolicy])[0]
    assert back == pol and isinstance(back.rules["delivered"], np.PurposeRule)


def test_module_stays_pure() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(np.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {
        m
        for m in imported
        if m and m.split(".")[0] in ("temporalio", "sqlalchemy", "sqlmodel", "httpx", "channels", "store")
    }


# ---- the NDR conversation ------------------------------------------------------------------
def test_every_ndr_message_has_a_rule_and_templates() -> None:
    """What the NDR state machine and the API ask to send is a known purpose with a default
    rule, and has templates (the three lists cannot drift apart)."""
    from api import reply_routing
    from templates import NDR_PURPOSES as TEMPLATE_PURPOSES
    from workflows import ndr_policy

    asked = {v for k, v in vars(ndr_policy).items() if k.startswith("NOTIFY_")}
    answered = {reply_routing.NOTIFY_NO_OPEN_CASE, reply_routing.NOTIFY_CASE_CLOSED}
    assert asked | answered == set(np.NDR_PURPOSES)
    assert set(TEMPLATE_PURPOSES) == set(np.NDR_PURPOSES)
    pol = np.MerchantPolicy()
    for purpose in np.NDR_PURPOSES:
        assert np.plan(pol, purpose, profile()).send_now == ["whatsapp"], purpose
        assert np.purpose_for_milestone(pol, purpose) is None  # never a milestone message


def test_ndr_follow_ups_go_where_the_merchant_asks() -> None:
    book = np.policy_book_from_dict(
        {"merchants": {"acme": {"notify": {"ndr_ask": ["sms", "email"], "ndr_confirm": ["email"]}}}}
    )
    pol = book.policy_for("acme")
    assert np.plan(pol, "ndr_ask_date", profile()).order == ["sms", "email"]
    assert np.plan(pol, "ndr_escalated", profile()).order == ["sms", "email"]
    assert np.plan(pol, "ndr_confirm", profile()).order == ["email"]  # configured itself
    assert np.plan(book.policy_for("other"), "ndr_ask_date", profile()).order == ["whatsapp", "sms", "email"]
    # A merchant who sets a follow-up apart in "default" keeps it when it changes only ndr_ask.
    book = np.policy_book_from_dict(
        {
            "default": {"notify": {"ndr_dispute_ack": ["email"]}},
            "merchants": {"acme": {"notify": {"ndr_ask": ["sms"]}}},
        }
    )
    assert np.plan(book.policy_for("acme"), "ndr_dispute_ack", profile()).order == ["email"]
    assert np.plan(book.policy_for("acme"), "ndr_clarify", profile()).order == ["sms"]


def test_a_policy_without_a_rule_for_a_newer_ndr_purpose_follows_ndr_ask() -> None:
    # e.g. a policy snapshot a running workflow took before the purpose existed
    pol = np.MerchantPolicy()
    pol.rules = {k: v for k, v in pol.rules.items() if k not in ("ndr_ask_date", "ndr_already_decided")}
    pol.rules["ndr_ask"] = np.PurposeRule(channels=["sms"])
    assert np.plan(pol, "ndr_ask_date", profile()).send_now == ["sms"]
    assert np.plan(pol, "ndr_already_decided", profile()).order == ["sms"]
    del pol.rules["delivered"]
    assert np.plan(pol, "delivered", profile()).order == []  # milestones do not borrow


@pytest.mark.parametrize(
    ("purpose", "status", "expected"),
    [
        ("ndr_ask_date", "delivery_failed", True),
        ("ndr_ask_details", "delivered", False),
        ("ndr_already_decided", "out_for_delivery", True),
        ("ndr_already_decided", "delivered", False),
        ("ndr_escalated", "delivery_failed", True),
    ],
)
def test_deferred_ndr_messages_still_true(purpose: str, status: str, expected: bool) -> None:
    assert np.still_true(purpose, status) is expected
