"""`python -m bench --scale`: how throughput grows with 1, 2 and 4 worker processes.

The stack is split the way a production deployment splits it (README "Performance"): the
Temporal dev server alone, `ndrflow api` in one process and N `ndrflow worker` processes (each
with its notify worker), all on one home and one SQLite file, against the same in-process fake
carrier as the main benchmark. For each N the workers are (re)started, warmed up, then the
pipeline is ramped exactly like `python -m bench` ramps it (same journeys, same "kept up"
criteria) and held at half of that maximum for the notification latency and the CPU each
process spends per journey. The dev server and the API stay up across N (their caches warm
either way); completed journeys of one N never touch the next N's workers.

On a 2-core machine little gain is expected: the point is an honest figure and where the time
goes. The per-process CPU says it: when the dev server and the API take most of the machine,
adding worker processes cannot help (they only add interpreter overhead and more pollers).

Writes bench/results/scaling.json (`details.scaling` = [{workers, events_per_s,
worker_cpu_ms_per_journey, notify_p99_ms, ...}]) and bench/results/scaling.png.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import Client

from bench import report
from bench.outbox import Outbox
from bench.procs import Procs
from bench.run import Config, Run, machine_facts
from bench.stack import Capabilities, StackProcess, cpu_seconds, start_fake_carrier
from bench.targets import parsed_milestone_map
from ndrflow.migrate import migrate_locked
from store.db import make_engine

WORKER_COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class ScaleConfig(Config):
    """Per worker count: warm-up, ramp (offered time `ramp.budget` + drain), steady."""

    quick: bool = False
    workers: tuple[int, ...] = WORKER_COUNTS
    warmup_s: float = 4.0
    scale_steady_s: float = 15.0

    @property
    def budget_s(self) -> float:
        return 570

    @property
    def ramp(self) -> dict[str, float]:
        # Shorter steps than the full run's (×1.3 every 5 s from 8 ev/s, up to 143 ev/s in 60 s):
        # three ramps have to fit in 10 minutes.
        return {
            "step_s": 5.0,
            "factor": 1.3,
            "max_steps": 12,
            "r0": 8,
            "max_rate": 250,
            "budget": 60,
            "drain": 20,
        }

    @property
    def steady_drain_s(self) -> float:
        return 15


class ScaleRun(Run):
    cfg: ScaleConfig

    def __init__(self, cfg: ScaleConfig, console: Console) -> None:
        super().__init__(cfg, console)
        self.split: Procs | None = None

    async def setup(self) -> None:
        self.country, self.today = self.choose_country()
        self.stream_blocks = {}
        self.console.print(
            f"[bold]ndrflow benchmark: worker scaling[/bold] ({', '.join(map(str, self.cfg.workers))} worker "
            f"processes), run {self.tag}; customers in {self.country}"
        )
        carrier_secret = uuid.uuid4().hex
        self.fake = start_fake_carrier(carrier_secret)
        home = Path(tempfile.mkdtemp(prefix="ndrflow-bench-scale-"))
        split = Procs(home, self.fake.url, carrier_secret, notify_per_second=self.cfg.notify_per_second)
        self.split = split
        with self.console.status("starting the dev server and `ndrflow api`…"):
            await asyncio.to_thread(migrate_locked, split.database_url)
            await split.start_temporal()
            await split.start_api()
        assert split.api is not None
        # The main benchmark's view of "the stack": its process is the API here; the workers
        # and the dev server are measured separately (_cpu_snapshot).
        self.stack = StackProcess(
            home=home,
            api_port=split.api_port,
            temporal_port=split.temporal_port,
            ui_port=0,
            secrets=split.secrets,
            proc=split.api,
        )
        async with httpx.AsyncClient(timeout=5) as http:
            spec = (await http.get(f"{self.stack.api_url}/openapi.json")).json()
        self.stack.caps = Capabilities(paths=set(spec.get("paths", {})))
        from sqlmodel import Session

        from store.db import engine_for
        from store.keys import create_key

        with Session(engine_for(self.stack.effective_database_url)) as session:
            self.stack.keys = {"agent": create_key(session, scope="agent", name="bench scale")}
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(20.0), limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )
        self.client = await Client.connect(self.stack.temporal_address)
        self.engine = make_engine(self.stack.effective_database_url)
        self.outbox = Outbox(
            http=self.http,
            api_url=self.stack.api_url,
            headers={"Authorization": f"Bearer {self.stack.keys['agent']}"},
            engine=self.engine,
        )
        await self.outbox.start(self.stack.caps.outbox)
        self.milestone_map = parsed_milestone_map()

    async def _cpu_snapshot(self, which: str) -> dict[str, float]:
        assert self.split is not None and self.split.devserver is not None
        snap = {
            "api": cpu_seconds(self.split.api.pid) or 0.0 if self.split.api else 0.0,
            "devserver": cpu_seconds(self.split.devserver.pid or 0) or 0.0,
            "bench": cpu_seconds(os.getpid()) or 0.0,
        }
        for i, p in enumerate(self.split.workers):
            snap[f"worker_{i}"] = cpu_seconds(p.pid) or 0.0
        snap["workers"] = sum(v for k, v in snap.items() if k.startswith("worker_"))
        return snap

    async def execute(self) -> dict[str, Any]:  # type: ignore[override]
        facts = machine_facts()
        await self.setup()
        assert self.split is not None
        rows: list[dict[str, Any]] = []
        try:
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description:<28}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
            ) as progress:
                self.progress = progress
                for k, n in enumerate(self.cfg.workers):
                    rows.append(await self.one(n, left=len(self.cfg.workers) - k))
                self.progress = None
        finally:
            if self.outbox is not None:
                await self.outbox.stop()
            if self.http is not None:
                await self.http.aclose()
            await self.split.stop()
            if self.fake is not None:
                self.fake.stop()
            if not self.cfg.keep_home:
                import shutil

                shutil.rmtree(self.split.home, ignore_errors=True)
        base = rows[0]["events_per_s"] if rows else None
        for r in rows:
            r["speedup"] = round(r["events_per_s"] / base, 2) if base and r["events_per_s"] else None
        self.details["scaling"] = rows
        self.details["notify_max_per_second"] = self.cfg.notify_per_second
        self.details["phase_seconds"] = {
            name: round(ld.t_end - ld.t_begin, 1) for name, ld in self.loads.items() if ld.t_end
        }
        self.details["bottleneck"] = bottleneck(rows, facts["cores"] or 1)
        busy = max((max(r.get("loadavg_1m_ramp") or [0.0]) for r in rows), default=0.0)
        if busy > (facts["cores"] or 1):
            self.note(
                f"the machine was busy with other work (load average up to {busy:.1f} on {facts['cores']} cores): "
                "more processes also win a larger share of the CPU from that work (see ramp_cores_used), so part "
                "of any gain with more workers is taken from other tenants, not added by more workers; "
                "cpu_bound_events_per_s (cores / CPU per journey of dev server, API and workers) is what "
                "the same processes would carry on idle cores"
            )
        return {
            "mode": "scale",
            "run": self.tag,
            "started_at": datetime.fromtimestamp(self.t0, UTC).isoformat(),
            "duration_s": round(self.elapsed(), 1),
            "cores": facts["cores"],
            "python": facts["python"],
            "temporalio_version": facts["temporalio_version"],
            "machine": {**facts, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
            "definitions": SCALE_DEFINITIONS,
            "notes": self.notes,
            "details": self.details,
        }

    async def one(self, n: int, left: int) -> dict[str, Any]:
        """Start n workers, warm them up, ramp, hold at half the maximum, stop them."""
        assert self.split is not None
        t_start = time.time()
        self.round = f"W{n}"
        # What is left of the budget, shared by the worker counts still to run.
        share = (self.remaining() - 8) / left
        with self.console.status(f"starting {n} `ndrflow worker` process{'es' if n > 1 else ''}…"):
            await self.split.start_workers(n)
        # The first workflows of a process pay for imports into the sandbox: not part of a step.
        await self.steady(
            "pipeline", 6.0, dur=self.cfg.warmup_s, name=f"pipeline w{n}warmup", stream="warmup"
        )
        spent = time.time() - t_start
        ramp_share = max(20.0, share - spent - self.cfg.scale_steady_s - self.cfg.steady_drain_s - 6)
        load_before = os.getloadavg()[0]
        ramp = await self.ramp("pipeline", share=ramp_share, name=f"pipeline w{n}ramp")
        load_after = os.getloadavg()[0]
        eps, info = self.max_sustained(ramp)
        rate = 0.5 * (eps or self.cfg.ramp["r0"])
        await self.quiesce(f"w{n} steady", 15)
        steady = await self.steady("pipeline", rate, dur=self.cfg.scale_steady_s, name=f"pipeline w{n}steady")
        notify = await self.notify_latencies(steady)
        await self.split.stop_workers()
        j = max(1, steady.journeys())
        wall = max(1e-9, steady.t_end - steady.t_begin)
        ramp_wall = max(1e-9, ramp.t_end - ramp.t_begin)
        ms = [p[1] for p in notify]
        system_ms = sum(steady.cpu.get(k, 0.0) for k in ("workers", "devserver", "api")) * 1000 / j
        events_per_journey = steady.events() / j
        cores = os.cpu_count() or 1
        per_worker = [
            report.rnd(steady.cpu[f"worker_{i}"] * 1000 / j) for i in range(n) if f"worker_{i}" in steady.cpu
        ]
        return {
            "workers": n,
            "events_per_s": report.rnd(eps),
            "saturated": info["saturated"],
            "completion_rate_while_saturated": info["completion_rate_while_saturated"],
            "steady_rate_events_per_s": round(rate, 1),
            "steady_journeys": steady.journeys(),
            "worker_cpu_ms_per_journey": report.rnd(steady.cpu.get("workers", 0.0) * 1000 / j),
            "worker_cpu_ms_per_journey_each": per_worker,
            "api_cpu_ms_per_journey": report.rnd(steady.cpu.get("api", 0.0) * 1000 / j),
            "devserver_cpu_ms_per_journey": report.rnd(steady.cpu.get("devserver", 0.0) * 1000 / j),
            "bench_cpu_ms_per_journey": report.rnd(steady.cpu.get("bench", 0.0) * 1000 / j),
            "events_per_journey": round(events_per_journey, 2),
            "system_cpu_ms_per_journey": report.rnd(system_ms),
            # What the cores would carry if our processes had them to themselves (dev server,
            # API and workers; not the load generator): the figure that transfers between a busy
            # and an idle machine, unlike the measured rate.
            "cpu_bound_events_per_s": report.rnd(cores * 1000 / system_ms * events_per_journey)
            if system_ms
            else None,
            "notify_p50_ms": report.rnd(report.percentile(ms, 50)),
            "notify_p99_ms": report.rnd(report.percentile(ms, 99)),
            "notify_matched": len(ms),
            # Share of one core each process used over the whole ramp (up to and past the knee):
            # which process ran out of CPU first.
            "ramp_cores_used": {
                k: round(v / ramp_wall, 2)
                for k, v in ramp.cpu.items()
                if k in ("api", "devserver", "workers", "bench")
            },
            "steady_cores_used": {
                k: round(v / wall, 2)
                for k, v in steady.cpu.items()
                if k in ("api", "devserver", "workers", "bench")
            },
            # Other work on a shared machine takes cores from ours: read rates with this.
            "loadavg_1m_ramp": [round(load_before, 2), round(load_after, 2)],
            "ramp": info,
        }


def bottleneck(rows: list[dict[str, Any]], cores: int) -> str:
    """A sentence: which process used the CPU over each ramp (averaged over all its steps, the
    low ones too, so the machine looks less busy than it was at the knee), and the CPU per
    journey, which says which process a faster box would have to feed first."""
    if not rows:
        return "no measurement"
    parts = []
    for r in rows:
        used = r["ramp_cores_used"]
        total = sum(used.values())
        top = max(used, key=lambda k: used[k])
        text = (
            f"{r['workers']} worker(s): {total:.2f} of {cores} cores busy on average over the ramp "
            f"(dev server {used.get('devserver', 0):.2f}, workers {used.get('workers', 0):.2f}, "
            f"API {used.get('api', 0):.2f}, load generator {used.get('bench', 0):.2f}); most: {top}; per "
            f"journey: dev server {r['devserver_cpu_ms_per_journey']} ms, workers {r['worker_cpu_ms_per_journey']} ms, "
            f"API {r['api_cpu_ms_per_journey']} ms"
        )
        load = max(r.get("loadavg_1m_ramp") or [0.0])
        if total < 0.8 * cores and load > 1.5 * cores:
            text += (
                f"; other work shared the machine (load average up to {load:.1f} on {cores} cores): "
                "this rate is bounded by the shared machine as much as by our processes"
            )
        parts.append(text)
    return "; ".join(parts)


SCALE_DEFINITIONS = {
    "events_per_s": "maximum sustained rate of journey events through the HTTP API with N `ndrflow worker` processes (same ramp criteria as the main benchmark)",
    "worker_cpu_ms_per_journey": "CPU milliseconds all worker processes together spent per journey while held at half of that N's maximum",
    "notify_p99_ms": "carrier push posted → message row in the outbox, 99th percentile, at half of that N's maximum",
    "ramp_cores_used": "CPU seconds per wall second of each process over the ramp (1.0 = one core busy)",
}


def print_table(console: Console, result: dict[str, Any]) -> None:
    t = Table(title="ndrflow: throughput by worker processes")
    for col in (
        "workers",
        "events/s",
        "×1 worker",
        "worker CPU ms/journey",
        "dev server ms/j",
        "API ms/j",
        "notify p99 ms",
        "cores busy (ramp)",
        "idle-core bound ev/s",
    ):
        t.add_column(col, justify="right")
    for r in result["details"]["scaling"]:
        t.add_row(
            str(r["workers"]),
            report._fmt(r["events_per_s"]) + ("" if r["saturated"] else " (cap)"),
            report._fmt(r["speedup"]),
            report._fmt(r["worker_cpu_ms_per_journey"]),
            report._fmt(r["devserver_cpu_ms_per_journey"]),
            report._fmt(r["api_cpu_ms_per_journey"]),
            report._fmt(r["notify_p99_ms"]),
            f"{sum(r['ramp_cores_used'].values()):.2f}",
            report._fmt(r["cpu_bound_events_per_s"]),
        )
    console.print(t)
    for n in result["notes"]:
        console.print(f"[dim]- {n}[/dim]")


def plot(result: dict[str, Any], path: Path | None = None) -> Path | None:
    """Throughput per worker count, and where each journey's CPU goes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = result["details"]["scaling"]
    path = path or report.RESULTS / "scaling.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = [str(r["workers"]) for r in rows]
    ax1.bar(xs, [r["events_per_s"] or 0 for r in rows], color="tab:blue")
    bound = [r.get("cpu_bound_events_per_s") or 0 for r in rows]
    if any(bound):
        ax1.plot(xs, bound, "k--", marker="o", label="bound: cores / CPU per journey (idle machine)")
        ax1.legend(fontsize=8, loc="lower right")
    for i, r in enumerate(rows):
        label = f"{r['events_per_s'] or 0:.0f}" + ("" if r["saturated"] else " (cap)")
        label += f"\np99 {r['notify_p99_ms'] or 0:.0f} ms"
        ax1.text(i, (r["events_per_s"] or 0), label, ha="center", va="bottom", fontsize=8)
    ax1.set_ylim(0, 1.3 * max([r["events_per_s"] or 0 for r in rows] + bound + [1.0]))
    ax1.set_xlabel("`ndrflow worker` processes")
    ax1.set_ylabel("max sustained journey events/s")
    ax1.set_title(f"Throughput ({result['cores']} cores, one dev server, one API process)")
    bottom = [0.0] * len(rows)
    for key, label, color in (
        ("devserver_cpu_ms_per_journey", "Temporal dev server", "tab:gray"),
        ("worker_cpu_ms_per_journey", "workers", "tab:blue"),
        ("api_cpu_ms_per_journey", "API", "tab:green"),
        ("bench_cpu_ms_per_journey", "load generator", "tab:orange"),
    ):
        vals = [r[key] or 0 for r in rows]
        ax2.bar(xs, vals, bottom=bottom, label=label, color=color)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax2.set_xlabel("`ndrflow worker` processes")
    ax2.set_ylabel("CPU ms per journey (steady, half of max)")
    ax2.set_title("Where each journey's CPU goes")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


async def amain(cfg: ScaleConfig) -> dict[str, Any]:
    console = Console()
    run = ScaleRun(cfg, console)
    result = await run.execute()
    path = report.write_json(result, report.RESULTS / "scaling.json")
    png = plot(result)
    print_table(console, result)
    console.print(f"wrote {path}" + (f" and {png}" if png else " (no plot: matplotlib missing)"))
    return result
