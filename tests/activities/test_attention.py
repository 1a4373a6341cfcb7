"""record_attention in Temporal's activity environment: raises and clears mirrored into the
store, idempotent under retries, bad input a non-retryable failure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.attention import INVALID_ATTENTION_INPUT, AttentionActivities
from store import agents as store
from workflows.messages import RECORD_ATTENTION, RecordAttentionInput


def run(engine: Engine, inp: RecordAttentionInput) -> bool:
    return ActivityEnvironment().run(AttentionActivities(engine).record_attention, inp)


def test_the_activity_is_registered_under_the_contract_name() -> None:
    from temporalio.activity import _Definition

    defn = _Definition.from_callable(AttentionActivities.record_attention)
    assert defn is not None and defn.name == RECORD_ATTENTION == "record_attention"


def test_raise_then_retry_then_clear_then_retry(engine: Engine) -> None:
    raise_ = RecordAttentionInput(
        shipment_id="shp_1",
        reason="carrier_did_not_act",
        raised=True,
        at="2026-11-28T10:00:00+00:00",
        detail="no scan by 2026-11-29 + 1 day",
    )
    assert run(engine, raise_) is True
    assert run(engine, raise_) is False  # retried: nothing new
    with Session(engine) as s:
        [rec] = store.open_attention(s, shipment_id="shp_1")
        assert (rec.reason, rec.raised_at, rec.detail) == (
            "carrier_did_not_act",
            datetime(2026, 11, 28, 10, tzinfo=UTC),
            "no scan by 2026-11-29 + 1 day",
        )

    clear = RecordAttentionInput(
        shipment_id="shp_1",
        reason="carrier_did_not_act",
        raised=False,
        at="2026-11-28T12:30:00Z",
        by="agent:priya#1",
    )
    assert run(engine, clear) is True
    assert run(engine, clear) is False
    with Session(engine) as s:
        [rec] = store.attention_history(s, shipment_id="shp_1")
        assert (rec.cleared_at, rec.cleared_by) == (
            datetime(2026, 11, 28, 12, 30, tzinfo=UTC),
            "agent:priya#1",
        )
        assert store.open_attention(s, shipment_id="shp_1") == []


def test_clear_without_reason_or_by_closes_whatever_is_open_as_workflow(engine: Engine) -> None:
    run(
        engine,
        RecordAttentionInput(
            shipment_id="shp_2", reason="no_tracking_update", raised=True, at="2026-11-28T10:00:00+00:00"
        ),
    )
    assert (
        run(
            engine,
            RecordAttentionInput(
                shipment_id="shp_2", reason="", raised=False, at="2026-11-28T11:00:00+00:00"
            ),
        )
        is True
    )
    with Session(engine) as s:
        [rec] = store.attention_history(s, shipment_id="shp_2")
        assert rec.cleared_by == "workflow"


@pytest.mark.parametrize(
    "inp",
    [
        RecordAttentionInput(shipment_id="shp_3", reason="", raised=True, at="2026-11-28T10:00:00+00:00"),
        RecordAttentionInput(
            shipment_id="shp_3", reason="x" * 49, raised=True, at="2026-11-28T10:00:00+00:00"
        ),
        RecordAttentionInput(shipment_id="shp_3", reason="channels_failed", raised=True, at="yesterday"),
        RecordAttentionInput(
            shipment_id="shp_3", reason="channels_failed", raised=True, at="2026-11-28T10:00:00"
        ),
    ],
)
def test_bad_input_fails_without_retries(engine: Engine, inp: RecordAttentionInput) -> None:
    with pytest.raises(ApplicationError) as err:
        run(engine, inp)
    assert err.value.type == INVALID_ATTENTION_INPUT and err.value.non_retryable
    with Session(engine) as s:
        assert store.attention_history(s, shipment_id="shp_3") == []
