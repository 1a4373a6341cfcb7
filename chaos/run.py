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
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.driver import Driver, Load, Started, StepResult
from bench.journeys import Journey, JourneyFactory, Mix
from bench.outbox import Outbox
from bench.procs import Procs
from bench.stack import CARRIER_CODES, start_fake_carrier
from bench.targets import JourneyCtx, PipelineTarget, Sent, parsed_milestone_map
from chaos import audit
from ndrflow.migrate import migrate_locked
from store.db import engine_for
from store.keys import create_key
from workflows.ids import shipment_id_for, shipment_workflow_id

RESULTS = Path(__file__).resolve().parent / "results"
MERCHANT = "chaos"
# Journeys are offered at the rate that fits the requested count into the budget, at most
# MAX_RATE journeys/s. Measured on this 2-core machine, shared (load average 7-9), with the
# faults: 1,000 journeys at 2.08/s (~17 journey events/s) kept up, every shipment delivered
# within its own journey time and the last one's work settled 28 s after it started. Faster
# was not measured: above it the run would measure overload, not exactly-once, so a shorter
# budget runs fewer shipments instead.
MAX_RATE = 2.2
MIN_RATE = 2.0  # smaller runs are not stretched over the whole budget
STARTUP_S = 15.0  # dev server, migrations, API up (measured 4-10 s); the worker comes up meanwhile
# Reserved after the last journey started: its own ~15 s, then retries still waiting (a killed
# worker's activity comes back after its 10 s heartbeat timeout; a send whose row the dead attempt
# left "sending" waits out its 30 s lease; carrier retries back off from 5 s).
DRAIN_S = 90.0
MARGIN_S = 15.0  # the audit, stopping the stack
REPLY_DUP_RATE = 0.3  # Twilio retries the inbound webhook
DESCRIBE_CONCURRENCY = 16
# A customer answers the NDR question they received, so waits for it. After a worker kill the
# question can take its heartbeat timeout, a sending lease and a retry backoff to arrive: wait
# longer than all of those, else the answer would reach a case not opened yet (the API answers
# "no_open_case" and the decision is the customer's who never got asked, not ours to lose).
ASK_TIMEOUT_S = 90.0


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


@dataclass(frozen=True)
class Plan:
    shipments: int
    rate: float  # journeys offered per second
    load_s: float


def plan_shipments(
    requested: int, budget_s: float, console: Console | None = None, max_rate: float = MAX_RATE
) -> Plan:
    """How many journeys at what rate: MIN_RATE, or faster when the requested count needs it to
    fit the time the budget leaves for offering load, never faster than `max_rate`; when even
    that does not fit, as many as do. The load window is never shorter than 30 s."""
    window = max(30.0, budget_s - STARTUP_S - DRAIN_S - MARGIN_S)
    rate = min(max_rate, max(requested / window, MIN_RATE))
    fits = max(1, int(window * rate))
    n = min(requested, fits)
    if console is not None and n < requested:
        console.print(
            f"[yellow]{requested} shipments would need {requested / window:.2f} journeys/s to fit the "
            f"{budget_s:.0f} s budget, above the {max_rate:g}/s this stack sustains here: running {n} "
            "instead (raise --budget or lower --shipments).[/yellow]"
        )
    return Plan(n, rate, n / rate)


async def amain(
    shipments: int, budget_s: float, seed: int, keep_home: bool, console: Console
) -> dict[str, Any]:
    t_begin = time.monotonic()
    plan = plan_shipments(shipments, budget_s, console)
    console.print(f"{plan.shipments} shipments at {plan.rate:.2f} journeys/s (load ~{plan.load_s:.0f} s)")
    home = Path(tempfile.mkdtemp(prefix="ndrflow-chaos-"))
    secret = _generate("carrier")
    fake = start_fake_carrier(secret)
    procs = Procs(home=home, fake_url=fake.url, carrier_secret=secret, quiet_hours=False)
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
        chaos.log.append(f"{time.strftime('%H:%M:%S')} stack up after {time.monotonic() - t_begin:.1f} s")
        result = await _run(procs, fake, engine, key, plan, seed, rng, chaos, t_begin, budget_s, console)
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
    plan: Plan,
    seed: int,
    rng: random.Random,
    chaos: Chaos,
    t_begin: float,
    budget_s: float,
    console: Console,
) -> dict[str, Any]:
    hard_deadline = t_begin + budget_s - MARGIN_S
    n, rate = plan.shipments, plan.rate
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
    driver = Driver(
        target, counter=lambda ms: _delivered(engine, ms), outbox=outbox, ask_timeout=ASK_TIMEOUT_S
    )  # type: ignore[arg-type]
    load = Load(name="chaos", target="pipeline")
    # The driver's completion poll reads the merchants of the load's steps.
    load.steps.append(StepResult("chaos", MERCHANT, rate, time.time(), 0.0))
    load_s = plan.load_s
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

        async def offer() -> None:
            t0 = loop.time()
            for idx, j in enumerate(journeys):
                due = t0 + idx / rate
                if time.monotonic() > hard_deadline - DRAIN_S:
                    chaos.log.append(f"time budget: stopped offering after {idx} journeys")
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                load.started.append(Started(j, time.time(), "chaos"))
                driver.start_journey(load, j, loop.time(), time.time())
            chaos.log.append(f"{time.strftime('%H:%M:%S')} last journey started")

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
            # Every step sent and every shipment delivered (or the budget gone)...
            while (
                driver.in_flight or len(load.done) < len(load.started)
            ) and time.monotonic() < hard_deadline:
                await asyncio.sleep(0.5)
            chaos.log.append(
                f"{time.strftime('%H:%M:%S')} journeys sent: {len(load.started) - driver.in_flight}/"
                f"{len(load.started)}, delivered {len(load.done)}"
            )
            # ...then until no shipment workflow has work in flight: a killed worker's activity
            # waiting for its heartbeat timeout, a retry backing off, an unprocessed task.
            client = await Client.connect(f"127.0.0.1:{procs.temporal_port}")
            ids = [
                shipment_id_for(j.merchant_id, j.carrier, j.tracking_number)
                for s in load.started
                for j in [s.journey]
            ]
            pending = await _settle(client, ids, hard_deadline, chaos)
            show()
        await driver.abandon()

    await outbox.stop()
    await http.aclose()
    started = [s.journey for s in load.started]
    figures = _audit(engine, fake, started, milestone_map, chaos, pending)
    figures["details"]["failed_calls"] = Counter(f"{s.kind}:{s.status}" for s in target.failed)
    figures["details"]["elapsed_s"] = round(time.monotonic() - t_begin, 1)
    # Replies sent although the NDR question had not arrived within ASK_TIMEOUT_S.
    figures["details"]["answered_without_the_question"] = load.ask_missing
    if load.ask_waits:
        waits = sorted(load.ask_waits)
        figures["details"]["ask_wait_s"] = {
            "p50": round(waits[len(waits) // 2], 2),
            "max": round(waits[-1], 2),
        }
    figures["details"]["harness_log"] = chaos.log
    return figures


async def _settle(client: Client, shipment_ids: list[str], deadline: float, chaos: Chaos) -> dict[str, str]:
    """Describe shipment workflows until none has work in flight or the deadline passes; returns
    shipment id → what is still in flight. A workflow found idle (waiting on a timer or a
    message) after its journey was sent stays idle, so later rounds only describe the ones found
    busy, then one more full round confirms."""
    sem = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

    async def one(sid: str) -> tuple[str, str | None]:
        async with sem:
            try:
                d = await client.get_workflow_handle(shipment_workflow_id(sid)).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return sid, None  # never started: the audit counts what it lacks as lost
                return sid, f"describe failed: {err.status.name if err.status else err}"
            raw = d.raw_description
            if raw.pending_activities:
                a = raw.pending_activities[0]
                return sid, f"{a.activity_type.name} attempt {a.attempt}"
            if raw.HasField("pending_workflow_task"):
                return sid, "workflow task"
            return sid, None

    async def round_(ids: list[str]) -> dict[str, str]:
        found = await asyncio.gather(*(one(i) for i in ids))
        return {sid: what for sid, what in found if what is not None}

    rounds, t0 = 0, time.monotonic()
    busy = await round_(shipment_ids)
    rounds += 1
    while time.monotonic() < deadline:
        while busy and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            busy = await round_(list(busy))
            rounds += 1
        if time.monotonic() >= deadline:
            break
        busy = await round_(shipment_ids)  # the confirming full round
        rounds += 1
        if not busy:
            break
    chaos.log.append(
        f"{time.strftime('%H:%M:%S')} settled in {time.monotonic() - t0:.1f} s ({rounds} describe rounds); "
        f"{len(busy)} shipments still had work in flight"
    )
    return busy


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
    pending: dict[str, str],
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
    msgs = audit.count_messages(required, allowed, [(s, p, ch) for s, p, ch in rows], pending=set(pending))
    pending_trackings = {
        j.tracking_number
        for j in journeys
        if shipment_id_for(j.merchant_id, j.carrier, j.tracking_number) in pending
    }

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
        [j.tracking_number for j in journeys if j.kind in audit.DECIDING_KINDS], received, pending_trackings
    )
    wrong = audit.wrong_final_states(
        {j.tracking_number: j.final_status for j in journeys}, {t: st for t, (_, st) in ships.items()}
    )
    wrong_pending = {t: st for t, st in wrong.items() if t in pending_trackings}
    wrong = {t: st for t, st in wrong.items() if t not in pending_trackings}
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
            # Work still in flight when the budget ran out: neither proven nor lost.
            "shipments_pending": len(pending),
            "pending_sample": dict(list(pending.items())[:10]),
            "messages_pending": msgs["messages_pending"],
            "instructions_pending": instr["instructions_pending"],
            "final_state_pending": len(wrong_pending),
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
