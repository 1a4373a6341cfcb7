"""The chaos run: journeys through the real HTTP API while the harness SIGKILLs the worker
several times, SIGKILLs and restarts the Temporal dev server once, makes every carrier's NDR API
time out or answer 5xx for a while, and redelivers carrier pushes (duplicated, reordered) and
Twilio inbound replies. Then the audit (chaos/audit.py) over the store, the outbox and the fake
carrier's record. Reuses bench/: journeys, the signed HTTP target, the driver, the outbox reader.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlmodel import Session

from bench.driver import Driver, Load, Started
from bench.journeys import Journey, JourneyFactory, Mix
from bench.outbox import Outbox
from bench.stack import CARRIER_CODES, start_fake_carrier
from bench.targets import JourneyCtx, PipelineTarget, Sent, parsed_milestone_map
from chaos import audit
from chaos.procs import Procs
from ndrflow.migrate import migrate_locked
from store.db import engine_for
from store.keys import create_key

RESULTS = Path(__file__).resolve().parent / "results"
MERCHANT = "chaos"
# Sustained journey rate offered (journeys/s): well under what the stack takes on 2 shared cores,
# so what the audit finds is the faults' doing, not overload.
RATE = 2.0
STARTUP_S = 30.0
DRAIN_S = 120.0  # after the last journey started: its own ~10 s, retries and the last restart
REPLY_DUP_RATE = 0.3  # Twilio retries the inbound webhook


@dataclass
class Chaos:
    faults: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)


class RetryingTarget:
    """A carrier or Twilio retries a webhook we did not accept (5xx, connection refused while the
    API waits for Temporal); a merchant retries a registration. Redelivers some Twilio replies."""

    name = "pipeline"

    def __init__(self, inner: PipelineTarget, chaos: Chaos, rng: random.Random, deadline: float) -> None:
        self.inner, self.chaos, self.rng, self.deadline = inner, chaos, rng, deadline
        self.failed: list[Sent] = []

    async def send(self, j: Journey, i: int, ctx: JourneyCtx) -> Sent | None:
        delay = 0.5
        while True:
            sent = await self.inner.send(j, i, ctx)
            retry = isinstance(sent.status, str) or int(sent.status) >= 500
            if not retry or time.monotonic() > self.deadline:
                break
            self.chaos.faults["api_retries"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 1.6, 4.0)
        if not sent.ok:
            self.failed.append(sent)
        if j.steps[i].kind == "reply" and sent.ok and self.rng.random() < REPLY_DUP_RATE:
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            again = await self.inner.send(j, i, ctx)  # the same MessageSid
            self.chaos.faults["twilio_reply_duplicates"] += 1
            if not again.ok:
                self.failed.append(again)
        return sent


def plan_shipments(requested: int, budget_s: float, console: Console) -> int:
    fits = int(max(10, (budget_s - STARTUP_S - DRAIN_S) * RATE))
    if requested > fits:
        console.print(
            f"[yellow]{requested} shipments at {RATE:g}/s would not fit the {budget_s:.0f} s budget: "
            f"running {fits} instead (raise --budget or lower --shipments).[/yellow]"
        )
        return fits
    return requested


async def amain(
    shipments: int, budget_s: float, seed: int, keep_home: bool, console: Console
) -> dict[str, Any]:
    t_begin = time.monotonic()
    shipments = plan_shipments(shipments, budget_s, console)
    home = Path(tempfile.mkdtemp(prefix="ndrflow-chaos-"))
    secret = _generate("carrier")
    fake = start_fake_carrier(secret)
    procs = Procs(home=home, fake_url=fake.url, carrier_secret=secret)
    chaos = Chaos()
    rng = random.Random(seed)
    result: dict[str, Any] = {}
    try:
        console.print(f"home {home}; fake carrier {fake.url}")
        await asyncio.to_thread(migrate_locked, procs.database_url)
        await procs.start_temporal()
        procs.start_worker()
        await procs.start_api()
        engine = engine_for(procs.database_url)
        with Session(engine) as s:
            key = create_key(s, scope="merchant", merchant_id=MERCHANT, name="chaos")
        result = await _run(procs, fake, engine, key, shipments, seed, rng, chaos, t_begin, budget_s, console)
    finally:
        await procs.stop()
        fake.stop()
        if keep_home:
            console.print(f"home kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return result


def _generate(_: str) -> str:
    import secrets

    return secrets.token_hex(16)


async def _run(
    procs: Procs,
    fake: Any,
    engine: sa.Engine,
    merchant_key: str,
    n: int,
    seed: int,
    rng: random.Random,
    chaos: Chaos,
    t_begin: float,
    budget_s: float,
    console: Console,
) -> dict[str, Any]:
    hard_deadline = t_begin + budget_s - 15
    tag = f"X{int(time.time()) % 100000:05d}"
    factory = JourneyFactory(
        seed=seed,
        run_tag=tag.lower(),
        merchant_id=MERCHANT,
        country="IN",
        today=datetime.now(ZoneInfo("Asia/Kolkata")).date(),
        mix=Mix(duplicate_rate=0.15, reorder_rate=0.3, early_scan_rate=0.05),
        tracking_prefix=f"CH{tag}",
    )
    journeys = [factory.make(i) for i in range(n)]
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=httpx.Limits(max_connections=200))
    milestone_map = parsed_milestone_map()
    inner = PipelineTarget(
        http, procs.api_url, {MERCHANT: merchant_key}, procs.carrier_secret, procs.twilio_token, milestone_map
    )
    target = RetryingTarget(inner, chaos, rng, hard_deadline)
    outbox = Outbox(http=http, api_url=procs.api_url, headers={}, engine=engine)
    await outbox.start(http_available=True)
    driver = Driver(target, counter=lambda ms: _delivered(engine, ms), outbox=outbox)  # type: ignore[arg-type]
    load = Load(name="chaos", target="pipeline")
    load_s = n / RATE
    loop = asyncio.get_running_loop()

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        t_start = progress.add_task("journeys started", total=n)
        t_done = progress.add_task("delivered (read model)", total=n)
        t_fault = progress.add_task("faults: -", total=None)

        def show(_load: Load | None = None, _: str = "") -> None:
            progress.update(t_start, completed=len(load.started))
            progress.update(t_done, completed=len(load.done))
            progress.update(
                t_fault,
                description="faults: "
                + (", ".join(f"{k}={v}" for k, v in sorted(chaos.faults.items())) or "-"),
            )

        driver.on_tick = show
        tasks: set[asyncio.Task[None]] = set()

        async def offer() -> None:
            t0 = loop.time()
            for idx, j in enumerate(journeys):
                due = t0 + idx / RATE
                if time.monotonic() > hard_deadline - DRAIN_S:
                    chaos.log.append(f"time budget: stopped offering after {idx} journeys")
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                load.started.append(Started(j, time.time(), "chaos"))
                task = asyncio.create_task(driver._journey(load, j, loop.time(), time.time()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        async def faults() -> None:
            # Fractions of the load phase: 4 worker kills, one dev server kill, carrier outages.
            plan = [
                (0.12, "kill_worker"),
                (0.25, "carrier_5xx"),
                (0.32, "kill_worker"),
                (0.45, "kill_temporal"),
                (0.55, "carrier_timeout"),
                (0.62, "kill_worker"),
                (0.80, "kill_worker"),
            ]
            t0 = loop.time()
            for frac, what in plan:
                await asyncio.sleep(max(0.0, t0 + frac * load_s - loop.time()))
                if len(load.started) < n * frac * 0.8 and time.monotonic() > hard_deadline - DRAIN_S:
                    break
                await _inject(what, procs, fake, chaos, rng)
                show()

        async with driver.tracking(load, interval=1.0):
            await asyncio.gather(offer(), faults())
            drain_end = min(hard_deadline, time.monotonic() + DRAIN_S)
            while tasks and time.monotonic() < drain_end:
                await asyncio.sleep(0.5)
            # Every journey sent: wait until each is delivered and instructions settled.
            last_change, last = time.monotonic(), (-1, -1)
            while time.monotonic() < drain_end:
                now = (len(load.done), len(_accepted(fake)))
                if now != last:
                    last, last_change = now, time.monotonic()
                if len(load.done) >= len(load.started) and time.monotonic() - last_change > 8:
                    break
                await asyncio.sleep(0.5)
            show()
        for t in list(tasks):
            t.cancel()

    await outbox.stop()
    await http.aclose()
    started = [s.journey for s in load.started]
    figures = _audit(engine, fake, started, milestone_map, chaos)
    figures["details"]["failed_calls"] = Counter(f"{s.kind}:{s.status}" for s in target.failed)
    figures["details"]["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    figures["details"]["harness_log"] = chaos.log
    return figures


async def _inject(what: str, procs: Procs, fake: Any, chaos: Chaos, rng: random.Random) -> None:
    if what == "kill_worker":
        procs.kill_worker()
        chaos.faults["worker_sigkill"] += 1
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        procs.start_worker()
    elif what == "kill_temporal":
        procs.kill_temporal()
        chaos.faults["temporal_sigkill"] += 1
        await asyncio.sleep(2.0)
        await procs.start_temporal()
        chaos.faults["temporal_restart"] += 1
    elif what in ("carrier_5xx", "carrier_timeout"):
        mode = "5xx" if what == "carrier_5xx" else "timeout"
        async with httpx.AsyncClient(timeout=5) as http:
            for code in CARRIER_CODES:
                body: dict[str, Any] = {"carrier": code, "mode": mode, "count": 4}
                if mode == "timeout":
                    body["delay_s"] = 12.0
                r = await http.post(f"{fake.url}/_faults", json=body)
                r.raise_for_status()
                chaos.faults[f"carrier_{mode}"] += 4
    chaos.log.append(f"{time.strftime('%H:%M:%S')} {what}")


async def _delivered(engine: sa.Engine, merchants: list[str]) -> dict[tuple[str, str], float]:
    def q() -> dict[tuple[str, str], float]:
        with engine.connect() as c:
            rows = c.execute(
                sa.text("SELECT merchant_id, tracking_number FROM shipments WHERE status = 'delivered'")
            )
            now = time.time()
            return {(m, t): now for m, t in rows}

    return await asyncio.to_thread(q)


def _accepted(fake: Any) -> list[dict[str, Any]]:
    with fake.state.lock:
        return [r for r in fake.state.received if r["outcome"] == "accepted"]


def _audit(
    engine: sa.Engine,
    fake: Any,
    journeys: list[Journey],
    milestone_map: dict[tuple[str, str], str],
    chaos: Chaos,
) -> dict[str, Any]:
    with engine.connect() as c:
        ships = {
            t: (sid, st)
            for sid, t, st in c.execute(sa.text("SELECT shipment_id, tracking_number, status FROM shipments"))
        }
        rows = list(c.execute(sa.text("SELECT shipment_id, purpose, channel FROM outbox_messages")))
        log_status = Counter(
            f"{p}:{s}" for p, s in c.execute(sa.text("SELECT purpose, status FROM notification_log"))
        )
    facts = []
    for j in journeys:
        sid = ships.get(j.tracking_number, (f"?{j.tracking_number}", ""))[0]
        ms = tuple(milestone_map.get((j.carrier, sc.milestone), sc.milestone) for sc in j.scans)
        facts.append(audit.JourneyFacts(sid, j.tracking_number, j.kind, j.customer.whatsapp_opt_in, ms))
    required, allowed = audit.expected_messages(facts)
    msgs = audit.count_messages(required, allowed, [(s, p, ch) for s, p, ch in rows])

    trackings = {j.tracking_number for j in journeys}
    pattern = re.compile("|".join(re.escape(t) for t in sorted(trackings, key=len, reverse=True)) or "^$")
    received: list[str] = []
    paths: Counter[str] = Counter()
    for r in _accepted(fake):
        blob = json.dumps([r["path"], r["query"], r["body"]])
        m = pattern.search(blob)
        paths[f"{r['carrier']} {r['method']} {re.sub(r'/[A-Z0-9]{8,}', '/…', r['path'])}"] += 1
        if m:
            received.append(m.group(0))
    instr = audit.count_instructions(
        [j.tracking_number for j in journeys if j.kind in audit.DECIDING_KINDS], received
    )
    wrong = audit.wrong_final_states(
        {j.tracking_number: j.final_status for j in journeys}, {t: st for t, (_, st) in ships.items()}
    )
    return {
        "shipments": len(journeys),
        "faults": dict(chaos.faults),
        **{
            k: msgs[k] for k in ("messages_expected", "messages_sent", "messages_duplicated", "messages_lost")
        },
        **{
            k: instr[k]
            for k in (
                "instructions_expected",
                "instructions_received",
                "instructions_duplicated",
                "instructions_lost",
            )
        },
        "details": {
            "final_state_wrong": len(wrong),
            "final_state_wrong_sample": dict(list(wrong.items())[:10]),
            "instructions_unexpected": instr["instructions_unexpected"],
            "outbox_rows": msgs["messages_total_rows"],
            "outbox_by_purpose": dict(Counter(p for _, p, _ in rows)),
            "notification_log": dict(log_status),
            "carrier_requests_accepted": dict(paths),
            "journey_kinds": dict(Counter(j.kind for j in journeys)),
            "carriers": dict(Counter(j.carrier for j in journeys)),
            "duplicate_pushes": sum(s.duplicate for j in journeys for s in j.steps),
            "reordered_journeys": sum(j.reordered for j in journeys),
            "early_scans": sum(s.held for j in journeys for s in j.steps),
        },
    }
