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
from workflows.sandbox import workflow_runner

# Threads for sync activities. Most are short store writes; providers' HTTP calls (Twilio,
# SendGrid, carriers) also block a thread for up to their timeout, hence more than cores.
ACTIVITY_THREADS = 32


def all_workflows() -> list[type]:
    from workflows.shipment import ShipmentWorkflow

    return [ShipmentWorkflow]


def all_activities(settings: Settings, engine: Engine, carrier_settings: Any = None) -> list[Callable[..., Any]]:
    """Every activity callable the main worker registers (local activities included: a workflow
    may only run a local activity its own worker registered). Message sends run inline (a local
    activity, while the shared send budget has room) or on their own rate-limited task queue:
    see `notify_worker` and docs/performance.md."""
    from activities.attention import AttentionActivities
    from activities.instruct import InstructActivities
    from activities.ndr_routes import NdrRouteActivities
    from activities.notify import NotifyActivities
    from activities.poll import PollActivities
    from activities.readmodel import ReadModelActivities
    from carriers.settings import CarrierSettings
    from channels.settings import ChannelSettings
    from ndrflow.ndr_settings import get_ndr_settings

    carrier_settings = carrier_settings or CarrierSettings()
    readmodel = ReadModelActivities(engine)
    instruct = InstructActivities(engine, carrier_settings, send_email=ops_email_sender(settings, engine))
    poll = PollActivities(carrier_settings)
    routes = NdrRouteActivities(
        engine, inbound_email_domain=get_ndr_settings().inbound_email_domain, reply_key_secret=settings.secret_key
    )
    attention = AttentionActivities(engine)
    # Same settings as build_notify_worker: the same secret signs links whichever path sends.
    notify = NotifyActivities(engine, ChannelSettings.from_settings(settings), routes=routes)
    return [
        readmodel.sync_read_model,
        instruct.send_carrier_instruction,
        instruct.email_carrier_ops,
        poll.poll_carrier_tracking,
        routes.open_reply_route,
        routes.close_reply_route,
        attention.record_attention,
        notify.send_notification_inline,
    ]


def ops_email_sender(settings: Settings, engine: Engine) -> Callable[[str, str, str], None]:
    """The carrier-operations fallback email goes through the email channel (SendGrid, or the
    local outbox when no SendGrid key is configured)."""
    from channels.base import OutboundMessage
    from channels.registry import ChannelRegistry
    from channels.settings import ChannelSettings

    channel_settings = ChannelSettings()
    registry = ChannelRegistry(channel_settings)

    def send(to: str, subject: str, text: str) -> None:
        import hashlib

        key = "ops:" + hashlib.sha256(f"{to}\x1f{subject}\x1f{text}".encode()).hexdigest()[:32]
        registry.provider("email").send(
            OutboundMessage(key=key, shipment_id="", channel="email", purpose="carrier_ops", locale="en", to=to, body=text, subject=subject),
            channel_settings,
            engine,
        )

    return send


def build_worker(
    client: Client,
    settings: Settings,
    engine: Engine,
    *,
    extra_activities: Sequence[Callable[..., Any]] = (),
    activity_executor: ThreadPoolExecutor | None = None,
    carrier_settings: Any = None,
    **worker_options: Any,
) -> Worker:
    """A worker on `settings.temporal_task_queue` with every workflow and activity.

    `extra_activities` are added after (tests register fakes; an activity with the same name as a
    real one replaces it). `worker_options` pass through to `temporalio.worker.Worker`
    (tuning: max_concurrent_*, max_cached_workflows, workflow_runner, ...).
    """
    by_name: dict[str, Callable[..., Any]] = {}
    for fn in [*all_activities(settings, engine, carrier_settings), *extra_activities]:
        by_name[_activity_name(fn)] = fn
    options = worker_tuning(settings, **worker_options)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=all_workflows(),
        activities=list(by_name.values()),
        activity_executor=activity_executor or activity_executor_for(options),
        **options,
    )


def worker_tuning(settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    """The Worker options ndrflow runs with. The benchmark's engine baseline (bench/baseline.py)
    builds its worker from the same function, so both sides of every ratio run the same tuning.
    `overrides` win (tests, `Stack(worker_options=...)`)."""
    settings = settings or Settings()
    options: dict[str, Any] = {
        "max_concurrent_activities": ACTIVITY_THREADS,
        "max_concurrent_local_activities": ACTIVITY_THREADS,
        "max_cached_workflows": settings.max_cached_workflows,
        "workflow_runner": workflow_runner(strict=settings.workflow_sandbox == "strict"),
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


def build_notify_worker(client: Client, settings: Settings, engine: Engine, *, task_queue: str | None = None) -> Worker:
    """The provider-send worker: its own task queue with `max_task_queue_activities_per_second`,
    which the server enforces across every worker polling it (provider rate limits hold)."""
    from activities.notify import notify_worker
    from channels.settings import ChannelSettings

    # From the app's settings: the worker signs self-service links with the same secret key.
    return notify_worker(client, engine, ChannelSettings.from_settings(settings), task_queue=task_queue)
