"""The benchmark's pure parts: journey generation, the history-derived baseline plan, the
statistics. Nothing here starts a server or measures time."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import phonenumbers
import pytest
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskScheduledEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    TimerStartedEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
    WorkflowExecutionUpdateAcceptedEventAttributes,
)
from temporalio.api.update.v1 import Input as UpdateInput
from temporalio.api.update.v1 import Request as UpdateRequest

from bench.journeys import DAY_NAMES, FAST, KINDS, REPLYING_KINDS, JourneyFactory, Mix, summarize
from bench.profile import breakdown, summarise
from bench.report import evaluate_targets, percentile
from bench.run import _extrapolate_rss
from bench.shape import classify_activity, lookup, shape_of, trigger_key
from carriers import registry
from carriers.base import WebhookRequest
from carriers.fake import payloads
from carriers.settings import CarrierSettings

TODAY = date(2026, 11, 26)  # a Thursday


def factory(**kw):  # type: ignore[no-untyped-def]
    args = dict(seed=11, run_tag="T1", merchant_id="bench-t1-a", today=TODAY, stream="s", phone_block=1)
    args.update(kw)
    return JourneyFactory(**args)


@pytest.fixture(scope="module")
def journeys():  # type: ignore[no-untyped-def]
    return factory().take(3000)


# ---- determinism -------------------------------------------------------------------------------


def test_same_seed_same_journeys_and_merchant_does_not_change_them() -> None:
    a = factory().take(200)
    b = factory().take(200)
    assert a == b
    # The pipeline and the baseline replay the same stream under different merchants.
    c = factory(merchant_id="bench-t1-bl").take(200)
    assert [(j.kind, j.carrier, j.tracking_number, j.steps) for j in a] == [
        (j.kind, j.carrier, j.tracking_number, j.steps) for j in c
    ]
    # Journey 150 does not depend on which journeys were generated before it.
    assert factory().make(150) == a[150]


def test_another_seed_gives_other_journeys() -> None:
    a = factory().take(100)
    b = factory(seed=12).take(100)
    assert [j.steps for j in a] != [j.steps for j in b]


# ---- the mix -----------------------------------------------------------------------------------


def test_mix_shares(journeys) -> None:  # type: ignore[no-untyped-def]
    s = summarize(journeys)
    assert s.journeys == 3000
    assert 0.17 <= s.ndr_share <= 0.23  # 20 % NDR
    ndr = sum(v for k, v in s.kinds.items() if k != "normal")
    replied = sum(s.kinds[k] for k in REPLYING_KINDS)
    assert 0.78 <= replied / ndr <= 0.92  # most answer, some never
    assert s.kinds["ndr_none"] > 0 and all(s.kinds[k] > 0 for k in REPLYING_KINDS)
    assert 0.04 <= s.duplicates / s.pushes <= 0.08
    assert 0.12 <= s.reordered / s.journeys <= 0.18
    assert 0 < s.held < 0.05 * s.journeys
    assert set(s.carriers) == {"generic", "delhivery", "shiprocket", "clickpost"}


def test_journey_structure(journeys) -> None:  # type: ignore[no-untyped-def]
    for j in journeys:
        kinds = [s.kind for s in j.steps]
        assert kinds.count("register") == 1
        scans = [sc.milestone for sc in j.scans]
        k = scans.count("in_transit")
        assert 1 <= k <= 4
        head = ["picked_up"] + ["in_transit"] * k + ["out_for_delivery"]
        if j.kind == "normal":
            assert scans == head + ["delivered"]
        else:
            assert scans == head + ["delivery_failed", "out_for_delivery", "delivered"]
            assert j.ndr_reason in {"customer_unavailable", "customer_unreachable", "reschedule_requested"}
        # Everything the carrier sends but a held early scan comes after the registration.
        reg = kinds.index("register")
        assert all(s.held for s in j.steps[:reg])
        # The journey ends with its delivered push (a late duplicate may follow).
        final = j.steps[j.final_step]
        assert final.scan.milestone == "delivered"
        assert all(s.duplicate for s in j.steps[j.final_step + 1 :])
        # Sending times never go backwards.
        assert [s.at for s in j.steps] == sorted(s.at for s in j.steps)
        assert j.events == 1 + len(j.scans) + kinds.count("reply")


def test_duplicates_redeliver_an_earlier_push(journeys) -> None:  # type: ignore[no-untyped-def]
    seen = 0
    for j in journeys:
        for i, s in enumerate(j.steps):
            if s.duplicate:
                seen += 1
                first = [
                    p
                    for p in j.steps[:i]
                    if p.scan and p.scan.event_id == s.scan.event_id and not p.duplicate
                ]
                assert first, "a duplicate must follow the push it repeats"
                assert not s.reaches_temporal and not s.counts_as_event
    assert seen > 0


def test_reordered_journeys_deliver_a_late_scan(journeys) -> None:  # type: ignore[no-untyped-def]
    reordered = [j for j in journeys if j.reordered]
    assert reordered
    for j in reordered:
        sent = [s.scan.scan_at for s in j.steps if s.kind == "push" and not s.duplicate and not s.held]
        assert sent != sorted(sent), "some scan must arrive after a later one"
    for j in journeys:
        if not j.reordered:
            sent = [s.scan.scan_at for s in j.steps if s.kind == "push" and not s.duplicate]
            assert sent == sorted(sent)


def test_replies(journeys) -> None:  # type: ignore[no-untyped-def]
    for j in journeys:
        replies = [s for s in j.steps if s.kind == "reply"]
        if j.kind not in REPLYING_KINDS:
            assert not replies
            continue
        assert replies[-1].decisive and not any(r.decisive for r in replies[:-1])
        assert replies[0].wait_for_ask
        failed_at = next(s.at for s in j.steps if s.scan and s.scan.milestone == "delivery_failed")
        assert all(r.at > failed_at for r in replies)
        if j.kind == "ndr_1":
            assert [r.text for r in replies] == ["1"]
        elif j.kind == "ndr_2day" and not j.customer.locale.startswith("ko"):
            assert replies[0].text == "2"
            day = replies[1].text
            ahead = (DAY_NAMES.index(day) - TODAY.weekday()) % 7
            assert 2 <= ahead <= 5, "inside the carrier's window, never today or past"
        elif j.kind == "ndr_free":
            assert len(replies) == 1 and len(replies[0].text) > 3


def test_no_replies_when_the_webhook_is_missing() -> None:
    js = factory(replies=False).take(500)
    assert not any(s.kind == "reply" for j in js for s in j.steps)
    assert {j.kind for j in js} <= {"normal", "ndr_none"}


def test_forced_kinds_for_calibration() -> None:
    f = factory(mix=Mix(duplicate_rate=0, reorder_rate=0, early_scan_rate=0, in_transit=(2, 2)))
    for i, k in enumerate(KINDS):
        j = f.make(i, kind=k)
        assert j.kind == k
        assert not any(s.duplicate or s.held for s in j.steps)


def test_customers_have_valid_unique_mobile_numbers(journeys) -> None:  # type: ignore[no-untyped-def]
    phones = [j.customer.phone for j in journeys]
    assert len(set(phones)) == len(phones)
    assert len({j.customer.email for j in journeys}) == len(journeys)
    for p in phones[:200]:
        n = phonenumbers.parse(p)
        assert phonenumbers.is_valid_number(n)
        assert phonenumbers.number_type(n) in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        )
    other = factory(stream="t", phone_block=2).take(200)
    assert not set(phones) & {j.customer.phone for j in other}
    for country in ("SG", "AE", "GB", "KR"):
        j = factory(country=country).make(3)
        assert phonenumbers.region_code_for_number(phonenumbers.parse(j.customer.phone)) == country


def test_registration_body_is_the_api_contract(journeys) -> None:  # type: ignore[no-untyped-def]
    body = journeys[0].registration_body()
    assert set(body) >= {
        "merchant_id",
        "order_id",
        "carrier",
        "tracking_number",
        "payment",
        "customer",
        "address",
    }
    assert set(body["customer"]) >= {"name", "phone", "email", "locale"}
    assert body["payment"]["mode"] in ("cod", "prepaid")


def test_every_scan_becomes_a_signed_payload_the_api_reads_back(journeys) -> None:  # type: ignore[no-untyped-def]
    cfg = CarrierSettings(
        **{f"{c}_webhook_secret": "s3cret" for c in ("generic", "delhivery", "shiprocket", "clickpost")}
    )
    now = datetime.now(UTC)
    # Delhivery reports a pick-up as "In Transit"; every other milestone maps to itself.
    known_aliases = {("delhivery", "picked_up"): "in_transit"}
    for j in journeys[:300]:
        for s in j.steps:
            if s.scan is None:
                continue
            scan = payloads.Scan(
                j.tracking_number,
                s.scan.milestone,
                s.scan.ndr_reason,
                now + timedelta(seconds=s.scan.scan_at),
                event_id=s.scan.event_id,
            )
            body, headers = payloads.webhook(j.carrier, scan, "s3cret")
            req = WebhookRequest(body=body, headers={k.lower(): v for k, v in headers.items()}, query={})
            registry.verify_webhook(j.carrier, req, cfg)
            events, problems = registry.parse_webhook(j.carrier, req)
            assert not problems
            assert events[0].tracking_number == j.tracking_number
            assert events[0].milestone == known_aliases.get((j.carrier, s.scan.milestone), s.scan.milestone)
            assert events[0].ndr_reason == s.scan.ndr_reason


# ---- the baseline plan from a history ------------------------------------------------------------

E = EventType


def _ev(et: int, **attrs) -> HistoryEvent:  # type: ignore[no-untyped-def]
    return HistoryEvent(event_type=et, **attrs)


def _json(value) -> Payloads:  # type: ignore[no-untyped-def]
    return Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())])


def _signal(name: str, milestone: str | None = None) -> HistoryEvent:
    data = {"events": [{"milestone": milestone}]} if milestone else {"profile": {}}
    return _ev(
        E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        workflow_execution_signaled_event_attributes=WorkflowExecutionSignaledEventAttributes(
            signal_name=name, input=_json(data)
        ),
    )


def _task() -> list[HistoryEvent]:
    return [
        _ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        _ev(E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        _ev(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
    ]


def _upsert() -> HistoryEvent:
    return _ev(E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)


def _la(name: str) -> HistoryEvent:
    return _ev(
        E.EVENT_TYPE_MARKER_RECORDED,
        marker_recorded_event_attributes=MarkerRecordedEventAttributes(
            marker_name="core_local_activity", details={"data": _json({"activity_type": name})}
        ),
    )


def _act(name: str, queue: str = "ndrflow") -> HistoryEvent:
    from temporalio.api.common.v1 import ActivityType
    from temporalio.api.taskqueue.v1 import TaskQueue

    return _ev(
        E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        activity_task_scheduled_event_attributes=ActivityTaskScheduledEventAttributes(
            activity_type=ActivityType(name=name), task_queue=TaskQueue(name=queue)
        ),
    )


def test_shape_attributes_commands_to_the_message_that_caused_them() -> None:
    timer = _ev(E.EVENT_TYPE_TIMER_STARTED, timer_started_event_attributes=TimerStartedEventAttributes())
    timer.timer_started_event_attributes.start_to_fire_timeout.FromSeconds(7200)
    update = _ev(
        E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        workflow_execution_update_accepted_event_attributes=WorkflowExecutionUpdateAcceptedEventAttributes(
            accepted_request=UpdateRequest(input=UpdateInput(name="customer_reply"))
        ),
    )
    from temporalio.api.history.v1 import WorkflowExecutionStartedEventAttributes
    from temporalio.api.taskqueue.v1 import TaskQueue

    started = _ev(
        E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        workflow_execution_started_event_attributes=WorkflowExecutionStartedEventAttributes(
            task_queue=TaskQueue(name="ndrflow")
        ),
    )
    history = [
        started,
        _signal("register"),
        *_task(),
        _upsert(),
        _la("sync_read_model"),
        _signal("carrier_events", "out_for_delivery"),
        *_task(),
        _upsert(),
        _la("sync_read_model"),
        _act("send_notification"),
        _act("send_notification"),
        _ev(E.EVENT_TYPE_ACTIVITY_TASK_STARTED),
        _ev(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        _signal("carrier_events", "delivery_failed"),
        *_task(),
        _act("send_notification", queue="ndrflow-notify"),
        timer,
        *_task(),
        update,
        _act("send_carrier_instruction"),
        _ev(E.EVENT_TYPE_TIMER_CANCELED),
        _signal("carrier_events", "out_for_delivery"),
        *_task(),
        _upsert(),
    ]
    shape = shape_of(history)
    assert shape.history_length == len(history)
    assert shape.triggers["signal:register"] == [["upsert"], ["la", "sync_read_model"]]
    ofd = shape.triggers["signal:carrier_events:out_for_delivery#1"]
    assert ofd[:2] == [["upsert"], ["la", "sync_read_model"]]
    # Two activities scheduled in one task share a group (they run concurrently).
    assert [c[0] for c in ofd[2:]] == ["act", "act"] and ofd[2][2] == ofd[3][2]
    # An activity on another task queue (the rate-limited provider queue) is marked as such.
    assert ofd[2][3] == "main"
    assert shape.triggers["signal:carrier_events:delivery_failed#1"] == [
        ["act", "send_notification", ofd[2][2] + 2, "notify"],
        ["timer", 7200.0],
    ]
    assert [c[0] for c in shape.triggers["update:customer_reply#1"]] == ["act", "cancel_timer"]
    assert shape.triggers["signal:carrier_events:out_for_delivery#2"] == [["upsert"]]
    assert shape.reply == {"via": "update", "name": "customer_reply"}
    assert shape.activities == Counter({"send_notification": 3, "send_carrier_instruction": 1})
    assert shape.local_activities == 2


def test_a_signal_arriving_during_a_task_belongs_to_the_next_task() -> None:
    history = [
        _signal("register"),
        _ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
        _ev(E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        _signal("carrier_events", "picked_up"),  # arrives while the register task runs
        _ev(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        _upsert(),
        *_task(),
        _la("sync_read_model"),
    ]
    shape = shape_of(history)
    assert shape.triggers["signal:register"] == [["upsert"]]
    assert shape.triggers["signal:carrier_events:picked_up#1"] == [["la", "sync_read_model"]]


def test_lookup_falls_back_to_the_highest_calibrated_repeat() -> None:
    triggers = {
        "signal:carrier_events:in_transit#1": [["upsert"]],
        "signal:carrier_events:in_transit#2": [["la", "x"]],
    }
    assert lookup(triggers, "signal:carrier_events:in_transit#4") == [["la", "x"]]
    assert lookup(triggers, "signal:carrier_events:in_transit#1") == [["upsert"]]
    assert lookup(triggers, "signal:carrier_events:delivered#1") == []
    assert trigger_key("signal", "register") == "signal:register"
    assert trigger_key("update", "customer_reply", None, 2) == "update:customer_reply#2"


def test_sealed_signals_are_read_once_decoded() -> None:
    """ndrflow encrypts every payload: undecoded, the plan cannot tell carrier events apart (and
    the baseline matched none of its messages); decoded with the stack's codec, it can."""
    import asyncio

    from bench.shape import decode_history
    from ndrflow.codec import EncryptionCodec, generate_keys_value, parse_keys

    codec = EncryptionCodec(parse_keys(generate_keys_value()))

    def sealed_history() -> list[HistoryEvent]:
        history = [_signal("carrier_events", "picked_up"), *_task(), _la("sync_read_model")]
        for ev in history:
            if ev.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                p = ev.workflow_execution_signaled_event_attributes.input
                sealed = asyncio.run(codec.encode(list(p.payloads)))
                del p.payloads[:]
                p.payloads.extend(sealed)
            elif ev.event_type == E.EVENT_TYPE_MARKER_RECORDED:
                p = ev.marker_recorded_event_attributes.details["data"]
                sealed = asyncio.run(codec.encode(list(p.payloads)))
                del p.payloads[:]
                p.payloads.extend(sealed)
        return history

    blind = shape_of(sealed_history())
    assert blind.undecodable == 1
    assert "signal:carrier_events:picked_up#1" not in blind.triggers
    assert blind.triggers["signal:carrier_events#1"] == [["la", "local"]]

    history = sealed_history()
    asyncio.run(decode_history(history, codec))
    shape = shape_of(history)
    assert shape.undecodable == 0
    assert shape.triggers["signal:carrier_events:picked_up#1"] == [["la", "sync_read_model"]]


def _update() -> HistoryEvent:
    return _ev(
        E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        workflow_execution_update_accepted_event_attributes=WorkflowExecutionUpdateAcceptedEventAttributes(
            accepted_request=UpdateRequest(input=UpdateInput(name="customer_reply"))
        ),
    )


def test_whether_the_reply_update_answers_before_its_commands_ran() -> None:
    completed = _ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    at_once = [*_task(), _update(), completed, _act("send_carrier_instruction"), *_task()]
    shape = shape_of(at_once)
    assert shape.update_at_once is True
    assert [c[0] for c in shape.triggers["update:customer_reply#1"]] == ["act"]
    later = [
        *_task(),
        _update(),
        _act("send_carrier_instruction"),
        _ev(E.EVENT_TYPE_ACTIVITY_TASK_STARTED),
        _ev(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        *_task(),
        completed,
    ]
    assert shape_of(later).update_at_once is False
    assert shape_of([_signal("register"), *_task()]).update_at_once is None


def test_activity_classes() -> None:
    assert classify_activity("send_notification") == "notification"
    assert classify_activity("send_notification_inline") == "notification"  # a local activity
    assert classify_activity("send_carrier_instruction") == "instruction"
    assert classify_activity("sync_read_model") == "other"


# ---- statistics and reporting ----------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_rss_extrapolation_stops_growing_at_the_workflow_cache() -> None:
    # 100 MB plus 0.1 MB per cached workflow: at 10,000 open only 1,000 are in memory.
    points = [(n, 100 + 0.1 * n) for n in (100, 200, 300, 400)]
    assert _extrapolate_rss(points, 10_000, 1000) == pytest.approx(200.0)
    assert _extrapolate_rss([(50, 150.0)], 10_000, 1000) == 150.0


def test_rss_extrapolation_follows_growth_past_the_cache() -> None:
    # Measured past the cache and still growing 0.07 MB per shipment: a line, not a plateau.
    points = [(n, 150 + 0.07 * n) for n in range(1200, 2600, 100)]
    assert _extrapolate_rss(points, 10_000, 1000) == pytest.approx(850.0)
    # Never below what was measured.
    assert _extrapolate_rss([(1500, 400.0)] * 6, 10_000, 1000) == 400.0


def test_targets_are_judged_only_when_measured() -> None:
    r = {
        "ratio": 0.85,
        "notify_p99_ms": 300.0,
        "baseline_p99_ms": 100.0,
        "worker_rss_mb_10k_open": None,
        "history_events_per_journey": 44,
        "cases_query_ms": 90.0,
    }
    t = evaluate_targets(r)
    assert t["ratio"]["met"] is True
    assert t["notify_p99_ms"]["met"] is False  # 300 > 2 × 100
    assert t["worker_rss_mb_10k_open"]["met"] is None
    assert t["history_events_per_journey"]["met"] is True


def test_profile_summary_by_function_and_area() -> None:
    collapsed = "\n".join(
        [
            "run (temporalio/worker/_workflow.py:10);_run_code (temporalio/worker/workflow_sandbox/_runner.py:1);"
            "_import (temporalio/worker/workflow_sandbox/_importer.py:5) 30",
            "serve (uvicorn/server.py:1);carrier_events (/work/x/api/routes/carriers.py:40) 10",
            "run (temporalio/worker/_workflow.py:10) 10",
        ]
    )
    p = summarise(collapsed).top(5)
    assert p["samples"] == 50
    assert p["self_pct"][0] == ("_import (temporalio/worker/workflow_sandbox/_importer.py)", 60.0)
    where = breakdown(collapsed)
    assert where["workflow worker outside the sandbox"] == 20.0
    assert where["sandbox: module imports for a new run"] == 60.0
    assert where["API request handling (uvicorn, FastAPI, routes, store)"] == 20.0
    areas = dict(p["areas_inclusive_pct"])
    assert areas["sandbox: module import/restore"] == 60.0
    assert areas["API routes (our code)"] == 20.0


def test_fast_timing_compresses_the_same_journey() -> None:
    fast = factory(timing=FAST).make(0, kind="ndr_2day")
    normal = factory().make(0, kind="ndr_2day")
    assert [s.kind for s in fast.steps] == [s.kind for s in normal.steps]
    assert fast.duration < normal.duration / 2


def test_the_knee_is_two_misses_in_a_row_or_a_miss_at_the_end() -> None:
    from bench.driver import StepResult
    from bench.run import _knee

    def steps(*oks):  # type: ignore[no-untyped-def]
        return [StepResult(f"{i}", "m", i, 0.0, 1.0, ok=ok) for i, ok in enumerate(oks)]

    assert _knee(steps(True, True, True)) is None
    # One miss followed by a step that kept up: someone else's burst, not the knee.
    assert _knee(steps(True, False, True, False, False)) == 3
    assert _knee(steps(True, True, False)) == 2
    # An undecided step does not count either way.
    assert _knee(steps(True, False, None)) == 1
