"""Inbound message -> open case -> parsed reply -> Update, on both databases, with a fake Temporal
that runs the real validator and state machine."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from api.reply_routing import (
    AskWhichCase,
    InboundMessage,
    NoOpenCase,
    RouteDecision,
    handle_inbound,
    reply_input_from_parsed,
    route_inbound,
    strip_quoted_email,
)
from domain.reply_parser import parse_reply
from domain.taxonomy import allowed_customer_actions
from store import ndr as S
from tests.api.ndr_fakes import FakeTemporal
from workflows.ids import shipment_workflow_id

PHONE = "+919876543210"
EMAIL = "asha@example.com"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=ZoneInfo("Asia/Kolkata"))  # Thursday
DOMAIN = "in.example.com"


def sms(body: str, sid: str = "SM1", sender: str = PHONE, channel: str = "sms") -> InboundMessage:
    return InboundMessage(channel=channel, from_address=sender, body=body, provider_message_id=sid)


def test_one_open_case_takes_the_message(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        r = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        got = route_inbound(s, sms("2"))
        assert got == RouteDecision("shp_a", 1, "2", r.ref, "only_case")
        # WhatsApp senders arrive as "whatsapp:+91...".
        assert route_inbound(s, sms("2", channel="whatsapp", sender="whatsapp:" + PHONE)).shipment_id == "shp_a"


def test_no_open_case(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        assert route_inbound(s, sms("2")) == NoOpenCase()
        S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        S.close_route(s, shipment_id="shp_a")
        assert route_inbound(s, sms("2")) == NoOpenCase()


def test_two_open_cases_ask_which_unless_the_code_is_given(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        a = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        b = S.open_route(s, shipment_id="shp_b", attempt=1, phone=PHONE)
        assert route_inbound(s, sms("2")) == AskWhichCase([a.ref, b.ref], "2")
        assert route_inbound(s, sms(f"{b.ref} 2")) == RouteDecision("shp_b", 1, "2", b.ref, "ref")
        assert route_inbound(s, sms(f"saturday ref {a.ref.lower()}")) == RouteDecision("shp_a", 1, "saturday", a.ref, "ref")


def test_email_reply_to_names_the_case_and_quoted_history_is_dropped(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        r = S.open_route(s, shipment_id="shp_a", attempt=1, email=EMAIL)
        S.open_route(s, shipment_id="shp_b", attempt=1, email=EMAIL)  # a second open case: no question needed
        body = "Saturday please\r\n\r\nOn Thu, 26 Nov 2026 at 15:00, Acme <r+x@in.example.com> wrote:\r\n> 1 deliver tomorrow\r\n> 4 cancel"
        msg = InboundMessage("email", "Asha <ASHA@example.com>", body, "<m1@mail>",
                             to_address=f"support@acme.com, Acme <r+{r.reply_key}@{DOMAIN}>")
        assert route_inbound(s, msg, inbound_domain=DOMAIN) == RouteDecision("shp_a", 1, "Saturday please", r.ref, "reply_to")
        S.close_route(s, shipment_id="shp_a")
        assert route_inbound(s, msg, inbound_domain=DOMAIN) == NoOpenCase("case_closed", "shp_a", 1)
        # Without a reply-to key the sender's address finds the (now only) open case.
        plain = InboundMessage("email", EMAIL, "kal", "<m2@mail>", to_address="support@acme.com")
        assert route_inbound(s, plain, inbound_domain=DOMAIN).shipment_id == "shp_b"


def test_a_verified_token_names_the_case(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        r = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        msg = InboundMessage("web", "", "2026-11-28", "web-1", case=("shp_a", 1))
        assert route_inbound(s, msg) == RouteDecision("shp_a", 1, "2026-11-28", r.ref, "token")
        assert route_inbound(s, InboundMessage("web", "", "x", "web-2", case=("shp_zz", 1))).reason == "case_closed"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("kal\n\nSent from my iPhone", "kal"),
        ("मेरा पता 12 MG Road\n-- \nAsha", "मेरा पता 12 MG Road"),
        ("토요일\n\n2026년 11월 26일 (목) 오후 3:00, Acme 님이 작성:\n> 1", "토요일"),
        ("> quoted only", ""),
    ],
)
def test_strip_quoted_email(body, expected):  # type: ignore[no-untyped-def]
    assert strip_quoted_email(body) == expected


def test_not_allowed_actions_are_sent_without_an_action():
    parsed = parse_reply("call 9876543210", reason="payment_issue", allowed_actions=allowed_customer_actions("payment_issue"),
                         now=NOW, tz="Asia/Kolkata", locale="en-IN")
    inp = reply_input_from_parsed(parsed, attempt=1, channel="sms", received_at=NOW, text="call 9876543210", message_id="SM9")
    assert (inp.kind, inp.action, inp.phone, inp.problem_code) == ("phone", None, "+919876543210", "action_not_allowed")
    assert inp.received_at == "2026-11-26T09:30:00+00:00"


# ---- the whole path -----------------------------------------------------------------------------


async def test_sms_two_then_saturday_decides_a_reschedule(engine):  # type: ignore[no-untyped-def]
    temporal = FakeTemporal()
    wf = temporal.add_shipment("shp_a", now=NOW)
    with Session(engine) as s:
        S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)

    first = await handle_inbound(temporal=temporal, engine=engine, msg=sms("2", "SM1"), now=NOW)
    assert (first.outcome, first.result.outcome, first.result.notify) == ("routed", "awaiting_date", "ndr_ask_date")
    second = await handle_inbound(temporal=temporal, engine=engine, msg=sms("Saturday", "SM2"), now=NOW)
    assert (second.result.outcome, second.result.action, second.result.requested_date) == ("decided", "reschedule", "2026-11-28")
    assert temporal.handles_asked == [shipment_workflow_id("shp_a")] * 2
    names = [(n, u.kind, u.message_id) for n, u in wf.updates]
    assert names == [("customer_reply", "choice", "SM1"), ("customer_reply", "date", "SM2")]
    assert temporal.case("shp_a")["state"] == "decided"
    with Session(engine) as s:
        rows = s.exec(select(S.InboundReply).order_by(S.InboundReply.id)).all()
        assert [(r.outcome, r.shipment_id, r.attempt) for r in rows] == [("routed", "shp_a", 1)] * 2


async def test_a_retried_webhook_is_delivered_once(engine):  # type: ignore[no-untyped-def]
    temporal = FakeTemporal()
    wf = temporal.add_shipment("shp_a", now=NOW)
    with Session(engine) as s:
        S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
    await handle_inbound(temporal=temporal, engine=engine, msg=sms("1", "SMdup"), now=NOW)
    again = await handle_inbound(temporal=temporal, engine=engine, msg=sms("1", "SMdup"), now=NOW)
    assert again.outcome == "duplicate"
    assert len(wf.updates) == 1


async def test_ask_which_then_a_bare_code_applies_the_earlier_message(engine):  # type: ignore[no-untyped-def]
    temporal = FakeTemporal()
    temporal.add_shipment("shp_a", now=NOW)
    wf_b = temporal.add_shipment("shp_b", now=NOW)
    with Session(engine) as s:
        a = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        b = S.open_route(s, shipment_id="shp_b", attempt=1, phone=PHONE)
    asked = await handle_inbound(temporal=temporal, engine=engine, msg=sms("kal", "SM1"), now=NOW)
    assert (asked.outcome, asked.refs, asked.answer_purpose) == ("ask_which", [a.ref, b.ref], "ndr_which_case")
    assert temporal.handles_asked == []
    got = await handle_inbound(temporal=temporal, engine=engine, msg=sms(b.ref, "SM2"), now=NOW)
    assert (got.shipment_id, got.result.outcome, got.result.requested_date) == ("shp_b", "decided", "2026-11-27")
    assert wf_b.updates[0][1].text == "kal"


async def test_a_bare_code_without_an_earlier_question_asks_again(engine):  # type: ignore[no-untyped-def]
    temporal = FakeTemporal()
    wf = temporal.add_shipment("shp_a", now=NOW)
    with Session(engine) as s:
        r = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
    got = await handle_inbound(temporal=temporal, engine=engine, msg=sms(r.ref, "SM1"), now=NOW)
    assert (got.result.outcome, got.result.notify) == ("asked_again", "ndr_ask")
    assert wf.updates[0][1].kind == "case_ref"


async def test_reply_to_a_case_the_workflow_closed_is_refused(engine):  # type: ignore[no-untyped-def]
    temporal = FakeTemporal()
    wf = temporal.add_shipment("shp_a", now=NOW)
    wf.state.ndr_cases[0]["state"] = "closed"
    with Session(engine) as s:
        S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)  # route not closed yet (race)
    got = await handle_inbound(temporal=temporal, engine=engine, msg=sms("1", "SM1"), now=NOW)
    assert (got.outcome, got.answer_purpose) == ("refused", "ndr_case_closed")
    assert "is closed" in got.detail
    with Session(engine) as s:
        assert s.exec(select(S.InboundReply)).one().outcome == "refused"


async def test_stop_reaches_the_workflow_as_an_opt_out(engine):  # type: ignore[no-untyped-def]
    temporal = FakeTemporal()
    temporal.add_shipment("shp_a", now=NOW)
    with Session(engine) as s:
        S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
    got = await handle_inbound(temporal=temporal, engine=engine, msg=sms("STOP", "SM1"), now=NOW)
    assert (got.parsed.kind, got.result.outcome) == ("opt_out", "opted_out")
    assert temporal.case("shp_a")["state"] == "asking"  # not a cancellation


async def test_temporal_down_marks_the_message_failed_so_a_retry_reprocesses(engine):  # type: ignore[no-untyped-def]
    from temporalio.service import RPCError

    temporal = FakeTemporal()  # no workflow registered: the query fails with NOT_FOUND
    with Session(engine) as s:
        S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
    with pytest.raises(RPCError):
        await handle_inbound(temporal=temporal, engine=engine, msg=sms("1", "SM1"), now=NOW)
    temporal.add_shipment("shp_a", now=NOW)
    got = await handle_inbound(temporal=temporal, engine=engine, msg=sms("1", "SM1"), now=NOW)
    assert (got.outcome, got.result.outcome) == ("routed", "decided")
