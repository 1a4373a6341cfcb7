"""Reply routes and the inbound log, on SQLite and PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from domain.case_ref import is_ref
from store import ndr as S
from store.models import utcnow

PHONE = "+919876543210"
EMAIL = "Asha@Example.com"


def test_open_route_gives_a_short_code_and_a_reply_to_key(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        r = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE, email=EMAIL)
        assert is_ref(r.ref) and r.closed_at is None
        assert r.reply_key == S.reply_key_for("shp_a", 1) and len(r.reply_key) == 16
        assert S.reply_to_address(r.reply_key, "in.example.com") == f"r+{r.reply_key}@in.example.com"
        kinds = sorted(x.kind for x in s.exec(select(S.ReplyRoute)).all())
        assert kinds == ["email", "phone", "reply_to"]


def test_open_route_is_idempotent(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        first = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        again = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE, email=EMAIL)
        assert (again.ref, again.reply_key) == (first.ref, first.reply_key)
        assert len(s.exec(select(S.ReplyRoute)).all()) == 3  # the email was added, nothing doubled


def test_codes_differ_among_one_customers_open_cases(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        refs = {S.open_route(s, shipment_id=f"shp_{i}", attempt=1, phone=PHONE).ref for i in range(12)}
        assert len(refs) == 12
        assert [c.shipment_id for c in S.find_open_cases(s, phone=PHONE)] == [f"shp_{i}" for i in range(12)]


def test_the_database_refuses_a_duplicate_code_for_the_same_customer(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        r = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        s.add(S.ReplyRoute(shipment_id="shp_b", attempt=1, kind="phone", address=PHONE, ref=r.ref))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        # Once the first case closes, the code may be used again.
        S.close_route(s, shipment_id="shp_a", attempt=1)
        s.add(S.ReplyRoute(shipment_id="shp_b", attempt=1, kind="phone", address=PHONE, ref=r.ref))
        s.commit()


def test_a_taken_code_makes_open_route_pick_the_next(engine, monkeypatch):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        a = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        # Simulate the race: our first candidate is the code another open case of the customer holds,
        # and the pre-check missed it.
        monkeypatch.setattr(S, "_free_refs", lambda *_a: [a.ref, "C3DE"])
        b = S.open_route(s, shipment_id="shp_b", attempt=1, phone=PHONE)
        assert b.ref == "C3DE"


def test_a_new_attempt_closes_the_previous_case(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE)
        S.open_route(s, shipment_id="shp_a", attempt=2, phone=PHONE)
        assert [(c.shipment_id, c.attempt) for c in S.find_open_cases(s, phone=PHONE)] == [("shp_a", 2)]


def test_find_by_email_is_case_insensitive_and_resolves_codes(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        a = S.open_route(s, shipment_id="shp_a", attempt=1, email=EMAIL)
        b = S.open_route(s, shipment_id="shp_b", attempt=2, phone=PHONE, email=EMAIL)
        assert [c.shipment_id for c in S.find_open_cases(s, email="asha@example.COM ")] == ["shp_a", "shp_b"]
        assert S.resolve_case_ref(s, ref=b.ref.lower(), email=EMAIL).attempt == 2
        assert S.resolve_case_ref(s, ref=a.ref, phone=PHONE) is None  # shp_a has no phone route
        assert S.resolve_case_ref(s, ref="ZZZZ", email=EMAIL) is None
        assert S.find_open_cases(s) == []


def test_close_route_and_reply_key_lookup(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        r = S.open_route(s, shipment_id="shp_a", attempt=1, phone=PHONE, email=EMAIL)
        found = S.find_by_reply_key(s, r.reply_key.upper())
        assert (found.shipment_id, found.attempt, found.closed_at) == ("shp_a", 1, None)
        assert S.close_route(s, shipment_id="shp_a", attempt=1) == 3
        assert S.close_route(s, shipment_id="shp_a", attempt=1) == 0
        assert S.find_open_cases(s, phone=PHONE) == []
        closed = S.find_by_reply_key(s, r.reply_key)
        assert closed.closed_at is not None  # still found: the customer is told the case is closed
        assert S.case_route(s, shipment_id="shp_a", attempt=1).closed_at is not None
        assert S.find_by_reply_key(s, "nosuchkey") is None


@pytest.mark.parametrize(
    ("address", "domain", "key"),
    [
        ("r+abc123@in.example.com", "in.example.com", "abc123"),
        ("Acme Support <R+ABC123@In.Example.com>", "in.example.com", "abc123"),
        ("r+abc123@elsewhere.com", "in.example.com", None),
        ("support@in.example.com", "in.example.com", None),
        ("r+ab'c@in.example.com", None, None),
        ("r+@in.example.com", None, None),
    ],
)
def test_parse_reply_to(address, domain, key):  # type: ignore[no-untyped-def]
    assert S.parse_reply_to(address, domain) == key


def test_inbound_is_recorded_once_per_provider_message(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        row, created = S.record_inbound(s, channel="sms", provider_message_id="SM1", from_address=PHONE, body="2")
        assert created and row.id is not None and row.outcome == "received"
        again, created2 = S.record_inbound(s, channel="sms", provider_message_id="SM1", from_address=PHONE, body="2")
        assert (created2, again.id) == (False, row.id)
        S.set_inbound_outcome(s, row.id, outcome="routed", shipment_id="shp_a", attempt=1, detail="x" * 900)
        got = s.get(S.InboundReply, row.id)
        s.refresh(got)
        assert (got.outcome, got.shipment_id, got.attempt, len(got.detail)) == ("routed", "shp_a", 1, 500)
        assert s.exec(select(sa.func.count()).select_from(S.InboundReply)).one() == 1
        with pytest.raises(ValueError):
            S.record_inbound(s, channel="sms", provider_message_id="", from_address=PHONE, body="x")


def test_last_inbound_finds_the_senders_earlier_message(engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        first, _ = S.record_inbound(s, channel="sms", provider_message_id="SM1", from_address=PHONE, body="2")
        S.set_inbound_outcome(s, first.id, outcome="ask_which")
        second, _ = S.record_inbound(s, channel="sms", provider_message_id="SM2", from_address=PHONE, body="K7QM")
        S.record_inbound(s, channel="sms", provider_message_id="SM3", from_address="+911111111111", body="x")
        got = S.last_inbound(s, from_address=PHONE, outcome="ask_which", before_id=second.id)
        assert got is not None and got.body == "2"
        assert S.last_inbound(s, from_address=PHONE, outcome="ask_which", since=timedelta(seconds=-1)) is None
        old, _ = S.record_inbound(s, channel="sms", provider_message_id="SM0", from_address="+912222222222", body="1",
                                  received_at=utcnow() - timedelta(days=3))
        assert S.last_inbound(s, from_address="+912222222222") is None
