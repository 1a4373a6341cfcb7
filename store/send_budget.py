"""The provider send budget shared by every worker process (one row per budget, in the store).

Why it exists: a notification can be sent two ways (workflows/shipment.py `_send`):
  - inline, as a local activity inside the workflow task that decided it (1 history event), or
  - as a regular activity on the notify task queue, whose `max_task_queue_activities_per_second`
    the Temporal server enforces across every worker (activities/notify.py `notify_worker`).
The server's limit cannot see inline sends, so both paths account here, in one row per budget
(named after the notify task queue, so it matches the server's scope):
  - the queue path *debits* before each provider call (`debit`): it never waits or refuses
    here, the server already admitted it;
  - the inline path *takes* (`take`): admitted only while the budget has room, otherwise the
    workflow falls back to the queue.

The algorithm is GCRA (a token bucket kept as one number): `tat` is the "theoretical arrival
time", the moment the budget would be empty again. Each send moves it to max(tat, now) + 1/rate.
An inline send is admitted only while tat <= now + burst/rate - 1/rate, i.e. while fewer than
`burst` sends are ahead of the rate. Bound, over any interval [a, b]: every event (inline or
queue) adds 1/rate to tat and tat never falls behind the clock, so at the last inline send s
the events since a number at most rate·(s - a) + burst; after s only queue sends happen, which
the server limits to rate·(b - s) (+ its own burst). Together: at most rate·(b - a) plus the two
bursts, the same order as the queue alone guarantees today. Inline sends only use what the queue
leaves free; the queue keeps its full rate.

Each operation is a single UPDATE with the condition in its WHERE clause, so concurrent
processes cannot both take the last token (the database serialises row updates; no
read-then-write). The clock is the caller's wall clock: hosts a few milliseconds apart move
the bound by as much, which is far below a provider's per-second limit.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

_US = 1_000_000


class SendBudget(SQLModel, table=True):
    __tablename__ = "notify_send_budget"

    name: str = Field(primary_key=True, max_length=200)
    # Theoretical arrival time, microseconds since the epoch (integers compare exactly everywhere).
    tat_us: int = Field(default=0, sa_type=sa.BigInteger)


_table = SendBudget.__table__  # type: ignore[attr-defined]


def _after_one_send(now_us: int, step: int) -> sa.ColumnElement[int]:
    """tat moved by one send: max(tat, now) + 1/rate (the budget never banks idle time)."""
    return sa.case((_table.c.tat_us > now_us, _table.c.tat_us), else_=now_us) + step


def _ensure(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        if conn.execute(sa.select(_table.c.name).where(_table.c.name == name)).first() is None:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(_table).values(name=name, tat_us=0))
            except IntegrityError:  # another process created it first
                pass


def take(engine: Engine, name: str, *, rate: float, burst: float, now: float | None = None) -> bool:
    """One send, if the budget has room now. False (nothing changed) otherwise: the caller sends
    through the rate-limited task queue instead. A rate <= 0 admits nothing."""
    if rate <= 0:
        return False
    now_us = int((time.time() if now is None else now) * _US)
    step = max(1, int(_US / rate))
    tolerance = int(max(0.0, burst - 1) * step)
    stmt = (
        sa.update(_table)
        .where(_table.c.name == name, _table.c.tat_us <= now_us + tolerance)
        .values(tat_us=_after_one_send(now_us, step))
    )
    for _ in range(2):
        with engine.begin() as conn:
            if conn.execute(stmt).rowcount == 1:
                return True
            if conn.execute(sa.select(_table.c.name).where(_table.c.name == name)).first() is not None:
                return False  # the row exists and is full
        _ensure(engine, name)
    return False


def debit(engine: Engine, name: str, *, rate: float, now: float | None = None) -> None:
    """Record a send the task queue's limit already admitted (never refuses, never waits)."""
    if rate <= 0:
        return
    now_us = int((time.time() if now is None else now) * _US)
    step = max(1, int(_US / rate))
    stmt = (
        sa.update(_table)
        .where(_table.c.name == name)
        .values(tat_us=_after_one_send(now_us, step))
    )
    for _ in range(2):
        with engine.begin() as conn:
            if conn.execute(stmt).rowcount == 1:
                return
        _ensure(engine, name)
