"""Read-model writes: the workflow pushes each status change to the shipments table so list
endpoints and agents' joins read the store, while single-shipment reads query the workflow."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity

from store.models import Shipment, utcnow
from workflows.messages import SYNC_READ_MODEL, SyncReadModelInput

log = logging.getLogger(__name__)


class ReadModelActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=SYNC_READ_MODEL)
    def sync_read_model(self, inp: SyncReadModelInput) -> None:
        write_read_model(self.engine, inp)


def write_read_model(engine: Engine, inp: SyncReadModelInput) -> None:
    """Also called by the inline notification (activities/notify.py) when a workflow task has
    both to do: one local activity, one history event."""
    # Setting absolute values makes a retried or replayed call harmless.
    with Session(engine) as session:
        row = session.get(Shipment, inp.shipment_id)
        if row is None:  # registration row is written before any workflow exists
            log.warning("read model: no shipment row for %s", inp.shipment_id)
            return
        row.status = inp.status
        row.ndr_state = inp.ndr_state
        row.needs_attention = inp.needs_attention
        row.attention_reason = inp.attention_reason
        row.closed = inp.closed
        if inp.last_event_at:
            row.last_event_at = datetime.fromisoformat(inp.last_event_at.replace("Z", "+00:00"))
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
