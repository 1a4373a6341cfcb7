"""Attention records: the workflow raised or cleared NeedsAttention, the store keeps the history
(since when, why, who resolved it) that the agents' queue joins with Temporal visibility.

Idempotent under retries and replays: a raise is unique per (shipment, reason, at) and a reason
already open stays open with its first `raised_at`; a clear closes only what was open at `at`
(store/agents.py). Bad input is a non-retryable failure: retrying cannot fix it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from store import agents as store
from workflows.messages import ATTENTION_REASONS, RECORD_ATTENTION, RecordAttentionInput

INVALID_ATTENTION_INPUT = "InvalidAttentionInput"


class AttentionActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=RECORD_ATTENTION)
    def record_attention(self, inp: RecordAttentionInput) -> bool:
        """Returns True when this call changed the store (a new record, or records closed)."""
        at = _parse_time(inp.at)
        if inp.raised and not inp.reason:
            raise ApplicationError(
                "raising attention needs a reason", type=INVALID_ATTENTION_INPUT, non_retryable=True
            )
        if len(inp.reason) > 48:
            raise ApplicationError(
                f"attention reason longer than 48 characters: {inp.reason[:60]!r}",
                type=INVALID_ATTENTION_INPUT,
                non_retryable=True,
            )
        if inp.reason and inp.reason not in ATTENTION_REASONS:
            # Kept anyway (the workflow is the authority); the queue's reason filter will not offer it.
            activity.logger.warning(
                "attention reason %r is not in workflows.messages.ATTENTION_REASONS", inp.reason
            )
        with Session(self.engine, expire_on_commit=False) as session:
            if inp.raised:
                _, created = store.raise_attention(
                    session, shipment_id=inp.shipment_id, reason=inp.reason, raised_at=at, detail=inp.detail
                )
                return created
            closed = store.clear_attention(
                session,
                shipment_id=inp.shipment_id,
                cleared_at=at,
                cleared_by=inp.by or "workflow",
                reason=inp.reason or None,
            )
            return bool(closed)


def _parse_time(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ApplicationError(
            f"`at` is not an ISO-8601 time: {value!r}", type=INVALID_ATTENTION_INPUT, non_retryable=True
        ) from None
    if at.tzinfo is None:
        raise ApplicationError(
            f"`at` needs a UTC offset: {value!r}", type=INVALID_ATTENTION_INPUT, non_retryable=True
        )
    return at
