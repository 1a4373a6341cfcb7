"""Carrier tables: the instruction log (exactly-once via a unique idempotency key) and the count of
carrier codes we could not map (shown to agents so someone extends the code tables).

Everything here behaves the same on SQLite and PostgreSQL: uniqueness is enforced by constraints,
and counters use INSERT .. ON CONFLICT DO UPDATE (both dialects), never read-then-write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from domain.instructions import InstructionResult, SendInstructionInput
from store.models import utcnow

REQUESTED = "requested"
# Outcomes after which the carrier is never called again for the same idempotency key.
ACKNOWLEDGED = frozenset({"accepted", "rejected"})
FINAL = frozenset({"accepted", "rejected", "unsupported", "emailed"})


class CarrierInstruction(SQLModel, table=True):
    __tablename__ = "carrier_instructions"

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, max_length=200)
    shipment_id: str = Field(index=True, max_length=40)
    carrier: str = Field(max_length=32)
    action: str = Field(max_length=32)
    status: str = Field(default=REQUESTED, max_length=16)  # requested|accepted|rejected|unsupported|emailed
    carrier_reference: str | None = Field(default=None, max_length=200)  # e.g. Delhivery UPL id
    # What was asked, without contact details: action, date, attempt, which fields changed.
    request_summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    detail: str = Field(default="", max_length=1000)
    http_status: int | None = None
    attempts: int = 0  # how many times an activity attempt reached the carrier for this key
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    acknowledged_at: datetime | None = None

    def result(self) -> InstructionResult:
        return InstructionResult(
            status=self.status,
            carrier_reference=self.carrier_reference,
            detail=self.detail,
            http_status=self.http_status,
        )


class UnknownCarrierCode(SQLModel, table=True):
    __tablename__ = "unknown_carrier_codes"
    __table_args__ = (UniqueConstraint("carrier", "code", name="uq_unknown_carrier_codes_carrier_code"),)

    id: int | None = Field(default=None, primary_key=True)
    carrier: str = Field(max_length=32)
    code: str = Field(max_length=200)
    count: int = 0
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)


# --- instruction log ----------------------------------------------------------------------------


def request_summary(inp: SendInstructionInput) -> dict[str, Any]:
    ins = inp.instruction
    return {
        "tracking_number": inp.tracking_number,
        "attempt": inp.attempt,
        "action": ins.action,
        "requested_date": ins.requested_date,
        "changes": [name for name, value in (("phone", ins.phone), ("address", ins.address)) if value],
        "source": ins.source,
    }


def get_instruction(session: Session, *, idempotency_key: str) -> CarrierInstruction | None:
    return session.exec(
        select(CarrierInstruction).where(CarrierInstruction.idempotency_key == idempotency_key)
    ).first()


def begin_instruction(session: Session, *, inp: SendInstructionInput) -> CarrierInstruction:
    """Record that we are about to call the carrier for this key (status requested, attempts+1).

    Inserting under the unique key makes two concurrent attempts share one row."""
    row = CarrierInstruction(
        idempotency_key=inp.idempotency_key,
        shipment_id=inp.shipment_id,
        carrier=inp.carrier,
        action=inp.instruction.action,
        request_summary=request_summary(inp),
        attempts=1,
    )
    session.add(row)
    try:
        session.commit()
        session.refresh(row)
        return row
    except IntegrityError:
        session.rollback()
    session.execute(
        update(CarrierInstruction)
        .where(CarrierInstruction.idempotency_key == inp.idempotency_key)
        .values(attempts=CarrierInstruction.attempts + 1, updated_at=utcnow())
    )
    session.commit()
    existing = get_instruction(session, idempotency_key=inp.idempotency_key)
    assert existing is not None
    session.refresh(existing)
    return existing


def set_instruction_reference(session: Session, *, idempotency_key: str, carrier_reference: str) -> None:
    session.execute(
        update(CarrierInstruction)
        .where(CarrierInstruction.idempotency_key == idempotency_key)
        .values(carrier_reference=carrier_reference, updated_at=utcnow())
    )
    session.commit()


def finish_instruction(
    session: Session, *, idempotency_key: str, result: InstructionResult
) -> CarrierInstruction:
    now = utcnow()
    values: dict[str, Any] = {
        "status": result.status,
        "detail": (result.detail or "")[:1000],
        "http_status": result.http_status,
        "updated_at": now,
    }
    if result.carrier_reference:
        values["carrier_reference"] = result.carrier_reference[:200]
    if result.status in ACKNOWLEDGED:
        values["acknowledged_at"] = now
    session.execute(
        update(CarrierInstruction)
        .where(CarrierInstruction.idempotency_key == idempotency_key)
        .values(**values)
    )
    session.commit()
    row = get_instruction(session, idempotency_key=idempotency_key)
    assert row is not None
    session.refresh(row)
    return row


def instructions_for(session: Session, *, shipment_id: str) -> list[CarrierInstruction]:
    stmt = (
        select(CarrierInstruction)
        .where(CarrierInstruction.shipment_id == shipment_id)
        .order_by(CarrierInstruction.id)
    )
    return list(session.exec(stmt).all())


# --- unknown codes ------------------------------------------------------------------------------


def record_unknown_code(session: Session, carrier: str, code: str) -> None:
    """Count one sighting of an unmapped (carrier, code). Atomic upsert on both dialects."""
    code = (code or "")[:200]
    now = utcnow()
    dialect = session.get_bind().dialect.name
    table = UnknownCarrierCode.__table__  # type: ignore[attr-defined]
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table).values(carrier=carrier, code=code, count=1, first_seen=now, last_seen=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["carrier", "code"],
            set_={"count": table.c.count + 1, "last_seen": stmt.excluded.last_seen},
        )
        session.execute(stmt)
        session.commit()
        return
    # Other databases: insert, and on the unique-constraint violation count instead.
    try:
        with session.begin_nested():
            session.add(
                UnknownCarrierCode(carrier=carrier, code=code, count=1, first_seen=now, last_seen=now)
            )
    except IntegrityError:
        session.execute(
            update(UnknownCarrierCode)
            .where(UnknownCarrierCode.carrier == carrier, UnknownCarrierCode.code == code)
            .values(count=UnknownCarrierCode.count + 1, last_seen=now)
        )
    session.commit()


def unknown_code_counts(session: Session, *, carrier: str | None = None) -> list[UnknownCarrierCode]:
    """Every unmapped code seen, most frequent first."""
    stmt = select(UnknownCarrierCode)
    if carrier:
        stmt = stmt.where(UnknownCarrierCode.carrier == carrier)
    stmt = stmt.order_by(UnknownCarrierCode.count.desc(), UnknownCarrierCode.carrier, UnknownCarrierCode.code)  # type: ignore[attr-defined]
    return list(session.exec(stmt).all())
