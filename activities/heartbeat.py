"""Heartbeats for activities that talk to providers and carriers.

A worker that dies (SIGKILL, OOM, a lost host) takes its running activities with it, and the
server only notices when a timeout runs out. With start-to-close alone that is the whole 60–90 s
budget of an HTTP call and its retries; with a heartbeat timeout it is a few seconds, after which
the retry runs on another worker. The exactly-once machinery (notification_log's lease and
reconciliation, carrier_instructions' key) makes the retry safe, as it does for any retry.

`heartbeating()` beats from a background task while the work runs (the work itself may sit in a
thread or in one long HTTP call, so it cannot beat between steps). The SDK throttles what reaches
the server to 0.8 × the heartbeat timeout, so beating often costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity

# The workflow sets the heartbeat timeout (workflows/shipment.py HEARTBEAT). An attempt the
# server timed out while it still ran (a Temporal restart longer than that) is no different from
# any overlapping retry: the notification lease and the instruction row decide who sends.
BEAT_EVERY_S = 1.0


@contextlib.asynccontextmanager
async def heartbeating(every_s: float | None = None) -> AsyncIterator[None]:
    """Heartbeat every `every_s` (default BEAT_EVERY_S) while the body runs. A no-op outside an
    activity (direct calls in tests) and in local activities (they have no heartbeats)."""
    if not activity.in_activity() or activity.info().is_local:
        yield
        return
    every = every_s or BEAT_EVERY_S

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat(), name="heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
