"""The Temporal worker: every workflow and activity ndrflow runs, on one task queue.

Adding an area's activities means one line in `all_activities` (the worker builds each activity
class once with its dependencies). Sync activities (store writes through SQLAlchemy) run on the
thread pool given as `activity_executor`; async ones run on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from ndrflow.config import Settings

# Threads for sync activities. Most are short store writes; providers' HTTP calls (Twilio,
# SendGrid, carriers) also block a thread for up to their timeout, hence more than cores.
ACTIVITY_THREADS = 32


def all_workflows() -> list[type]:
    from workflows.shipment import ShipmentWorkflow

    return [ShipmentWorkflow]


def all_activities(settings: Settings, engine: Engine) -> list[Callable[..., Any]]:
    """Every activity callable the worker registers (local activities included: a workflow may
    only run a local activity its own worker registered)."""
    from activities.readmodel import ReadModelActivities

    readmodel = ReadModelActivities(engine)
    activities: list[Callable[..., Any]] = [readmodel.sync_read_model]
    # ---- HOOK (lead): other areas' activities go here, e.g.
    # notify = NotifyActivities(settings, engine, channels.registry(settings)); activities += [notify.send_notification]
    # instruct = InstructActivities(settings, engine, carriers.registry(settings)); activities += [instruct.forward_instruction]
    return activities


def build_worker(
    client: Client,
    settings: Settings,
    engine: Engine,
    *,
    extra_activities: Sequence[Callable[..., Any]] = (),
    activity_executor: ThreadPoolExecutor | None = None,
    **worker_options: Any,
) -> Worker:
    """A worker on `settings.temporal_task_queue` with every workflow and activity.

    `extra_activities` are added after (tests register fakes; an activity with the same name as a
    real one replaces it). `worker_options` pass through to `temporalio.worker.Worker`
    (tuning: max_concurrent_*, max_cached_workflows, workflow_runner, ...).
    """
    by_name: dict[str, Callable[..., Any]] = {}
    for fn in [*all_activities(settings, engine), *extra_activities]:
        by_name[_activity_name(fn)] = fn
    options = worker_tuning(**worker_options)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=all_workflows(),
        activities=list(by_name.values()),
        activity_executor=activity_executor or activity_executor_for(options),
        **options,
    )


def worker_tuning(**overrides: Any) -> dict[str, Any]:
    """The Worker options ndrflow runs with. The benchmark's engine baseline (bench/baseline.py)
    builds its worker from the same function, so both sides of every ratio run the same tuning.
    `overrides` win (tests, `Stack(worker_options=...)`)."""
    options: dict[str, Any] = {
        "max_concurrent_activities": ACTIVITY_THREADS,
        "max_concurrent_local_activities": ACTIVITY_THREADS,
    }
    options.update(overrides)
    return options


def activity_executor_for(options: dict[str, Any]) -> ThreadPoolExecutor:
    # Local and regular activities share the pool: size it for both so a task never waits for
    # a thread while its start-to-close timeout runs. Threads are created lazily.
    return ThreadPoolExecutor(
        max_workers=options["max_concurrent_activities"] + options["max_concurrent_local_activities"],
        thread_name_prefix="activity",
    )


def _activity_name(fn: Callable[..., Any]) -> str:
    from temporalio.activity import _Definition

    defn = _Definition.from_callable(fn)
    if defn is None or defn.name is None:
        raise ValueError(f"{fn!r} is not an @activity.defn with a name")
    return defn.name
