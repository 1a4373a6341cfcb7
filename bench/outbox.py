"""Reading the local outbox: when did each message reach it?

Two ways, the better one first:
- the outbox table itself, read with SQLAlchemy (found by reflection: a table whose name says
  "outbox" with a recipient column, `purpose` and `created_at`), polled every 200 ms by one task
  whatever the load; the row's `created_at` is the moment the worker stored the message;
- the fixed JSON contract `GET /v1/dev/outbox?to=...` → `{"messages":[{"channel","to","purpose",
  "locale","body","created_at",...}]}`, one recipient at a time.

Either way latencies come from `created_at` stamped by the worker, not from when we looked, so
the polling interval does not blur them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

RECIPIENT_COLUMNS = ("to", "to_address", "recipient", "address", "destination")


@dataclass(frozen=True)
class Message:
    to: str
    purpose: str
    created_at: float  # epoch seconds
    channel: str = ""


def normalise_recipient(to: str) -> str:
    to = to.strip()
    for prefix in ("whatsapp:", "sms:", "mailto:"):
        if to.lower().startswith(prefix):
            to = to[len(prefix) :]
    return to.lower()


def epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is None:  # SQLite hands back naive UTC
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def find_outbox_table(engine: sa.Engine) -> tuple[sa.Table, str] | None:
    meta = sa.MetaData()
    insp = sa.inspect(engine)
    for name in sorted(insp.get_table_names()):
        if "outbox" not in name.lower():
            continue
        cols = {c["name"] for c in insp.get_columns(name)}
        recipient = next((c for c in RECIPIENT_COLUMNS if c in cols), None)
        if recipient and {"purpose", "created_at"} <= cols:
            return sa.Table(name, meta, autoload_with=engine), recipient
    return None


class Outbox:
    """Messages by recipient, and waiting for one (a customer replies after the NDR message)."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None,
        api_url: str,
        headers: dict[str, str],
        engine: sa.Engine | None,
    ) -> None:
        self.http = http
        self.api_url = api_url
        self.headers = headers
        self.engine = engine
        self.table: sa.Table | None = None
        self.recipient_col = ""
        self.by_to: dict[str, list[Message]] = defaultdict(list)
        self._last_key: Any = None
        self._waiters: list[tuple[str, str, float, asyncio.Future[Message]]] = []
        self._task: asyncio.Task[None] | None = None
        self.mode = "none"

    @property
    def available(self) -> bool:
        return self.mode != "none"

    async def start(self, http_available: bool) -> None:
        if self.engine is not None:
            found = await asyncio.to_thread(find_outbox_table, self.engine)
            if found:
                self.table, self.recipient_col = found
                self.mode = "db"
                self._task = asyncio.create_task(self._poll_db())
                return
        if http_available and self.http is not None:
            self.mode = "http"

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ---- db mode ------------------------------------------------------------------------
    def _fetch_new(self) -> list[Message]:
        assert self.table is not None and self.engine is not None
        t = self.table
        pk = next(iter(t.primary_key.columns), None)
        use_id = pk is not None and isinstance(pk.type, sa.Integer)
        cols = [t.c[self.recipient_col], t.c.purpose, t.c.created_at]
        if "channel" in t.c:
            cols.append(t.c.channel)
        q = sa.select(*cols, *([pk] if use_id else []))
        if self._last_key is not None:
            q = q.where((pk if use_id else t.c.created_at) > self._last_key)
        q = q.order_by(pk if use_id else t.c.created_at).limit(20000)
        out: list[Message] = []
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                m = row._mapping
                created = epoch(m["created_at"])
                if created is None:
                    continue
                out.append(
                    Message(
                        normalise_recipient(str(m[self.recipient_col])),
                        str(m["purpose"]),
                        created,
                        str(m.get("channel", "") or ""),
                    )
                )
                self._last_key = m[pk.name] if use_id else m["created_at"]
        return out

    async def _poll_db(self) -> None:
        while True:
            try:
                for msg in await asyncio.to_thread(self._fetch_new):
                    self._add(msg)
            except sa.exc.SQLAlchemyError:
                pass  # SQLite busy under load: next round
            await asyncio.sleep(0.2)

    def _add(self, msg: Message) -> None:
        self.by_to[msg.to].append(msg)
        for w in list(self._waiters):
            to, prefix, after, fut = w
            if msg.to == to and msg.purpose.startswith(prefix) and msg.created_at >= after and not fut.done():
                fut.set_result(msg)
                self._waiters.remove(w)

    # ---- http mode -----------------------------------------------------------------------
    async def fetch(self, to: str) -> list[Message]:
        assert self.http is not None
        r = await self.http.get(f"{self.api_url}/v1/dev/outbox", params={"to": to}, headers=self.headers)
        if r.status_code != 200:
            return []
        msgs = []
        for item in r.json().get("messages", []):
            created = epoch(item.get("created_at"))
            if created is not None:
                msgs.append(
                    Message(
                        normalise_recipient(str(item.get("to", to))),
                        str(item.get("purpose", "")),
                        created,
                        str(item.get("channel", "")),
                    )
                )
        return msgs

    # ---- both ----------------------------------------------------------------------------
    async def wait_for(self, to: str, prefix: str, after: float, timeout: float) -> Message | None:
        """The first message to `to` whose purpose starts with `prefix`, created after `after`."""
        to = normalise_recipient(to)
        if self.mode == "db":
            for msg in self.by_to.get(to, []):
                if msg.purpose.startswith(prefix) and msg.created_at >= after:
                    return msg
            fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            entry = (to, prefix, after, fut)
            self._waiters.append(entry)
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                return None
        if self.mode == "http":
            deadline = asyncio.get_running_loop().time() + timeout
            while asyncio.get_running_loop().time() < deadline:
                for msg in await self.fetch(to):
                    if msg.purpose.startswith(prefix) and msg.created_at >= after:
                        return msg
                await asyncio.sleep(0.3)
        return None

    async def messages_for(self, recipients: list[str], concurrency: int = 8) -> dict[str, list[Message]]:
        """Every message to these recipients (after a phase has drained)."""
        wanted = [normalise_recipient(r) for r in recipients]
        if self.mode == "db":
            await asyncio.sleep(0.3)  # one more poll round
            return {r: sorted(self.by_to.get(r, []), key=lambda m: m.created_at) for r in wanted}
        if self.mode != "http":
            return {}
        sem = asyncio.Semaphore(concurrency)
        out: dict[str, list[Message]] = {}

        async def one(r: str) -> None:
            async with sem:
                out[r] = sorted(await self.fetch(r), key=lambda m: m.created_at)

        await asyncio.gather(*(one(r) for r in wanted))
        return out
