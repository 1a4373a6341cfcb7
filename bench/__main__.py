"""`python -m bench [--quick] [--profile]` and `python -m bench --scale` (what `make bench` runs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bench.run import Config, amain


def main() -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="ndrflow benchmark: the whole pipeline against the bare Temporal engine, in one run.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="at most 2 minutes (fewer, shorter phases; RSS at 10k extrapolated)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the worker processes with py-spy during the ramps and steady phases",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="instead: throughput with 1, 2 and 4 `ndrflow worker` processes (at most 10 minutes; "
        "bench/results/scaling.{json,png})",
    )
    p.add_argument(
        "--workers",
        default="1,2,4",
        help="with --scale: the worker process counts to measure (comma-separated)",
    )
    p.add_argument("--seed", type=int, default=7, help="journey generator seed (same seed, same journeys)")
    p.add_argument(
        "--database-url", default="", help="run the stack on this database instead of a fresh SQLite file"
    )
    p.add_argument(
        "--keep-home",
        action="store_true",
        help="keep the stack's temporary home (logs, databases) for inspection",
    )
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.scale:
        from bench.scale import ScaleConfig
        from bench.scale import amain as scale_main

        workers = tuple(int(x) for x in a.workers.split(",") if x.strip())
        try:
            asyncio.run(scale_main(ScaleConfig(seed=a.seed, keep_home=a.keep_home, workers=workers)))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        return 0
    cfg = Config(
        quick=a.quick, seed=a.seed, profile=a.profile, database_url=a.database_url, keep_home=a.keep_home
    )
    try:
        asyncio.run(amain(cfg))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
