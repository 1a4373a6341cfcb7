"""Agent action audit and attention records on SQLite and PostgreSQL: uniqueness by constraint,
one open attention record per shipment, idempotent raises and clears."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from store import agents as store

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def record(action_id: str = "a-1", **kw) -> store.AgentActionRecord:
    base = dict(
        action_id=action_id,
        shipment_id="shp_1",
        agent="priya#1",
        agent_key_id=1,
        action="reattempt",
        reason="customer called",
        params={"x": 1},
    )
    return store.AgentActionRecord(**{**base, **kw})


def test_an_action_id_is_audited_once(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        first, created = store.begin_action(s, record=record())
        assert created and first.status == store.REQUESTED
        again, created_again = store.begin_action(s, record=record(reason="a different reason"))
        assert not created_again and again.id == first.id and again.reason == "customer called"
        assert len(s.exec(select(store.AgentActionRecord)).all()) == 1


def test_finish_records_the_first_answer_only(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        store.begin_action(s, record=record())
        done = store.finish_action(
            s, action_id="a-1", status=store.ACCEPTED, detail="ok", http_status=200, result={"accepted": True}
        )
        assert (done.status, done.http_status, done.result, done.completed_at is not None) == (
            "accepted",
            200,
            {"accepted": True},
            True,
        )
        late = store.finish_action(s, action_id="a-1", status=store.REJECTED, detail="late", http_status=409)
        assert (late.status, late.detail) == ("accepted", "ok")


def test_actions_for_a_shipment_in_order(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        store.begin_action(s, record=record("a-1"))
        store.begin_action(s, record=record("a-2", action="note"))
        store.begin_action(s, record=record("b-1", shipment_id="shp_2"))
        assert [a.action_id for a in store.actions_for(s, shipment_id="shp_1")] == ["a-1", "a-2"]


def test_raise_is_idempotent_and_keeps_the_first_since(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        rec, created = store.raise_attention(
            s, shipment_id="shp_1", reason="carrier_rejected", raised_at=T0, detail="HTTP 400"
        )
        assert created and rec.raised_at == T0 and rec.cleared_at is None
        retry, created = store.raise_attention(
            s, shipment_id="shp_1", reason="carrier_rejected", raised_at=T0, detail="HTTP 400"
        )
        assert not created and retry.id == rec.id
        later, created = store.raise_attention(
            s, shipment_id="shp_1", reason="carrier_rejected", raised_at=T0 + timedelta(hours=1)
        )
        assert not created and later.id == rec.id and later.raised_at == T0
        assert [r.id for r in store.open_attention(s, shipment_id="shp_1")] == [rec.id]


def test_a_new_reason_supersedes_the_open_one(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        old, _ = store.raise_attention(s, shipment_id="shp_1", reason="no_tracking_update", raised_at=T0)
        new, created = store.raise_attention(
            s, shipment_id="shp_1", reason="carrier_did_not_act", raised_at=T0 + timedelta(hours=2)
        )
        assert created
        [open_] = store.open_attention(s, shipment_id="shp_1")
        assert open_.id == new.id
        history = store.attention_history(s, shipment_id="shp_1")
        assert [(h.reason, h.cleared_by) for h in history] == [
            ("no_tracking_update", "superseded:carrier_did_not_act"),
            ("carrier_did_not_act", ""),
        ]
        assert history[0].cleared_at == T0 + timedelta(hours=2)
        # A retried older raise arriving late does not reopen what was superseded.
        stale, created = store.raise_attention(
            s, shipment_id="shp_1", reason="no_tracking_update", raised_at=T0
        )
        assert not created and stale.id == new.id


def test_clear_closes_once_and_only_what_was_raised_before(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        rec, _ = store.raise_attention(s, shipment_id="shp_1", reason="unparsed_replies", raised_at=T0)
        assert (
            store.clear_attention(
                s, shipment_id="shp_1", cleared_at=T0 - timedelta(minutes=1), cleared_by="agent:priya#1"
            )
            == []
        )
        assert (
            store.clear_attention(
                s, shipment_id="shp_1", cleared_at=T0, cleared_by="agent:priya#1", reason="carrier_rejected"
            )
            == []
        )
        [closed] = store.clear_attention(
            s, shipment_id="shp_1", cleared_at=T0 + timedelta(hours=1), cleared_by="agent:priya#1"
        )
        assert (closed.id, closed.cleared_by, closed.cleared_at) == (
            rec.id,
            "agent:priya#1",
            T0 + timedelta(hours=1),
        )
        assert (
            store.clear_attention(
                s, shipment_id="shp_1", cleared_at=T0 + timedelta(hours=1), cleared_by="agent:priya#1"
            )
            == []
        )
        assert store.open_attention(s, shipment_id="shp_1") == []
        # Raised again later: a new period, with its own since.
        again, created = store.raise_attention(
            s, shipment_id="shp_1", reason="unparsed_replies", raised_at=T0 + timedelta(days=1)
        )
        assert created and again.id != rec.id


def test_open_attention_for_a_set_of_shipments(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        for i in range(3):
            store.raise_attention(
                s, shipment_id=f"shp_{i}", reason="channels_failed", raised_at=T0 + timedelta(minutes=i)
            )
        store.clear_attention(s, shipment_id="shp_1", cleared_at=T0 + timedelta(hours=1))
        assert {
            r.shipment_id for r in store.open_attention(s, shipment_ids=["shp_0", "shp_1", "shp_2", "shp_9"])
        } == {"shp_0", "shp_2"}
        assert store.open_attention(s, shipment_ids=[]) == []


def test_the_database_allows_one_open_record_per_shipment(engine: Engine) -> None:
    # The partial unique index, not the code, is what holds under concurrent writers.
    with Session(engine, expire_on_commit=False) as s:
        s.add(store.AttentionRecord(shipment_id="shp_1", reason="a", raised_at=T0))
        s.commit()
        s.add(store.AttentionRecord(shipment_id="shp_1", reason="b", raised_at=T0 + timedelta(seconds=1)))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        # Closed records do not count.
        s.add(
            store.AttentionRecord(
                shipment_id="shp_1",
                reason="c",
                raised_at=T0 - timedelta(days=1),
                cleared_at=T0 - timedelta(hours=1),
            )
        )
        s.commit()
