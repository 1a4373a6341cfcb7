"""Support agents' tables: the audit log of agent actions and the attention records the workflow
mirrors from its NeedsAttention / AttentionReason flags.

Exactly-once is enforced by constraints, not read-then-write:
- `agent_actions.action_id` is unique: a retried request (same Idempotency-Key) is audited once.
- `attention_records` has at most one open record per shipment (a partial unique index on
  shipment_id where cleared_at is null, on SQLite and PostgreSQL alike), mirroring the single
  AttentionReason a workflow carries; a raise is also unique per (shipment, reason, raised_at), so
  a retried activity finds the row it wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from store.models import utcnow

# agent_actions.status
REQUESTED = "requested"  # audited, Update not answered yet (or the call failed: retry applies it)
ACCEPTED = "accepted"
REJECTED = "rejected"  # the workflow's validator or handler refused it
FINAL_STATUSES = frozenset({ACCEPTED, REJECTED})


class AgentActionRecord(SQLModel, table=True):
    """Who did what to which shipment, when, why, and what the workflow answered."""

    __tablename__ = "agent_actions"

    id: int | None = Field(default=None, primary_key=True)
    action_id: str = Field(unique=True, max_length=100)
    shipment_id: str = Field(index=True, max_length=40)
    agent: str = Field(max_length=160)  # the key's name and id, e.g. "priya#7"
    agent_key_id: int | None = None
    action: str = Field(max_length=32)
    reason: str = Field(default="", max_length=2000)  # why (the note's text for a note)
    # The action's parameters as sent (date, until, purpose, new address or phone). The store is
    # where personal data may live; it never goes to logs.
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="api", max_length=16)  # api | dashboard
    status: str = Field(default=REQUESTED, max_length=16)
    http_status: int | None = None  # what the API answered, so a retry answers the same
    detail: str = Field(default="", max_length=1000)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    requested_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None


class AttentionRecord(SQLModel, table=True):
    """One period during which a shipment needed a person: raised by the workflow, cleared when
    an agent resolved it or its cause went away."""

    __tablename__ = "attention_records"
    __table_args__ = (
        UniqueConstraint("shipment_id", "reason", "raised_at", name="uq_attention_records_raise"),
        Index(
            "uq_attention_records_open",
            "shipment_id",
            unique=True,
            sqlite_where=text("cleared_at IS NULL"),
            postgresql_where=text("cleared_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: str = Field(index=True, max_length=40)
    reason: str = Field(max_length=48)
    raised_at: datetime
    cleared_at: datetime | None = None
    cleared_by: str = Field(default="", max_length=160)
    detail: str = Field(default="", max_length=1000)


# --- agent actions --------------------------------------------------------------------------


def get_action(session: Session, *, action_id: str) -> AgentActionRecord | None:
    return session.exec(select(AgentActionRecord).where(AgentActionRecord.action_id == action_id)).first()


def begin_action(session: Session, *, record: AgentActionRecord) -> tuple[AgentActionRecord, bool]:
    """Audit an action before it is sent. Returns (row, created); for an action_id already
    audited the first row comes back unchanged (the caller compares it with the request)."""
    session.add(record)
    try:
        session.commit()
        session.refresh(record)
        return record, True
    except IntegrityError:
        session.rollback()
    existing = get_action(session, action_id=record.action_id)
    if existing is None:  # the conflict was on something else: surface it
        raise RuntimeError(f"could not audit agent action {record.action_id!r}")
    return existing, False


def finish_action(
    session: Session,
    *,
    action_id: str,
    status: str,
    detail: str = "",
    http_status: int | None = None,
    result: dict[str, Any] | None = None,
) -> AgentActionRecord:
    """Record the workflow's answer. Only a row still `requested` changes, so a late duplicate
    can never overwrite the first answer."""
    session.execute(
        update(AgentActionRecord)
        .where(col(AgentActionRecord.action_id) == action_id, col(AgentActionRecord.status) == REQUESTED)
        .values(
            status=status,
            detail=(detail or "")[:1000],
            http_status=http_status,
            result=result or {},
            completed_at=utcnow(),
        )
    )
    session.commit()
    row = get_action(session, action_id=action_id)
    assert row is not None
    session.refresh(row)
    return row


def actions_for(session: Session, *, shipment_id: str) -> list[AgentActionRecord]:
    stmt = (
        select(AgentActionRecord)
        .where(AgentActionRecord.shipment_id == shipment_id)
        .order_by(col(AgentActionRecord.id))
    )
    return list(session.exec(stmt).all())


# --- attention records ----------------------------------------------------------------------


def open_attention(
    session: Session, *, shipment_id: str | None = None, shipment_ids: Iterable[str] | None = None
) -> list[AttentionRecord]:
    """Open records (cleared_at is null), for one shipment or a set (the queue's join)."""
    stmt = select(AttentionRecord).where(col(AttentionRecord.cleared_at).is_(None))
    if shipment_id is not None:
        stmt = stmt.where(AttentionRecord.shipment_id == shipment_id)
    if shipment_ids is not None:
        ids = list(shipment_ids)
        if not ids:
            return []
        stmt = stmt.where(col(AttentionRecord.shipment_id).in_(ids))
    return list(session.exec(stmt.order_by(col(AttentionRecord.raised_at))).all())


def attention_history(session: Session, *, shipment_id: str) -> list[AttentionRecord]:
    stmt = (
        select(AttentionRecord)
        .where(AttentionRecord.shipment_id == shipment_id)
        .order_by(col(AttentionRecord.raised_at))
    )
    return list(session.exec(stmt).all())


def raise_attention(
    session: Session, *, shipment_id: str, reason: str, raised_at: datetime, detail: str = ""
) -> tuple[AttentionRecord, bool]:
    """Open a record. Returns (record, created).

    - the same reason already open: that record stands (its raised_at is "since"), nothing new;
    - another reason open: it is closed as superseded (a workflow carries one reason at a time);
    - a retry of a raise whose record was cleared since: nothing new (unique raise key).
    """
    for current in open_attention(session, shipment_id=shipment_id):
        if current.reason == reason:
            return current, False
        if current.raised_at <= raised_at:
            _close(session, current, at=raised_at, by=f"superseded:{reason}")
        else:  # a retried older raise arriving after a newer one: the newer one stands
            return current, False
    row = AttentionRecord(
        shipment_id=shipment_id, reason=reason, raised_at=raised_at, detail=(detail or "")[:1000]
    )
    session.add(row)
    try:
        session.commit()
        session.refresh(row)
        return row, True
    except IntegrityError:
        # Either this exact raise was written before (retry), or a concurrent attempt opened one.
        session.rollback()
    same = session.exec(
        select(AttentionRecord).where(
            AttentionRecord.shipment_id == shipment_id,
            AttentionRecord.reason == reason,
            AttentionRecord.raised_at == raised_at,
        )
    ).first()
    if same is not None:
        return same, False
    [current] = open_attention(session, shipment_id=shipment_id)
    return current, False


def clear_attention(
    session: Session,
    *,
    shipment_id: str,
    cleared_at: datetime,
    cleared_by: str = "",
    reason: str | None = None,
) -> list[AttentionRecord]:
    """Close what is open for the shipment (only `reason` when given) and was raised at or before
    `cleared_at`. Returns the records closed now; a retry closes nothing more."""
    closed = []
    for current in open_attention(session, shipment_id=shipment_id):
        if reason and current.reason != reason:
            continue
        if current.raised_at > cleared_at:  # raised again after this clear: stays open
            continue
        if _close(session, current, at=cleared_at, by=cleared_by):
            closed.append(current)
    return closed


def _close(session: Session, row: AttentionRecord, *, at: datetime, by: str) -> bool:
    # Compare-and-set on cleared_at so two concurrent clears close it once.
    res = session.execute(
        update(AttentionRecord)
        .where(col(AttentionRecord.id) == row.id, col(AttentionRecord.cleared_at).is_(None))
        .values(cleared_at=at, cleared_by=(by or "")[:160])
    )
    session.commit()
    session.refresh(row)
    return bool(res.rowcount)  # type: ignore[attr-defined]
