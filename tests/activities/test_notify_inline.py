"""The inline send (activities/notify.py `send_notification_inline`) against the real store and
outbox: it shares the queue activity's exactly-once row, declines whatever it should not touch,
and spends the provider budget shared with the notify queue (store/send_budget.py)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import ActivityEnvironment

from activities.ndr_routes import NdrRouteActivities
from activities.notify import NotifyActivities
from channels import outbox
from channels.base import ChannelError, SendResult
from channels.registry import ChannelRegistry
from channels.settings import ChannelSettings
from store import ndr as ndr_store
from store import notifications as ns
from store import send_budget
from store.models import Shipment
from tests.activities.test_notify import LOCAL, NDR_SETTINGS, add_shipment, inp, ndr_ctx, run
from workflows.messages import (
    CloseReplyRouteInput,
    InlineSendInput,
    InlineSendResult,
    OpenReplyRouteInput,
    SyncReadModelInput,
)

BUDGET = "test-notify"


def inline(acts: NotifyActivities, send: Any = None, budget: str = BUDGET, **kw: Any) -> InlineSendResult:
    return ActivityEnvironment().run(acts.send_notification_inline, InlineSendInput(send=send or inp(), budget=budget, **kw))


def settings(rate: float) -> ChannelSettings:
    return LOCAL.model_copy(update={"notify_max_per_second": rate})


def test_inline_sends_once_and_a_second_run_returns_the_record(engine: Engine) -> None:
    # A local activity can run twice for one message: the worker died after the provider took it
    # but before the workflow task recorded the marker. The row answers the second run.
    add_shipment(engine)
    acts = NotifyActivities(engine, LOCAL)
    first = inline(acts)
    again = inline(acts)
    assert first.result is not None and first.result.status == "sent"
    assert again.result == first.result
    assert len(ns.list_outbox(engine)) == 1


async def test_inline_and_queue_share_one_row(engine: Engine) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, LOCAL)
    sent = inline(acts).result
    assert sent is not None
    assert await run(acts, inp()) == sent  # the queue's activity, later: the recorded result
    assert len(ns.list_outbox(engine)) == 1


async def test_no_budget_declines_without_touching_the_provider_then_the_queue_sends_once(engine: Engine) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, settings(1.0))
    assert send_budget.take(engine, BUDGET, rate=1.0, burst=1.0)  # another process spent this second
    out = inline(acts)
    assert out.result is None and "budget" in out.why_not
    assert ns.list_outbox(engine) == []
    assert ns.get_notification(engine, inp().key).status == "pending"  # claimed, nothing in flight
    queued = await run(acts, inp())
    assert queued.status == "sent" and len(ns.list_outbox(engine)) == 1


def test_skips_need_no_budget(engine: Engine) -> None:
    # An opted-out recipient never reaches a provider: answered inline even with no budget left.
    add_shipment(engine)
    ns.set_opt_out(engine, channel="sms", address="+919876543210", opted_out=True, source="keyword", keyword="STOP")
    acts = NotifyActivities(engine, settings(1.0))
    send_budget.take(engine, BUDGET, rate=1.0, burst=1.0)
    out = inline(acts)
    assert out.result is not None and (out.result.status, out.result.error_code) == ("skipped", "opted_out")


class Busy:
    """A provider answering 429 (not taken) or timing out after taking it (maybe sent)."""

    PROVIDER = "outbox"

    def __init__(self, maybe_sent: bool) -> None:
        self.maybe_sent = maybe_sent
        self.calls = 0

    def send(self, msg, settings, engine=None) -> SendResult:  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.maybe_sent:
            outbox.send(msg, settings, engine)
            raise ChannelError("timeout", False, "read timed out", maybe_sent=True)
        raise ChannelError("429", False, "too many requests", retry_after=2)

    def reconcile(self, msg, settings, engine, since, exclude_ids):  # type: ignore[no-untyped-def]
        return outbox.reconcile(msg, settings, engine, since, exclude_ids)


async def test_a_429_inline_leaves_the_row_to_the_queue(engine: Engine) -> None:
    add_shipment(engine)
    busy = Busy(maybe_sent=False)
    acts = NotifyActivities(engine, LOCAL, ChannelRegistry(LOCAL, {"outbox": busy}))
    out = inline(acts)
    assert out.result is None and "429" in out.why_not and busy.calls == 1
    assert ns.get_notification(engine, inp().key).status == "pending"
    healthy = NotifyActivities(engine, LOCAL)
    assert (await run(healthy, inp())).status == "sent"
    assert len(ns.list_outbox(engine)) == 1


async def test_a_timeout_inline_is_reconciled_by_the_queue_not_sent_twice(engine: Engine) -> None:
    add_shipment(engine)
    busy = Busy(maybe_sent=True)
    acts = NotifyActivities(engine, LOCAL, ChannelRegistry(LOCAL, {"outbox": busy}))
    out = inline(acts)
    assert out.result is None and ns.get_notification(engine, inp().key).status == "unknown"
    # A second inline try (the workflow task retried) must not send blind: it declines.
    again = inline(acts)
    assert again.result is None and "unknown" in again.why_not and busy.calls == 1
    res = await run(acts, inp())  # the queue's activity reconciles: the outbox has it
    assert res.status == "sent" and res.reason == "reconciled"
    assert len(ns.list_outbox(engine)) == 1


def test_the_read_model_and_reply_routes_are_written_first_whatever_the_send_does(engine: Engine) -> None:
    add_shipment(engine)
    routes = NdrRouteActivities(engine, reply_key_secret="k")
    acts = NotifyActivities(engine, NDR_SETTINGS.model_copy(update={"notify_max_per_second": 1.0}), routes=routes)
    sync = SyncReadModelInput(shipment_id="shp_test1", status="delivery_failed", last_event_at=None, ndr_state="asking",
                              needs_attention=False, attention_reason=None)
    opened = [OpenReplyRouteInput(shipment_id="shp_test1", attempt=1)]
    send_budget.take(engine, BUDGET, rate=1.0, burst=1.0)  # the send itself is declined
    out = inline(acts, inp("sms", "ndr_ask", "ndr1:ask", **ndr_ctx()), sync=sync, open_routes=opened,
                 close_routes=[CloseReplyRouteInput(shipment_id="shp_test1", attempt=7)])
    assert out.result is None and out.synced and out.routes_written
    [route] = out.routes
    with Session(engine) as s:
        row = s.get(Shipment, "shp_test1")
        assert row is not None and (row.status, row.ndr_state) == ("delivery_failed", "asking")
        stored = ndr_store.case_route(s, shipment_id="shp_test1", attempt=1)
        assert stored is not None and stored.ref == route.ref
    # With budget: the question names the case opened in the same call (reopening is idempotent).
    ask = inp("sms", "ndr_ask", "ndr1:ask2", **ndr_ctx())
    out = inline(acts, ask, budget="unspent", open_routes=opened)
    assert out.result is not None and out.result.status == "sent"
    assert out.routes[0].ref == route.ref and ask.context["case_ref"] == route.ref


def test_budget_admits_a_burst_then_the_rate(engine: Engine) -> None:
    t = 1_000_000.0
    assert [send_budget.take(engine, "b", rate=10, burst=3, now=t) for _ in range(4)] == [True, True, True, False]
    assert not send_budget.take(engine, "b", rate=10, burst=3, now=t + 0.05)
    assert send_budget.take(engine, "b", rate=10, burst=3, now=t + 0.1)  # one token back per 1/rate
    assert not send_budget.take(engine, "b", rate=10, burst=3, now=t + 0.1)
    assert not send_budget.take(engine, "b", rate=0, burst=3, now=t + 60)  # no rate: nothing inline


def test_queue_sends_use_up_the_budget_inline_sends_see(engine: Engine) -> None:
    # The queue keeps its whole rate (the server admits it); inline gets only what is left.
    t = 2_000_000.0
    for _ in range(5):
        send_budget.debit(engine, "q", rate=5, now=t)
    assert not send_budget.take(engine, "q", rate=5, burst=5, now=t)
    assert not send_budget.take(engine, "q", rate=5, burst=5, now=t + 0.19)
    assert send_budget.take(engine, "q", rate=5, burst=5, now=t + 0.2)


async def test_a_queue_send_debits_the_budget(engine: Engine) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, settings(1.0), budget_name=BUDGET)
    assert (await run(acts, inp())).status == "sent"
    assert not send_budget.take(engine, BUDGET, rate=1.0, burst=1.0)


def test_concurrent_takes_never_exceed_the_burst(engine: Engine) -> None:
    t = 3_000_000.0
    admitted: list[bool] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(5):
            ok = send_budget.take(engine, "c", rate=1, burst=4, now=t)
            with lock:
                admitted.append(ok)

    threads = [threading.Thread(target=grab) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert admitted.count(True) == 4 and len(admitted) == 30
