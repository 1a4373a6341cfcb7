"""Provider delivery webhooks (api/routes/provider_webhooks.py): signatures, the notification
log, opt-outs, and the notification_status signal to the shipment workflow."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from temporalio.service import RPCError, RPCStatusCode

from api.routes import provider_webhooks
from channels.settings import ChannelSettings
from store import notifications as ns
from tests.channels.fake_providers import AUTH_TOKEN, FakeProviders
from workflows.messages import NotificationStatusInput

PUBLIC = "https://ndr.example.com"
KEY = "shp_abc:out_for_delivery:e3:sms"
EMAIL_KEY = "shp_abc:delivered:e7:email"
STATUS_URL = f"{PUBLIC}/v1/webhooks/twilio/status?key=shp_abc%3Aout_for_delivery%3Ae3%3Asms"
SIGNER = FakeProviders()  # only its signing helpers: no server


class FakeHandle:
    def __init__(self, temporal: FakeTemporal, workflow_id: str) -> None:
        self.temporal, self.workflow_id = temporal, workflow_id

    async def signal(self, name: str, arg: Any) -> None:
        if self.temporal.fail_with is not None:
            raise self.temporal.fail_with
        self.temporal.signals.append((self.workflow_id, name, arg))


class FakeTemporal:
    def __init__(self) -> None:
        self.signals: list[tuple[str, str, Any]] = []
        self.fail_with: Exception | None = None

    def get_workflow_handle(self, workflow_id: str) -> FakeHandle:
        return FakeHandle(self, workflow_id)


@pytest.fixture
def temporal() -> FakeTemporal:
    return FakeTemporal()


def make_app(engine: Engine, temporal: Any, **settings: Any) -> FastAPI:
    app = FastAPI()
    app.state.engine = engine
    app.state.temporal = temporal
    app.state.settings = SimpleNamespace(home=None, public_base_url=PUBLIC, twilio_auth_token=AUTH_TOKEN)
    values = dict(
        public_base_url=PUBLIC,
        twilio_auth_token=AUTH_TOKEN,
        sendgrid_event_public_key=SIGNER.sendgrid_public_key,
    )
    values.update(settings)
    app.state.channel_settings = ChannelSettings(**values)
    app.include_router(provider_webhooks.router)
    return app


@pytest.fixture
def client(engine: Engine, temporal: FakeTemporal) -> TestClient:
    # The app sits behind a proxy: it is reached as http://10.0.0.7:8000, Twilio calls PUBLIC.
    return TestClient(make_app(engine, temporal), base_url="http://10.0.0.7:8000")


def sent(
    engine: Engine, key: str = KEY, channel: str = "sms", sid: str = "SM1", to: str = "+919876543210"
) -> ns.NotificationLog:
    row = ns.claim_notification(
        engine, key=key, shipment_id="shp_abc", channel=channel, purpose=key.split(":")[1]
    ).row
    row = ns.begin_attempt(
        engine, row, provider="twilio_sms" if channel != "email" else "sendgrid_email", recipient=to
    )
    return ns.mark_sent(engine, row, provider_message_id=sid)


def post_twilio(client: TestClient, status: str, *, url: str = STATUS_URL, sid: str = "SM1", **kw: Any):
    body, headers = SIGNER.signed_status_callback(url, sid, status, **kw)
    path = url.removeprefix(PUBLIC)
    return client.post(path, content=body, headers=headers)


# ---- Twilio --------------------------------------------------------------------------------
def test_delivered_callback_updates_the_log_without_a_signal(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine)
    r = post_twilio(client, "delivered")
    assert r.status_code == 204
    assert ns.get_notification(engine, KEY).delivery_status == "delivered"
    assert temporal.signals == []


def test_failure_is_signalled_to_the_workflow_once(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine)
    for _ in range(3):  # Twilio retries callbacks; duplicates change nothing
        assert post_twilio(client, "undelivered", error_code="30003").status_code == 204
    row = ns.get_notification(engine, KEY)
    assert (row.delivery_status, row.error_code) == ("undelivered", "30003")
    assert temporal.signals == [
        (
            "shipment-shp_abc",
            "notification_status",
            NotificationStatusInput(key=KEY, channel="sms", status="undelivered", error_code="30003"),
        )
    ]
    assert post_twilio(client, "delivered").status_code == 204  # late and out of order
    assert ns.get_notification(engine, KEY).delivery_status == "undelivered"


def test_unsigned_or_wrongly_signed_callbacks_are_refused(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine)
    body, headers = SIGNER.signed_status_callback(STATUS_URL, "SM1", "failed", error_code="30003")
    path = STATUS_URL.removeprefix(PUBLIC)
    unsigned = {"Content-Type": headers["Content-Type"]}
    cases = [
        (body, unsigned),
        (body, {**headers, "X-Twilio-Signature": "bm9wZQ=="}),
        (body.replace(b"30003", b"30008"), headers),  # tampered after signing
        SIGNER.signed_status_callback(STATUS_URL, "SM1", "failed", error_code="30003", token="someone-else"),
    ]
    for raw, hdrs in cases:
        r = client.post(path, content=raw, headers=hdrs)
        assert r.status_code == 403 and "X-Twilio-Signature" in r.json()["detail"]
    # signed over the address the proxy forwarded to, not the public one
    internal = "http://10.0.0.7:8000" + path
    raw, hdrs = SIGNER.signed_status_callback(internal, "SM1", "failed")
    assert client.post(path, content=raw, headers=hdrs).status_code == 403
    # signed for another notification's URL (the key is part of what is signed)
    other = STATUS_URL.replace("e3", "e4")
    raw, hdrs = SIGNER.signed_status_callback(other, "SM1", "failed")
    assert client.post(path, content=raw, headers=hdrs).status_code == 403
    assert ns.get_notification(engine, KEY).delivery_status is None and temporal.signals == []


def test_no_auth_token_means_refuse(engine: Engine, temporal: FakeTemporal) -> None:
    client = TestClient(make_app(engine, temporal, twilio_auth_token=""))
    r = post_twilio(client, "delivered")
    assert r.status_code == 403 and "NDRFLOW_TWILIO_AUTH_TOKEN" in r.json()["detail"]


def test_callback_found_by_message_sid_without_key(client: TestClient, engine: Engine) -> None:
    sent(engine, sid="SMabc")
    url = f"{PUBLIC}/v1/webhooks/twilio/status"
    assert post_twilio(client, "delivered", url=url, sid="SMabc").status_code == 204
    assert ns.get_notification(engine, KEY).delivery_status == "delivered"
    assert post_twilio(client, "delivered", url=url, sid="SMunknown").status_code == 204  # not ours: ignored


def test_callback_before_our_sent_write_is_kept(client: TestClient, engine: Engine) -> None:
    row = ns.claim_notification(
        engine, key=KEY, shipment_id="shp_abc", channel="sms", purpose="out_for_delivery"
    ).row
    ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+919876543210")
    assert post_twilio(client, "queued", sid="SMearly").status_code == 204
    row = ns.get_notification(engine, KEY)
    assert (row.status, row.provider_message_id, row.delivery_status) == ("sending", "SMearly", "queued")


def test_21610_records_an_opt_out(client: TestClient, engine: Engine, temporal: FakeTemporal) -> None:
    sent(engine)
    assert post_twilio(client, "failed", error_code="21610").status_code == 204
    assert ns.is_opted_out(engine, channel="sms", address="+919876543210")
    assert temporal.signals[0][2].error_code == "21610"


def test_whatsapp_63016_reaches_the_workflow(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    key = "shp_abc:ndr_ask:ndr1-0:whatsapp"
    sent(engine, key=key, channel="whatsapp", sid="SMwa")
    url = f"{PUBLIC}/v1/webhooks/twilio/status?key=shp_abc%3Andr_ask%3Andr1-0%3Awhatsapp"
    assert (
        post_twilio(client, "failed", url=url, sid="SMwa", error_code="63016", whatsapp=True).status_code
        == 204
    )
    [(_, _, payload)] = temporal.signals
    assert (payload.channel, payload.status, payload.error_code) == ("whatsapp", "failed", "63016")


def test_temporal_down_answers_503_and_the_retry_signals(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine)
    temporal.fail_with = RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
    assert post_twilio(client, "undelivered", error_code="30003").status_code == 503
    assert ns.unsignalled_failures(engine, [KEY])  # kept for the retry
    temporal.fail_with = None
    assert post_twilio(client, "undelivered", error_code="30003").status_code == 204
    assert len(temporal.signals) == 1


def test_finished_workflow_is_not_an_error(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine)
    temporal.fail_with = RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
    assert post_twilio(client, "failed", error_code="30005").status_code == 204
    assert ns.unsignalled_failures(engine, [KEY]) == []


def test_malformed_but_signed_callback_is_a_400(client: TestClient) -> None:
    url = f"{PUBLIC}/v1/webhooks/twilio/status"
    body, headers = SIGNER._signed_form(url, {"AccountSid": "AC1", "MessageStatus": "sent"}, AUTH_TOKEN)
    r = client.post("/v1/webhooks/twilio/status", content=body, headers=headers)
    assert r.status_code == 400 and "MessageSid" in r.json()["detail"]


# ---- SendGrid ------------------------------------------------------------------------------
def events(*items: dict[str, Any]) -> list[dict[str, Any]]:
    base = {
        "email": "asha@example.com",
        "timestamp": int(time.time()),
        "sg_message_id": "msg1.filter0001.1",
        "ndrflow_key": EMAIL_KEY,
    }
    return [{**base, **it} for it in items]


def post_sendgrid(client: TestClient, evs: list[dict[str, Any]], **kw: Any):
    body, headers = SIGNER.signed_sendgrid_events(evs, **kw)
    return client.post("/v1/webhooks/sendgrid/events", content=body, headers=headers)


def test_sendgrid_events_update_the_log_and_signal_bounces(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine, key=EMAIL_KEY, channel="email", sid="msg1", to="asha@example.com")
    r = post_sendgrid(
        client,
        events({"event": "processed", "sg_event_id": "e1"}, {"event": "delivered", "sg_event_id": "e2"}),
    )
    assert r.status_code == 204 and ns.get_notification(engine, EMAIL_KEY).delivery_status == "delivered"
    assert temporal.signals == []
    batch = events({"event": "bounce", "sg_event_id": "e3", "status": "5.1.1", "type": "bounce"})
    assert post_sendgrid(client, batch).status_code == 204
    assert post_sendgrid(client, batch).status_code == 204  # SendGrid redelivers batches
    row = ns.get_notification(engine, EMAIL_KEY)
    assert (row.delivery_status, row.error_code) == ("bounce", "5.1.1")
    assert temporal.signals == [
        (
            "shipment-shp_abc",
            "notification_status",
            NotificationStatusInput(key=EMAIL_KEY, channel="email", status="bounce", error_code="5.1.1"),
        )
    ]


def test_sendgrid_event_found_by_message_id(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine, key=EMAIL_KEY, channel="email", sid="msg1", to="asha@example.com")
    ev = events({"event": "dropped", "sg_event_id": "e9", "reason": "Bounced Address"})
    del ev[0]["ndrflow_key"]
    assert post_sendgrid(client, ev).status_code == 204
    assert ns.get_notification(engine, EMAIL_KEY).delivery_status == "dropped"
    assert len(temporal.signals) == 1


def test_sendgrid_unsubscribe_records_an_email_opt_out(client: TestClient, engine: Engine) -> None:
    assert post_sendgrid(client, events({"event": "unsubscribe", "sg_event_id": "u1"})).status_code == 204
    assert ns.is_opted_out(engine, channel="email", address="asha@example.com")
    assert (
        post_sendgrid(client, events({"event": "group_resubscribe", "sg_event_id": "u2"})).status_code == 204
    )
    assert not ns.is_opted_out(engine, channel="email", address="asha@example.com")


def test_sendgrid_unsigned_stale_or_unconfigured_is_refused(client: TestClient, engine: Engine) -> None:
    sent(engine, key=EMAIL_KEY, channel="email", sid="msg1", to="asha@example.com")
    evs = events({"event": "bounce", "sg_event_id": "b1"})
    body, headers = SIGNER.signed_sendgrid_events(evs)
    assert (
        client.post(
            "/v1/webhooks/sendgrid/events", content=body, headers={"Content-Type": "application/json"}
        ).status_code
        == 403
    )
    tampered = body.replace(b"bounce", b"delivered")
    assert client.post("/v1/webhooks/sendgrid/events", content=tampered, headers=headers).status_code == 403
    r = post_sendgrid(client, evs, timestamp=int(time.time()) - 3600)  # an old request replayed
    assert r.status_code == 403 and "older than" in r.json()["detail"]
    unconfigured = TestClient(make_app(engine, FakeTemporal(), sendgrid_event_public_key=""))
    r = unconfigured.post("/v1/webhooks/sendgrid/events", content=body, headers=headers)
    assert r.status_code == 403 and "NDRFLOW_SENDGRID_EVENT_PUBLIC_KEY" in r.json()["detail"]
    assert ns.get_notification(engine, EMAIL_KEY).delivery_status is None


def test_sendgrid_signed_garbage_is_a_400(client: TestClient) -> None:
    _, headers = SIGNER.signed_sendgrid_events([])
    r = client.post("/v1/webhooks/sendgrid/events", content=b'{"event":"x"}', headers=headers)
    assert r.status_code == 403  # the signature covers the body: this is not what was signed
    body, headers = SIGNER.signed_sendgrid_events({"event": "delivered"})  # type: ignore[arg-type]
    r = client.post("/v1/webhooks/sendgrid/events", content=body, headers=headers)
    assert r.status_code == 400 and "array" in r.json()["detail"]


def test_sendgrid_503_then_redelivery_still_signals(
    client: TestClient, engine: Engine, temporal: FakeTemporal
) -> None:
    sent(engine, key=EMAIL_KEY, channel="email", sid="msg1", to="asha@example.com")
    batch = events({"event": "bounce", "sg_event_id": "b7", "status": "5.1.1"})
    temporal.fail_with = RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")
    assert post_sendgrid(client, batch).status_code == 503
    temporal.fail_with = None
    assert post_sendgrid(client, batch).status_code == 204  # events already seen, signal still owed
    assert len(temporal.signals) == 1


# ---- round trip over real HTTP: SDK -> fake Twilio -> signed callback -> our webhook ---------
@pytest.fixture(scope="module")
def live_fake():
    fake = FakeProviders()
    fake.start()
    yield fake
    fake.stop()


async def test_round_trip_through_the_fake_twilio(
    engine: Engine, temporal: FakeTemporal, live_fake: FakeProviders
) -> None:
    from sqlmodel import Session
    from temporalio.testing import ActivityEnvironment

    from activities.notify import NotifyActivities
    from store.models import Shipment
    from tests.channels.fake_providers import serve_in_thread, stop_server
    from workflows.messages import SendNotificationInput

    live_fake.reset()
    with Session(engine) as s:
        s.add(
            Shipment(
                shipment_id="shp_rt",
                workflow_id="shipment-shp_rt",
                merchant_id="acme",
                carrier="generic",
                tracking_number="T9",
                customer_phone="+919876543210",
            )
        )
        s.commit()
    settings = live_fake.twilio_settings(public_base_url=PUBLIC)
    acts = NotifyActivities(engine, settings)
    inp = SendNotificationInput(shipment_id="shp_rt", purpose="picked_up", occurrence="e1", channel="sms")
    res = await ActivityEnvironment().run(acts.send_notification, inp)
    assert res.status == "sent"

    app = make_app(engine, temporal)
    server, thread, ours = serve_in_thread(app)  # reached on loopback, signed for PUBLIC
    try:
        status = await asyncio.to_thread(
            live_fake.deliver_status_callback, res.provider_message_id, "sent", via=ours
        )
        assert status == 204
        status = await asyncio.to_thread(
            live_fake.deliver_status_callback,
            res.provider_message_id,
            "undelivered",
            error_code="30005",
            via=ours,
        )
        assert status == 204
        forged = await asyncio.to_thread(
            live_fake.deliver_status_callback, res.provider_message_id, "failed", via=ours, token="forged"
        )
        assert forged == 403
    finally:
        stop_server(server, thread)
    row = ns.get_notification(engine, inp.key)
    assert (row.status, row.delivery_status, row.error_code) == ("sent", "undelivered", "30005")
    assert [(w, p.key, p.status) for w, _, p in temporal.signals] == [
        ("shipment-shp_rt", inp.key, "undelivered")
    ]
