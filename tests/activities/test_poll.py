"""poll_carrier_tracking: Delhivery and generic answer with events; others with none."""

from __future__ import annotations

import json

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.poll import PollActivities
from domain.instructions import PollTrackingInput
from tests.carriers.conftest import Script, fixture_bytes, ok, settings


def poller(script: Script, **cfg) -> PollActivities:
    return PollActivities(settings(**cfg), lambda: script.client())


async def test_delhivery_poll_returns_mapped_scans():
    script = Script(ok(200, json.loads(fixture_bytes("delhivery", "tracking_response.json"))))
    events = await ActivityEnvironment().run(
        poller(script).poll_carrier_tracking, PollTrackingInput("shp_1", "delhivery", "1490812345678")
    )
    assert [e.milestone for e in events] == ["created", "out_for_delivery", "delivery_failed"]
    assert script.requests[0].url.params["waybill"] == "1490812345678"


async def test_generic_poll_returns_events():
    script = Script(ok(200, json.loads(fixture_bytes("generic", "events.json"))))
    events = await ActivityEnvironment().run(
        poller(script).poll_carrier_tracking, PollTrackingInput("shp_1", "generic", "TRK1001")
    )
    assert [e.event_id for e in events][:2] == ["e1", "e2"]


@pytest.mark.parametrize("carrier", ["shiprocket", "clickpost", "easypost", "aftership", "no-such-carrier"])
async def test_carriers_without_a_tracking_pull_return_nothing(carrier):
    script = Script(ok())
    assert (
        await ActivityEnvironment().run(
            poller(script).poll_carrier_tracking, PollTrackingInput("shp_1", carrier, "T")
        )
        == []
    )
    assert script.requests == []


async def test_unavailable_tracking_api_is_retryable():
    script = Script(httpx.Response(502))
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            poller(script).poll_carrier_tracking, PollTrackingInput("shp_1", "delhivery", "1")
        )
    assert err.value.type == "CarrierUnavailable" and not err.value.non_retryable


async def test_unreadable_answer_is_no_events_not_a_crash():
    script = Script(ok(200, {"unexpected": True}))
    assert (
        await ActivityEnvironment().run(
            poller(script).poll_carrier_tracking, PollTrackingInput("shp_1", "delhivery", "1")
        )
        == []
    )
