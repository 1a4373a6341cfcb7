"""Results: the fixed-contract JSON, the table on the terminal, the plot."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"

# The keys outside tools read (issue 7); never rename.
CONTRACT_KEYS = (
    "events_per_s",
    "baseline_events_per_s",
    "ratio",
    "notify_p50_ms",
    "notify_p99_ms",
    "baseline_p99_ms",
    "reply_to_instruction_p99_ms",
    "worker_rss_mb_10k_open",
    "history_events_per_journey",
    "cases_query_ms",
)

TARGETS = {
    "ratio": ("≥ 0.8", lambda r: r["ratio"] >= 0.8),
    "notify_p99_ms": ("≤ 2 × baseline_p99_ms", lambda r: r["notify_p99_ms"] <= 2 * r["baseline_p99_ms"]),
    "worker_rss_mb_10k_open": ("≤ 300", lambda r: r["worker_rss_mb_10k_open"] <= 300),
    "history_events_per_journey": ("≤ 60", lambda r: r["history_events_per_journey"] <= 60),
    "cases_query_ms": ("≤ 200", lambda r: r["cases_query_ms"] <= 200),
}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rnd(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


def evaluate_targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, (text, check) in TARGETS.items():
        try:
            met: bool | None = bool(check(r))
        except (TypeError, KeyError):
            met = None  # a figure is missing
        out[key] = {"target": text, "value": r.get(key), "met": met}
    return out


def write_json(result: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "[dim]n/a[/dim]"
    if isinstance(v, float):
        v = f"{v:,.1f}"
    return f"{v}{unit}"


def print_table(console: Console, r: dict[str, Any]) -> None:
    d = r.get("details", {})
    t = Table(
        title=f"ndrflow benchmark ({r.get('mode')}) — medians of one run on {r['machine'].get('cores')} shared cores",
        show_lines=False,
    )
    t.add_column("metric")
    t.add_column("ndrflow", justify="right")
    t.add_column("engine baseline", justify="right")
    t.add_column("target", justify="right")
    t.add_column("", justify="center")
    tg = r.get("targets", {})

    def mark(key: str) -> str:
        met = tg.get(key, {}).get("met")
        return "[green]✓[/green]" if met else ("[red]✗[/red]" if met is False else "[dim]–[/dim]")

    t.add_row(
        "max sustained journey events/s",
        _fmt(r.get("events_per_s")),
        _fmt(r.get("baseline_events_per_s")),
        "",
        "",
    )
    t.add_row(
        "ratio (ndrflow / baseline)",
        _fmt(r.get("ratio") and round(r["ratio"], 2)),
        "",
        "≥ 0.8",
        mark("ratio"),
    )
    cpu = d.get("cpu_ms_per_journey", {})
    t.add_row(
        "worker CPU per journey (ms)",
        _fmt(cpu.get("pipeline_process")),
        _fmt(cpu.get("baseline_worker")),
        "",
        "",
    )
    t.add_row(
        "dev server CPU per journey (ms)",
        _fmt(cpu.get("devserver_pipeline")),
        _fmt(cpu.get("devserver_baseline")),
        "",
        "",
    )
    t.add_row("notify p50 (ms)", _fmt(r.get("notify_p50_ms")), _fmt(d.get("baseline_p50_ms")), "", "")
    t.add_row(
        "notify p99 (ms)",
        _fmt(r.get("notify_p99_ms")),
        _fmt(r.get("baseline_p99_ms")),
        "≤ 2 × baseline",
        mark("notify_p99_ms"),
    )
    t.add_row(
        "reply → carrier instruction p99 (ms)",
        _fmt(r.get("reply_to_instruction_p99_ms")),
        _fmt(d.get("baseline_reply_p99_ms")),
        "",
        "",
    )
    t.add_row(
        "worker RSS at 10k open (MB)",
        _fmt(r.get("worker_rss_mb_10k_open")),
        _fmt(d.get("baseline_worker_rss_mb")),
        "≤ 300",
        mark("worker_rss_mb_10k_open"),
    )
    t.add_row(
        "history events per NDR journey",
        _fmt(r.get("history_events_per_journey")),
        _fmt(d.get("baseline_history_events_per_journey")),
        "≤ 60",
        mark("history_events_per_journey"),
    )
    t.add_row("agents' queue query (ms)", _fmt(r.get("cases_query_ms")), "", "≤ 200", mark("cases_query_ms"))
    console.print(t)
    m = r["machine"]
    console.print(
        f"[dim]{m.get('cpu_model', '')}, {m.get('cores')} cores, load {m.get('loadavg_start')} → {m.get('loadavg_end')}; "
        f"Python {m.get('python')}, temporalio {m.get('temporalio_version')}, Temporal server {m.get('temporal_server_version')} "
        f"(CLI {m.get('temporal_cli_version')})[/dim]"
    )
    for note in r.get("notes", []):
        console.print(f"[yellow]•[/yellow] {note}", highlight=False)


def plot(series: dict[str, Any], path: Path | None = None) -> Path | None:
    """Throughput (offered vs completed journey events/s) and latency over the run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    path = path or RESULTS / "latest.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(12, 10), sharex=True)
    ax1, ax2, ax3 = axes
    colors = {"pipeline": "tab:blue", "baseline": "tab:orange"}
    labelled: set[str] = set()
    for name, ph in series.get("phases", {}).items():
        c = colors.get(ph["target"], "gray")
        for ax in axes:
            ax.axvspan(ph["t0"], ph["t1"], color=c, alpha=0.06)
        ax1.text(ph["t0"], 1.0, f" {name}", transform=ax1.get_xaxis_transform(), fontsize=8, va="top")
        for key, style, what in (("offered", ":", "offered"), ("completed", "-", "completed")):
            pts = ph.get(key) or []
            label = f"{ph['target']}: {what}"
            if pts:
                ax1.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    color=c,
                    linestyle=style,
                    label=None if label in labelled else label,
                )
                labelled.add(label)
        for q, style in (("call_p50", "-"), ("call_p99", "--")):
            pts = ph.get(q) or []
            label = f"{ph['target']} call {q[5:]}"
            if pts:
                ax3.plot(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    color=c,
                    linestyle=style,
                    label=None if label in labelled else label,
                )
                labelled.add(label)
    ax1.set_ylabel("journey events/s")
    ax1.legend(loc="upper left", fontsize=8)
    ax1.set_title("Throughput (ramps to saturation, then steady at 50 % of the pipeline's maximum)")
    for key, label, color in (
        ("notify", "ndrflow: carrier event → message in outbox", "tab:blue"),
        ("baseline_notify", "baseline: signal → notify activity ran", "tab:orange"),
        ("reply", "ndrflow: customer reply → carrier instruction", "tab:green"),
        ("baseline_reply", "baseline: update → instruction activity ran", "tab:red"),
    ):
        pts = series.get(key, [])
        if pts:
            ax2.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, color=color, label=label, alpha=0.6)
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    ax2.legend(loc="upper left", fontsize=8)
    ax2.set_title("End-to-end latencies per event")
    ax3.set_ylabel("call latency (ms)")
    ax3.set_yscale("log")
    ax3.set_xlabel("seconds since start")
    ax3.legend(loc="upper left", fontsize=8)
    ax3.set_title(
        "Client call latency (HTTP request for ndrflow, Temporal call for the baseline), per second"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
