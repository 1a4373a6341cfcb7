"""Local-mode outbox pages (api/routes/dev.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.routes import dev
from channels import outbox, twilio_common
from channels.base import OutboundMessage
from channels.settings import ChannelSettings
from store import notifications as ns

PUBLIC = "http://127.0.0.1:8000"
CONTRACT_KEYS = {"channel", "to", "purpose", "locale", "body", "created_at"}


def make_app(engine: Engine, **settings) -> tuple[FastAPI, list[dict]]:
    app = FastAPI()
    app.state.engine = engine
    app.state.settings = SimpleNamespace(home=None, public_base_url=PUBLIC, twilio_auth_token="home-token")
    app.state.channel_settings = ChannelSettings(
        public_base_url=PUBLIC, twilio_auth_token="home-token", **settings
    )
    app.include_router(dev.router)
    received: list[dict] = []

    @app.post("/v1/webhooks/twilio/inbound")  # stands in for the NDR issue's inbound webhook
    async def inbound(request: Request) -> Response:
        raw = await request.body()
        cs = request.app.state.channel_settings
        ok = twilio_common.verify_signature(raw, request.headers, cs.public_url(request.url.path), cs)
        if not ok:
            return Response(status_code=403)
        received.append({"msg": twilio_common.parse_inbound("twilio", raw)})
        return Response(status_code=200)

    return app, received


def put(engine: Engine, key: str, to: str, body: str, channel: str = "sms", **kw) -> None:
    msg = OutboundMessage(
        key=key,
        shipment_id="shp_1",
        channel=channel,
        purpose=kw.pop("purpose", "delivered"),
        locale="hi-IN",
        to=to,
        body=body,
        template_locale="hi",
        **kw,
    )
    outbox.send(msg, ChannelSettings(), engine)


@pytest.fixture
def filled(engine: Engine) -> Engine:
    put(engine, "shp_1:picked_up:e1:sms", "+919876543210", "पिकअप हो गया", purpose="picked_up")
    put(engine, "shp_1:delivered:e2:sms", "+919876543210", "डिलीवर हो गया <script>alert(1)</script>")
    put(
        engine,
        "shp_1:delivered:e2:email",
        "asha@example.com",
        "text part",
        channel="email",
        subject="Delivered",
        html="<p>html part</p>",
    )
    put(engine, "shp_2:delivered:e1:sms", "+821012345678", "배송 완료")
    return engine


def test_json_contract_and_filter(filled: Engine) -> None:
    client = TestClient(make_app(filled)[0])
    everything = client.get("/v1/dev/outbox").json()["messages"]
    assert len(everything) == 4 and all(CONTRACT_KEYS <= set(m) for m in everything)
    for query in ("?to=%2B919876543210", "?to=+919876543210", "?to=%2B91%2098765%2043210"):
        mine = client.get("/v1/dev/outbox" + query).json()["messages"]
        assert [m["purpose"] for m in mine] == ["picked_up", "delivered"], query  # oldest first
        assert (
            mine[0]["to"] == "+919876543210" and mine[0]["locale"] == "hi-IN" and mine[0]["channel"] == "sms"
        )
    [mail] = client.get("/v1/dev/outbox?to=Asha@Example.com").json()["messages"]
    assert mail["subject"] == "Delivered" and mail["has_html"]
    assert client.get("/v1/dev/outbox?to=nobody").status_code == 422


def test_page_shows_a_phone_per_recipient_and_escapes(filled: Engine) -> None:
    client = TestClient(make_app(filled)[0])
    page = client.get("/dev/outbox").text
    assert page.count('class="phone"') == 3
    assert "पिकअप हो गया" in page and "배송 완료" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    only = client.get("/dev/outbox", params={"to": "+821012345678"}).text
    assert only.count('class="phone"') == 1 and "배송 완료" in only
    mail_id = client.get("/v1/dev/outbox?to=asha@example.com").json()["messages"][0]["message_id"]
    html = client.get(f"/dev/outbox/{mail_id}/html")
    assert (
        html.status_code == 200
        and "<p>html part</p>" in html.text
        and "sandbox" in html.headers["content-security-policy"]
    )


def test_reply_goes_through_the_signed_inbound_webhook(filled: Engine) -> None:
    app, received = make_app(filled)
    client = TestClient(app)
    r = client.post(
        "/dev/outbox/reply",
        data={"to": "+919876543210", "body": "2", "channel": "whatsapp"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "reply+delivered" in r.headers["location"]
    [got] = received
    assert (got["msg"].channel, got["msg"].from_address, got["msg"].body) == (
        "whatsapp",
        "+919876543210",
        "2",
    )


def test_disabled_outside_local_mode(filled: Engine) -> None:
    client = TestClient(make_app(filled, twilio_account_sid="AC" + "0" * 32)[0])
    for path in ("/dev/outbox", "/v1/dev/outbox"):
        r = client.get(path)
        assert r.status_code == 404 and "local mode" in r.json()["detail"]
    assert client.post("/dev/outbox/reply", data={"to": "+919876543210", "body": "1"}).status_code == 404
    forced = TestClient(make_app(filled, twilio_account_sid="AC" + "0" * 32, dev_pages=True)[0])
    assert forced.get("/v1/dev/outbox").status_code == 200


def test_empty_outbox(engine: Engine) -> None:
    client = TestClient(make_app(engine)[0])
    assert client.get("/v1/dev/outbox").json() == {"messages": []}
    assert "No messages yet" in client.get("/dev/outbox").text
    assert len(ns.list_outbox(engine)) == 0
