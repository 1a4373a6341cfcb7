"""`python -m chaos [--shipments N] [--budget S]` (what `make chaos` runs)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from rich.console import Console
from rich.table import Table

from chaos.run import RESULTS, amain

KEYS = (
    "shipments",
    "messages_expected",
    "messages_sent",
    "messages_duplicated",
    "messages_lost",
    "instructions_expected",
    "instructions_received",
    "instructions_duplicated",
    "instructions_lost",
)


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m chaos", description="ndrflow chaos run and exactly-once audit."
    )
    p.add_argument(
        "--shipments", type=int, default=1000, help="journeys to run (scaled down to fit --budget)"
    )
    p.add_argument("--budget", type=float, default=600.0, help="time budget in seconds (default 600)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--keep-home", action="store_true", help="keep the temporary home (logs, databases)")
    a = p.parse_args()
    console = Console()
    try:
        result = asyncio.run(amain(a.shipments, a.budget, a.seed, a.keep_home, console))
    except KeyboardInterrupt:
        return 130
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2, default=str))
    t = Table(title="chaos run")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k in KEYS:
        t.add_row(k, str(result.get(k)))
    t.add_row("faults", ", ".join(f"{k}={v}" for k, v in sorted(result.get("faults", {}).items())))
    d = result["details"]
    t.add_row("final state wrong", str(d["final_state_wrong"]))
    t.add_row(
        "still in flight at the audit",
        f"{d['shipments_pending']} shipments ({d['messages_pending']} messages, "
        f"{d['instructions_pending']} instructions, {d['final_state_pending']} final states)",
    )
    t.add_row("elapsed", f"{d['elapsed_s']} s")
    console.print(t)
    console.print(f"saved {RESULTS / 'latest.json'}")
    bad = (
        result["messages_duplicated"]
        + result["messages_lost"]
        + result["instructions_duplicated"]
        + result["instructions_lost"]
        + d["final_state_wrong"]
    )
    if d["shipments_pending"]:
        console.print(
            f"[yellow]{d['shipments_pending']} shipments still had work in flight when the budget ran "
            "out: not proven either way (raise --budget).[/yellow]"
        )
    return 1 if bad or d["shipments_pending"] else 0


if __name__ == "__main__":
    sys.exit(main())
