"""Reply-route activities against the store, on both databases."""

from __future__ import annotations

from sqlmodel import Session
from temporalio.testing import ActivityEnvironment

from activities.ndr_routes import NdrRouteActivities
from store import ndr as S
from store.models import Shipment
from workflows.messages import CloseReplyRouteInput, OpenReplyRouteInput


def _shipment(engine, sid="shp_a", phone="+919876543210", email="asha@example.com"):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        s.add(Shipment(shipment_id=sid, workflow_id="shipment-" + sid, merchant_id="acme", carrier="generic",
                       tracking_number="T" + sid, customer_phone=phone, customer_email=email))
        s.commit()


def test_open_looks_up_contacts_and_is_idempotent(engine):  # type: ignore[no-untyped-def]
    _shipment(engine)
    acts = NdrRouteActivities(engine, inbound_email_domain="in.example.com")
    env = ActivityEnvironment()
    first = env.run(acts.open_reply_route, OpenReplyRouteInput("shp_a", 1))
    again = env.run(acts.open_reply_route, OpenReplyRouteInput("shp_a", 1))
    assert first == again
    assert first.reply_to == f"r+{S.reply_key_for('shp_a', 1)}@in.example.com"
    with Session(engine) as s:
        assert [c.ref for c in S.find_open_cases(s, phone="+919876543210")] == [first.ref]
        assert [c.ref for c in S.find_open_cases(s, email="asha@example.com")] == [first.ref]
    assert env.run(acts.close_reply_route, CloseReplyRouteInput("shp_a", 1)) == 3
    assert env.run(acts.close_reply_route, CloseReplyRouteInput("shp_a")) == 0


def test_without_an_inbound_domain_or_a_shipment_row(engine):  # type: ignore[no-untyped-def]
    acts = NdrRouteActivities(engine)
    got = ActivityEnvironment().run(acts.open_reply_route, OpenReplyRouteInput("shp_unknown", 1))
    assert got.reply_to == "" and len(got.ref) == 4


def test_reply_to_key_cannot_be_derived_without_the_deployment_secret(engine):  # type: ignore[no-untyped-def]
    # Shipment ids hash semi-public facts (merchant, carrier, tracking number): the key must not.
    _shipment(engine)
    acts = NdrRouteActivities(engine, inbound_email_domain="in.example.com", reply_key_secret="s3cret")
    got = ActivityEnvironment().run(acts.open_reply_route, OpenReplyRouteInput("shp_a", 1))
    key = S.parse_reply_to(got.reply_to, "in.example.com")
    assert key == S.reply_key_for("shp_a", 1, "s3cret")
    assert key not in (S.reply_key_for("shp_a", 1), S.reply_key_for("shp_a", 1, "other"))
    with Session(engine) as s:
        assert S.find_by_reply_key(s, key).shipment_id == "shp_a"  # type: ignore[union-attr]
