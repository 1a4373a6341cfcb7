"""Customers' messages through the real app (api/routes/inbound.py): Twilio SMS/WhatsApp webhooks
signed over the public URL, SendGrid Inbound Parse with its URL token, the provider's retries,
STOP in an NDR conversation, and the answers we send when no workflow will. Temporal is the NDR
fake of tests/api/ndr_fakes.py (the real validator and case state machine); the store is real,
on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from twilio.request_validator import RequestValidator

from api.main import create_app
from ndrflow.config import Settings
from ndrflow.ndr_settings import NdrSettings
from store import ndr as routes
from store import notifications as ns
from store.models import RefusedRequest, Shipment
from tests.api.ndr_fakes import FakeTemporal
from tests.channels.test_sendgrid_email import INBOUND_CONTENT_TYPE, RAW_INBOUND_PARSE

TOKEN = "twilio-token-for-inbound-tests"
SG_TOKEN = "sendgrid-inbound-token"
PUBLIC = "https://ndr.example.com/ndrflow"  # behind a proxy that strips /ndrflow
PATH = "/v1/webhooks/twilio/inbound"
URL = PUBLIC + PATH
PHONE = "+919876543210"
DOMAIN = "in.example.com"


@dataclass
class Inbound:
    client: TestClient
    temporal: FakeTemporal
    engine: Engine

    def add_case(self, sid: str, *, phone: str = PHONE, email: str = "asha@example.com", order: str = "A-1") -> routes.OpenCaseRoute:
        with Session(self.engine) as s:
            s.add(Shipment(shipment_id=sid, workflow_id="shipment-" + sid, merchant_id="acme", carrier="generic",
                           tracking_number="T" + sid, order_id=order, customer_phone=phone, customer_email=email,
                           customer_locale="en-IN", customer_timezone="Asia/Kolkata"))
            s.commit()
            route = routes.open_route(s, shipment_id=sid, attempt=1, phone=phone, email=email)
        self.temporal.add_shipment(sid)
        return route

    def post_twilio(self, body: str, *, sid: str = "SM1", token: str = TOKEN, url: str = URL, path: str = PATH,
                    whatsapp: bool = False, sign: bool = True, **extra: str) -> Any:
        prefix = "whatsapp:" if whatsapp else ""
        params = {"AccountSid": "AC" + "1" * 32, "ApiVersion": "2010-04-01", "Body": body, "From": prefix + PHONE,
                  "MessageSid": sid, "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "To": prefix + "+15005550006",
                  **extra}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if sign:
            headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, params)
        return self.client.post(path, content=urlencode(params), headers=headers)

    def updates(self, sid: str) -> list[Any]:
        return [u for _, u in self.temporal.workflows["shipment-" + sid].updates]

    def inbound_rows(self) -> tuple[list[routes.InboundReply], list[ns.InboundMessage]]:
        with Session(self.engine) as s:
            return list(s.exec(select(routes.InboundReply)).all()), list(s.exec(select(ns.InboundMessage)).all())

    def refusals(self) -> list[RefusedRequest]:
        with Session(self.engine) as s:
            return list(s.exec(select(RefusedRequest)).all())

    def outbox(self, to: str = PHONE) -> list[ns.OutboxMessage]:
        return ns.list_outbox(self.engine, to=to)


@pytest.fixture
def inbound(database_url: str, tmp_path: Path) -> Inbound:
    settings = Settings(home=tmp_path / "home", database_url=database_url, secret_key="k", public_base_url=PUBLIC,
                        twilio_auth_token=TOKEN, sendgrid_inbound_token=SG_TOKEN)
    temporal = FakeTemporal()
    app = create_app(settings, temporal=temporal)  # type: ignore[arg-type]
    app.state.ndr_settings = NdrSettings(inbound_email_domain=DOMAIN)
    return Inbound(TestClient(app), temporal, app.state.engine)


# ---- Twilio: authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "kw"),
    [
        ("unsigned", {"sign": False}),
        ("signed with another token", {"token": "not-our-token"}),
        ("signed over the URL the proxy forwarded", {"url": "http://testserver" + PATH}),
        ("signed over another path", {"url": PUBLIC + "/v1/webhooks/twilio/status"}),
    ],
)
def test_unverifiable_webhooks_get_403_and_change_nothing(inbound: Inbound, how: str, kw: dict[str, Any]) -> None:
    inbound.add_case("shp_a")
    r = inbound.post_twilio("1", **kw)
    assert r.status_code == 403, how
    assert "X-Twilio-Signature" in r.json()["detail"]
    assert inbound.updates("shp_a") == []
    assert inbound.inbound_rows() == ([], [])
    [refusal] = inbound.refusals()
    assert (refusal.status_code, refusal.path) == (403, PATH)


def test_a_body_changed_after_signing_is_refused(inbound: Inbound) -> None:
    inbound.add_case("shp_a")
    params = {"Body": "1", "From": PHONE, "MessageSid": "SM1", "To": "+15005550006"}
    signature = RequestValidator(TOKEN).compute_signature(URL, params)
    tampered = urlencode({**params, "Body": "4"})
    r = inbound.client.post(PATH, content=tampered, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                              "X-Twilio-Signature": signature})
    assert r.status_code == 403 and inbound.updates("shp_a") == []


def test_signature_over_the_public_url_with_its_query_string(inbound: Inbound) -> None:
    inbound.add_case("shp_a")
    ok = inbound.post_twilio("1", url=URL + "?src=wa", path=PATH + "?src=wa")
    assert ok.status_code == 200
    # The same signature does not cover another query string.
    refused = inbound.post_twilio("1", sid="SM2", url=URL + "?src=wa", path=PATH + "?src=sms")
    assert refused.status_code == 403


def test_without_an_auth_token_nothing_can_be_verified(database_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h", database_url=database_url, secret_key="k", public_base_url=PUBLIC)
    settings.twilio_auth_token = ""
    client = TestClient(create_app(settings, temporal=FakeTemporal()))  # type: ignore[arg-type]
    params = {"Body": "1", "From": PHONE, "MessageSid": "SM1"}
    r = client.post(PATH, content=urlencode(params), headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": RequestValidator("").compute_signature(URL, params)})
    assert r.status_code == 403 and "NDRFLOW_TWILIO_AUTH_TOKEN" in r.json()["detail"]


# ---- Twilio: the message ------------------------------------------------------------------------


def test_signed_reply_reaches_the_case_and_answers_with_empty_twiml(inbound: Inbound) -> None:
    inbound.add_case("shp_a")
    r = inbound.post_twilio("2", sid="SMa1")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml") and r.text.endswith("<Response/>")
    [update] = inbound.updates("shp_a")
    assert (update.channel, update.kind, update.action, update.text, update.message_id) == ("sms", "choice", "reschedule", "2", "SMa1")
    assert inbound.temporal.case("shp_a")["state"] == "awaiting_date"
    replies, messages = inbound.inbound_rows()
    assert [(x.outcome, x.shipment_id, x.body) for x in replies] == [("routed", "shp_a", "2")]
    # The words are logged once (with the routing outcome); the arrival row keeps none.
    assert [(m.provider, m.channel, m.from_address, m.body) for m in messages] == [("outbox", "sms", PHONE, "")]


def test_a_retried_message_sid_is_applied_once(inbound: Inbound) -> None:
    inbound.add_case("shp_a")
    for _ in range(3):
        assert inbound.post_twilio("1", sid="SMdup").status_code == 200
    assert len(inbound.updates("shp_a")) == 1
    assert inbound.temporal.case("shp_a")["state"] == "decided"
    replies, messages = inbound.inbound_rows()
    assert len(replies) == 1 and len(messages) == 1


@pytest.mark.parametrize("word", ["STOP", "cancel", "Stop."])
def test_stop_in_an_ndr_conversation_is_an_opt_out_not_a_cancellation(inbound: Inbound, word: str) -> None:
    inbound.add_case("shp_a")
    assert inbound.post_twilio(word, sid="SMstop").status_code == 200
    assert ns.is_opted_out(inbound.engine, channel="sms", address=PHONE)
    assert not ns.is_opted_out(inbound.engine, channel="email", address="asha@example.com")
    [update] = inbound.updates("shp_a")
    assert (update.kind, update.action) == ("opt_out", None)
    case = inbound.temporal.case("shp_a")
    assert case["state"] == "asking" and case["instructions"] == [] and "opted_out" in case["flags"]
    assert inbound.outbox() == []  # nothing is sent after a STOP
    _, [message] = inbound.inbound_rows()
    assert message.body == word  # the keyword is the whole message: kept as the opt-out's record
    # START opts back in (and the case asks again).
    assert inbound.post_twilio("START", sid="SMstart").status_code == 200
    assert not ns.is_opted_out(inbound.engine, channel="sms", address=PHONE)
    assert inbound.updates("shp_a")[-1].kind == "opt_in"


def test_twilio_advanced_opt_out_type_wins_over_the_words(inbound: Inbound) -> None:
    # A custom opt-out keyword configured in Twilio: the parser does not know it, Twilio does.
    inbound.add_case("shp_a")
    assert inbound.post_twilio("ARRET", sid="SMx", OptOutType="STOP").status_code == 200
    assert ns.is_opted_out(inbound.engine, channel="sms", address=PHONE)
    assert inbound.updates("shp_a")[-1].kind == "opt_out"


def test_whatsapp_reply_opens_the_session_window(inbound: Inbound) -> None:
    inbound.add_case("shp_a")
    assert inbound.post_twilio("1", sid="SMwa", whatsapp=True).status_code == 200
    assert ns.last_inbound_at(inbound.engine, channel="whatsapp", from_address=PHONE) is not None
    [update] = inbound.updates("shp_a")
    assert (update.channel, update.action) == ("whatsapp", "reattempt")


def test_two_open_cases_get_one_which_case_question(inbound: Inbound) -> None:
    a = inbound.add_case("shp_a", order="A-1")
    b = inbound.add_case("shp_b", order="B-2")
    for _ in range(2):  # Twilio retries: still one question
        assert inbound.post_twilio("kal", sid="SMwhich").status_code == 200
    assert inbound.updates("shp_a") == [] and inbound.updates("shp_b") == []
    [question] = inbound.outbox()
    assert (question.purpose, question.channel) == ("ndr_which_case", "sms")
    assert a.ref in question.body and b.ref in question.body and "A-1" in question.body and "B-2" in question.body
    # The bare code answers the question: the earlier message goes to that case.
    assert inbound.post_twilio(b.ref, sid="SMref").status_code == 200
    [update] = inbound.updates("shp_b")
    assert update.text == "kal" and update.action == "reschedule" and update.requested_date  # "kal": tomorrow


def test_a_stranger_gets_no_answer(inbound: Inbound) -> None:
    r = inbound.post_twilio("1", sid="SMs")
    assert r.status_code == 200 and r.text.endswith("<Response/>")
    [reply], _ = inbound.inbound_rows()
    assert reply.outcome == "no_open_case"
    assert inbound.outbox() == []


@pytest.mark.parametrize(
    ("content", "ctype", "problem"),
    [
        (urlencode({"Body": "1", "From": PHONE}), "application/x-www-form-urlencoded", "MessageSid is missing"),
        (urlencode({"Body": "1", "MessageSid": "SM1"}), "application/x-www-form-urlencoded", "From is missing"),
        (b"\xff\xfe", "application/x-www-form-urlencoded", "UTF-8"),
    ],
)
def test_signed_but_unreadable_input_is_a_named_400(inbound: Inbound, content: Any, ctype: str, problem: str) -> None:
    from urllib.parse import parse_qs

    raw = content if isinstance(content, bytes) else content.encode()
    try:
        params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
    except UnicodeDecodeError:
        params = {}
    signature = RequestValidator(TOKEN).compute_signature(URL, params)
    r = inbound.client.post(PATH, content=raw, headers={"Content-Type": ctype, "X-Twilio-Signature": signature})
    if problem == "UTF-8":
        assert r.status_code == 403  # cannot even read what was signed
    else:
        assert r.status_code == 400 and problem in r.json()["detail"]
    assert inbound.refusals()[-1].status_code == r.status_code
    assert inbound.inbound_rows() == ([], [])


# ---- SendGrid Inbound Parse ---------------------------------------------------------------------


def _email(to: str, text: str = "2") -> bytes:
    raw = RAW_INBOUND_PARSE.replace(b"case-k7q@parse.acme.example", to.encode())
    return raw.replace(b'name="text"\r\n\r\n2\r\n', f'name="text"\r\n\r\n{text}\r\n'.encode())


@pytest.mark.parametrize("query", ["", "?token=wrong", "?token="])
def test_inbound_parse_without_the_url_token_is_refused(inbound: Inbound, query: str) -> None:
    route = inbound.add_case("shp_a")
    to = routes.reply_to_address(route.reply_key or "", DOMAIN)
    r = inbound.client.post("/v1/webhooks/sendgrid/inbound" + query, content=_email(to), headers={"Content-Type": INBOUND_CONTENT_TYPE})
    assert r.status_code == 403
    assert inbound.updates("shp_a") == [] and inbound.inbound_rows() == ([], [])


def test_inbound_parse_finds_the_case_by_its_reply_to_address(inbound: Inbound) -> None:
    inbound.add_case("shp_other", phone="+919812345678", email="asha@example.com")
    route = inbound.add_case("shp_a")  # the same customer email has two open cases
    to = routes.reply_to_address(route.reply_key or "", DOMAIN)
    for _ in range(2):  # SendGrid retries
        r = inbound.client.post(f"/v1/webhooks/sendgrid/inbound?token={SG_TOKEN}", content=_email(to),
                                headers={"Content-Type": INBOUND_CONTENT_TYPE})
        assert r.status_code == 200
    [update] = inbound.updates("shp_a")
    assert (update.channel, update.action, update.text) == ("email", "reschedule", "2")  # quoted history dropped
    assert inbound.updates("shp_other") == []


def test_inbound_parse_bad_input_is_a_named_400(inbound: Inbound) -> None:
    r = inbound.client.post(f"/v1/webhooks/sendgrid/inbound?token={SG_TOKEN}", json={"from": "x"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["detail"]
    no_sender = _email("r+x@" + DOMAIN).replace(b'name="from"\r\n\r\nAsha Rao <Asha@Example.com>', b'name="from"\r\n\r\n')
    r = inbound.client.post(f"/v1/webhooks/sendgrid/inbound?token={SG_TOKEN}", content=no_sender,
                            headers={"Content-Type": INBOUND_CONTENT_TYPE})
    assert r.status_code == 400 and "'from' is missing" in r.json()["detail"]
    assert [x.status_code for x in inbound.refusals()] == [400, 400]


def test_the_inbound_token_is_generated_per_home(tmp_path: Path) -> None:
    first = Settings(home=tmp_path / "h").with_home_secrets()
    again = Settings(home=tmp_path / "h").with_home_secrets()
    other = Settings(home=tmp_path / "h2").with_home_secrets()
    assert first.sendgrid_inbound_token and first.sendgrid_inbound_token == again.sendgrid_inbound_token
    assert other.sendgrid_inbound_token != first.sendgrid_inbound_token


def test_a_reply_to_a_closed_case_is_answered_once_through_the_channel_stack(inbound: Inbound) -> None:
    inbound.add_case("shp_a")
    inbound.temporal.workflows["shipment-shp_a"].state.ndr_cases[0]["state"] = "closed"
    for _ in range(2):  # Twilio retries
        assert inbound.post_twilio("1", sid="SMlate").status_code == 200
    [reply], _ = inbound.inbound_rows()
    assert reply.outcome == "refused" and "closed" in reply.detail
    # One notification for this inbound message (sent, or failed while its template is missing):
    # the exactly-once key is the inbound message id, so the retry did not answer twice.
    with Session(inbound.engine) as s:
        rows = s.exec(select(ns.NotificationLog).where(ns.NotificationLog.purpose == "ndr_case_closed")).all()
    assert [(r.shipment_id, r.channel, r.occurrence) for r in rows] == [("shp_a", "sms", "inbound:SMlate")]


def test_the_inbound_token_never_reaches_the_access_log() -> None:
    import logging

    from api.routes.inbound import RedactInboundToken

    assert any(isinstance(f, RedactInboundToken) for f in logging.getLogger("uvicorn.access").filters)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "POST", f"/v1/webhooks/sendgrid/inbound?token={SG_TOKEN}&x=1", "1.1", 200), None)
    RedactInboundToken().filter(record)
    line = record.getMessage()
    assert SG_TOKEN not in line and "token=[redacted]&x=1" in line


def test_temporal_unavailable_is_a_503_and_twilios_retry_delivers_it(inbound: Inbound) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    inbound.add_case("shp_a")
    real = inbound.temporal.get_workflow_handle

    class Down:
        async def query(self, *a: Any, **k: Any) -> Any:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    inbound.temporal.get_workflow_handle = lambda *a, **k: Down()  # type: ignore[method-assign]
    r = inbound.post_twilio("1", sid="SMretry")
    assert r.status_code == 503 and "unavailable" in r.json()["detail"].lower()
    [reply], _ = inbound.inbound_rows()
    assert reply.outcome == "failed"
    inbound.temporal.get_workflow_handle = real  # type: ignore[method-assign]
    assert inbound.post_twilio("1", sid="SMretry").status_code == 200
    [update] = inbound.updates("shp_a")
    assert update.message_id == "SMretry" and inbound.temporal.case("shp_a")["state"] == "decided"
    [reply], [message] = inbound.inbound_rows()
    assert reply.outcome == "routed"


def test_a_case_whose_workflow_is_gone_is_answered_200_and_left_alone(inbound: Inbound) -> None:
    inbound.add_case("shp_a")
    del inbound.temporal.workflows["shipment-shp_a"]  # finished long ago, past retention
    r = inbound.post_twilio("1", sid="SMgone")
    assert r.status_code == 200
    assert inbound.outbox() == []
