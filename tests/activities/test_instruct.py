"""send_carrier_instruction in Temporal's activity environment: exactly once per idempotency key,
5xx/timeouts retryable, 4xx recorded as rejections, Delhivery's upload followed across retries."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlmodel import Session
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.instruct import InstructActivities
from carriers import shiprocket
from domain.instructions import EmailCarrierOpsInput, InstructionResult
from store import carriers as store
from store.models import Shipment
from tests.carriers.conftest import instruction_input, settings


class Carrier:
    """Answers by (method, path) from queues; records every request."""

    def __init__(self, routes: dict[tuple[str, str], list[httpx.Response | Exception]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def handler(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        if req.url.path.endswith("/auth/login"):
            return httpx.Response(200, json={"token": "tok"})
        queue = self.routes[(req.method, req.url.path)]
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    def factory(self):
        return lambda: httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def calls(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if (r.method, r.url.path) == (method, path))


@pytest.fixture(autouse=True)
def fresh_shiprocket_tokens(monkeypatch):
    monkeypatch.setattr(shiprocket, "TOKENS", shiprocket.TokenCache())


def upl(status: str) -> httpx.Response:
    rows = (
        []
        if status == "Pending"
        else [{"waybill": "AWB123", "status": status, "remarks": f"{status} remark"}]
    )
    return httpx.Response(200, json={"request_id": "UPL7", "status": status, "results": rows})


async def test_acknowledged_instruction_is_never_sent_twice(engine):
    carrier = Carrier(
        {
            ("POST", "/api/p/update"): [httpx.Response(200, json={"request_id": "UPL7"})],
            ("GET", "/api/cmu/get_bulk_upl/UPL7"): [upl("Success")],
        }
    )
    acts = InstructActivities(engine, settings(), carrier.factory())
    inp = instruction_input("delhivery")
    env = ActivityEnvironment()
    first = await env.run(acts.send_carrier_instruction, inp)
    second = await env.run(acts.send_carrier_instruction, inp)
    assert (
        first
        == second
        == InstructionResult(
            status="accepted", carrier_reference="UPL7", detail="Success remark", http_status=200
        )
    )
    assert carrier.calls("POST", "/api/p/update") == 1
    with Session(engine) as s:
        row = store.get_instruction(s, idempotency_key=inp.idempotency_key)
    assert (row.status, row.attempts, row.acknowledged_at is not None) == ("accepted", 1, True)
    await acts.aclose()


async def test_5xx_raises_retryable_then_the_retry_succeeds(engine):
    carrier = Carrier(
        {
            ("POST", "/v1/external/ndr/AWB123/action"): [
                httpx.Response(503, text="upstream down"),
                httpx.Response(202),
            ]
        }
    )
    acts = InstructActivities(engine, settings(), carrier.factory())
    inp = instruction_input("shiprocket")
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_carrier_instruction, inp)
    assert err.value.type == "CarrierUnavailable" and not err.value.non_retryable
    with Session(engine) as s:
        row = store.get_instruction(s, idempotency_key=inp.idempotency_key)
    assert (row.status, row.attempts, row.http_status) == ("requested", 1, 503) and "503" in row.detail
    result = await ActivityEnvironment().run(acts.send_carrier_instruction, inp)
    assert result.status == "accepted"
    with Session(engine) as s:
        row = store.get_instruction(s, idempotency_key=inp.idempotency_key)
    assert (row.status, row.attempts) == ("accepted", 2)
    await acts.aclose()


async def test_timeout_is_retryable(engine):
    carrier = Carrier({("POST", "/generic/x"): [httpx.ReadTimeout("no answer")]})
    acts = InstructActivities(
        engine, settings(generic_instruction_url="https://c.example/generic/x"), carrier.factory()
    )
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_carrier_instruction, instruction_input("generic"))
    assert err.value.type == "CarrierUnavailable" and "timed out" in str(err.value)


async def test_4xx_is_recorded_as_a_rejection_and_not_sent_again(engine):
    carrier = Carrier(
        {
            ("POST", "/v1/external/ndr/AWB123/action"): [
                httpx.Response(422, json={"message": "AWB not in NDR state"})
            ]
        }
    )
    acts = InstructActivities(engine, settings(), carrier.factory())
    inp = instruction_input("shiprocket", "rto")
    result = await ActivityEnvironment().run(acts.send_carrier_instruction, inp)
    assert (result.status, result.http_status) == (
        "rejected",
        422,
    ) and "AWB not in NDR state" in result.detail
    again = await ActivityEnvironment().run(acts.send_carrier_instruction, inp)
    assert again == result
    assert carrier.calls("POST", "/v1/external/ndr/AWB123/action") == 1
    with Session(engine) as s:
        assert store.get_instruction(s, idempotency_key=inp.idempotency_key).status == "rejected"


async def test_delhivery_retry_follows_the_stored_upload_instead_of_resubmitting(engine):
    carrier = Carrier(
        {
            ("POST", "/api/p/update"): [httpx.Response(200, json={"request_id": "UPL7"})],
            ("GET", "/api/cmu/get_bulk_upl/UPL7"): [
                upl("Pending"),
                upl("Pending"),
                upl("Pending"),
                upl("Success"),
            ],
        }
    )
    acts = InstructActivities(engine, settings(delhivery_upl_poll_attempts=3), carrier.factory())
    inp = instruction_input("delhivery")
    with pytest.raises(ApplicationError, match="still pending"):
        await ActivityEnvironment().run(acts.send_carrier_instruction, inp)
    with Session(engine) as s:
        row = store.get_instruction(s, idempotency_key=inp.idempotency_key)
    assert (row.status, row.carrier_reference) == ("requested", "UPL7")
    result = await ActivityEnvironment().run(acts.send_carrier_instruction, inp)
    assert (result.status, result.carrier_reference) == ("accepted", "UPL7")
    assert carrier.calls("POST", "/api/p/update") == 1
    assert carrier.calls("GET", "/api/cmu/get_bulk_upl/UPL7") == 4


async def test_unsupported_action_is_recorded_without_calling(engine):
    carrier = Carrier({})
    acts = InstructActivities(engine, settings(), carrier.factory())
    result = await ActivityEnvironment().run(
        acts.send_carrier_instruction, instruction_input("delhivery", "rto")
    )
    assert result.status == "unsupported" and carrier.requests == []
    with Session(engine) as s:
        assert store.get_instruction(s, idempotency_key="shp_01:ndr1:1").status == "unsupported"


async def test_clickpost_gets_the_unchanged_address_and_phone_from_the_store(engine):
    with Session(engine) as s:
        s.add(
            Shipment(
                shipment_id="shp_01",
                workflow_id="wf",
                merchant_id="acme",
                carrier="clickpost",
                tracking_number="AWB123",
                customer_phone="+919876543210",
                address={"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001"},
            )
        )
        s.commit()
    carrier = Carrier(
        {
            ("POST", "/api/v2/ndr/update/"): [
                httpx.Response(200, json={"meta": {"success": True, "message": "SUCCESS", "status": 200}})
            ]
        }
    )
    acts = InstructActivities(engine, settings(), carrier.factory())
    inp = instruction_input("clickpost", "reschedule", requested_date="2026-12-02")
    assert inp.extra == {}  # the workflow input carries no contact details
    result = await ActivityEnvironment().run(acts.send_carrier_instruction, inp)
    assert result.status == "accepted"
    sent = json.loads(carrier.requests[0].content)
    assert (sent["address"], sent["drop_pincode"], sent["phone_number"], sent["preferred_date"]) == (
        "12 MG Road, Bengaluru",
        "560001",
        "9876543210",
        "2026-12-02",
    )


async def test_unknown_carrier_is_not_retryable(engine):
    acts = InstructActivities(engine, settings(), Carrier({}).factory())
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_carrier_instruction, instruction_input("pigeon-post"))
    assert err.value.non_retryable and err.value.type == "UnknownCarrier"


async def test_email_fallback_is_sent_once(engine):
    sent: list[tuple[str, str, str]] = []

    async def send_email(to: str, subject: str, text: str) -> None:
        sent.append((to, subject, text))

    acts = InstructActivities(engine, settings(), Carrier({}).factory(), send_email=send_email)
    inp = EmailCarrierOpsInput(
        instruction=instruction_input("easypost", "reschedule", requested_date="2026-12-01"),
        why="EasyPost has no NDR API",
    )
    first = await ActivityEnvironment().run(acts.email_carrier_ops, inp)
    second = await ActivityEnvironment().run(acts.email_carrier_ops, inp)
    assert first.status == second.status == "emailed"
    assert len(sent) == 1 and sent[0][0] == "ndr-desk@carrier.example" and "AWB123" in sent[0][1]
    with Session(engine) as s:
        assert store.get_instruction(s, idempotency_key="shp_01:ndr1:1:email").status == "emailed"


async def test_the_activities_heartbeat_while_the_carrier_is_slow(engine, monkeypatch):
    # Heartbeats let the server retry a dead worker's attempt after the (short) heartbeat
    # timeout; they must keep coming while one long HTTP call runs, not only between steps.
    import asyncio

    from activities import heartbeat

    monkeypatch.setattr(heartbeat, "BEAT_EVERY_S", 0.02)

    async def slow(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)
        return httpx.Response(200, json={"reference": "GEN-1", "status": "accepted"})

    acts = InstructActivities(
        engine, settings(), lambda: httpx.AsyncClient(transport=httpx.MockTransport(slow))
    )
    beats: list[tuple] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    result = await env.run(acts.send_carrier_instruction, instruction_input("generic"))
    assert result.status == "accepted"
    assert len(beats) >= 5
    before = len(beats)
    await env.run(acts.email_carrier_ops, EmailCarrierOpsInput(instruction=instruction_input("generic"), why="x"))
    await asyncio.sleep(0.1)
    assert len(beats) - before <= 2  # stops with the activity
