"""The customer self-service page, through FastAPI's TestClient with a fake Temporal client that
runs the real customer_reply validator and state machine."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from sqlmodel import Session, select
from temporalio.service import RPCError, RPCStatusCode

from api.customer_text import TEXT
from api.main import create_app
from api.routes import customer
from api.tokens import CSRF_COOKIE, make_case_token
from ndrflow.config import Settings
from ndrflow.ndr_settings import NdrSettings
from store import ndr as S
from tests.api.ndr_fakes import FakeHandle, FakeTemporal
from workflows.ids import shipment_workflow_id
from workflows.ndr_policy import allowed_reattempt_dates

KEY = "test-secret-key-" + "x" * 27
IST = "Asia/Kolkata"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=ZoneInfo(IST))  # Thursday: dates Fri 27 .. Wed 2 Dec
ALLOWED = [d.isoformat() for d in allowed_reattempt_dates(NOW, IST)]


@pytest.fixture
def temporal() -> FakeTemporal:
    return FakeTemporal()


@pytest.fixture
def client(database_url, tmp_path, temporal):  # type: ignore[no-untyped-def]
    app = create_app(Settings(secret_key=KEY, home=tmp_path, database_url=database_url), temporal=temporal)  # type: ignore[arg-type]
    app.include_router(customer.router)
    app.state.ndr_settings = NdrSettings()
    app.state.clock = lambda: NOW
    with TestClient(app) as c:
        yield c


def link(shipment_id: str = "shp_a", attempt: int = 1, ref: str = "K7QM") -> str:
    return "/r/" + make_case_token(shipment_id, attempt, ref, secret_key=KEY)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no csrf field in the page"
    return m.group(1)


def post(client, url, **fields):  # type: ignore[no-untyped-def]
    page = client.get(url)
    assert page.status_code == 200, page.text
    return client.post(url, data={"csrf": csrf_of(page.text), **fields})


# ---- showing the page ---------------------------------------------------------------------------


def test_page_offers_only_allowed_dates_and_sets_security_headers(client, temporal):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", now=NOW)
    r = client.get(link())
    assert r.status_code == 200
    options = re.findall(r'<option value="([0-9-]+)"', r.text)
    assert options == ALLOWED and options[0] == "2026-11-27" and options[-1] == "2026-12-02"
    assert "Friday 27 November" in r.text
    for form_choice in ("reattempt", "reschedule", "update_address", "update_phone", "rto"):
        assert f'name="choice" value="{form_choice}"' in r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    cookie = r.headers["set-cookie"]
    assert CSRF_COOKIE in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/r/" in cookie


def test_page_shows_only_what_the_reason_allows(client, temporal):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", reason="payment_issue", now=NOW)
    r = client.get(link())
    assert 'value="reschedule"' in r.text and 'value="rto"' in r.text
    assert 'value="update_address"' not in r.text and 'value="update_phone"' not in r.text


@pytest.mark.parametrize(
    ("locale", "tz", "query", "expect_lang", "expect_text"),
    [
        ("hi-IN", IST, "", "hi", "डिलीवरी की तारीख चुनें"),
        ("ko-KR", "Asia/Seoul", "", "ko", "배송 날짜 선택"),
        ("ko-KR", "Asia/Seoul", "?lang=en", "en", "Pick a delivery date"),
        ("fr-FR", "Europe/Paris", "", "en", "Pick a delivery date"),
    ],
)
def test_page_speaks_the_customers_language(client, temporal, locale, tz, query, expect_lang, expect_text):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", locale=locale, tz=tz, now=NOW)
    r = client.get(link() + query)
    assert r.status_code == 200
    assert f'<html lang="{expect_lang}">' in r.text and expect_text in r.text


def test_every_language_has_every_text():
    keys = set(TEXT["en"])
    for lang, texts in TEXT.items():
        assert set(texts) == keys, lang


def test_customer_supplied_text_is_escaped(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", now=NOW)
    wf.state.profile.tracking_number = '<script>alert("x")</script>'
    r = client.get(link())
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text


# ---- bad links ----------------------------------------------------------------------------------


def test_tampered_link_gets_a_clear_400_page(client, temporal):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", now=NOW)
    url = link()
    r = client.get(url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"))
    assert r.status_code == 400 and TEXT["en"]["invalid_title"] in r.text
    assert client.get("/r/not-a-token").status_code == 400
    assert client.post("/r/not-a-token", data={"choice": "rto"}).status_code == 400
    assert temporal.handles_asked == []  # nothing reached the workflow


def test_expired_link_gets_a_clear_410_page(client, temporal, monkeypatch):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", now=NOW)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 9 * 86400)
    url = link()
    monkeypatch.undo()
    r = client.get(url, headers={"Accept-Language": "hi-IN,hi;q=0.9"})
    assert r.status_code == 410 and TEXT["hi"]["expired_title"] in r.text


def test_link_for_another_code_or_a_missing_case(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", now=NOW)
    wf.state.ndr_cases[0]["ref"] = "K7QM"
    assert client.get(link(ref="X4PD")).status_code == 400
    assert client.get(link(attempt=2)).status_code == 404
    assert client.get(link("shp_missing")).status_code == 404  # workflow not found


def test_temporal_unavailable_is_a_503_page_not_a_500(client, temporal, monkeypatch):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", now=NOW)

    async def down(self, *a, **k):  # type: ignore[no-untyped-def]
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    monkeypatch.setattr(FakeHandle, "query", down)
    r = client.get(link())
    assert r.status_code == 503 and TEXT["en"]["unavailable_title"] in r.text


# ---- CSRF ---------------------------------------------------------------------------------------


def test_post_without_the_form_token_or_cookie_is_refused(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", now=NOW)
    url = link()
    page = client.get(url)
    token = csrf_of(page.text)
    r = client.post(url, data={"choice": "reattempt"})
    assert r.status_code == 403 and TEXT["en"]["csrf_title"] in r.text
    client.cookies.set(CSRF_COOKIE, "forged-nonce", path="/r/")
    assert client.post(url, data={"choice": "reattempt", "csrf": token}).status_code == 403
    client.cookies.clear()
    assert client.post(url, data={"choice": "reattempt", "csrf": token}).status_code == 403  # cookie gone
    assert wf.updates == []


def test_a_form_token_from_another_case_is_refused(client, temporal):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", now=NOW)
    wf_b = temporal.add_shipment("shp_b", now=NOW)
    page_a = client.get(link("shp_a"))
    r = client.post(link("shp_b"), data={"choice": "reattempt", "csrf": csrf_of(page_a.text)})
    assert r.status_code == 403
    assert wf_b.updates == []


# ---- answers -------------------------------------------------------------------------------------


def test_pick_a_date_reaches_the_workflow_as_customer_reply(client, temporal, database_url):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", now=NOW)
    url = link()
    r = post(client, url, choice="reschedule", date="2026-11-28")
    assert r.status_code == 200, r.text
    assert "Saturday 28 November" in r.text and TEXT["en"]["done_title"] in r.text
    assert temporal.handles_asked[-1] == shipment_workflow_id("shp_a")
    name, inp = wf.updates[0]
    assert name == "customer_reply"
    assert (inp.attempt, inp.channel, inp.kind, inp.action, inp.requested_date, inp.case_ref) == (
        1, "web", "date", "reschedule", "2026-11-28", "K7QM",
    )
    assert inp.message_id and inp.message_id.startswith("web:")
    assert temporal.case("shp_a")["state"] == "decided"
    # The link is now used: a clear 410 page that repeats the decision.
    again = client.get(url)
    assert again.status_code == 410 and TEXT["en"]["used_title"] in again.text and "Saturday 28 November" in again.text
    assert client.post(url, data={"choice": "rto", "confirm": "yes", "csrf": "x"}).status_code == 403
    from store.db import make_engine

    with Session(make_engine(database_url)) as s:
        logged = s.exec(select(S.InboundReply)).one()
        assert (logged.channel, logged.outcome, logged.shipment_id) == ("web", "routed", "shp_a")


@pytest.mark.parametrize("bad_date", ["2026-11-26", "2026-12-03", "2026-11-20", "Saturday", ""])
def test_only_allowed_dates_are_accepted(client, temporal, bad_date):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", now=NOW)
    r = post(client, link(), choice="reschedule", date=bad_date)
    assert r.status_code == 422 and TEXT["en"]["err_date"] in r.text
    assert wf.updates == []


def test_phone_update(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", reason="customer_unreachable", now=NOW)
    url = link()
    assert post(client, url, choice="update_phone", phone="12345").status_code == 422
    r = post(client, url, choice="update_phone", phone="98765 43210")
    assert r.status_code == 200
    inp = wf.updates[0][1]
    assert (inp.kind, inp.action, inp.phone) == ("phone", "update_phone", "+919876543210")


def test_address_update_with_landmark(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", reason="address_issue", locale="hi-IN", now=NOW)
    url = link()
    short = post(client, url, choice="update_address", line1="x")
    assert short.status_code == 422 and TEXT["hi"]["err_address"] in short.text
    assert 'value="x"' in short.text  # what they typed is kept
    r = post(client, url, choice="update_address", line1="  45 Gandhi Nagar,   Jaipur ", landmark="near Shiv mandir", postal_code="302015")
    assert r.status_code == 200 and TEXT["hi"]["done_update_address"] in r.text
    assert wf.updates[0][1].address == {"line1": "45 Gandhi Nagar, Jaipur", "landmark": "near Shiv mandir", "postal_code": "302015"}


def test_return_needs_the_confirmation_tick(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", now=NOW)
    url = link()
    assert post(client, url, choice="rto").status_code == 422
    r = post(client, url, choice="rto", confirm="yes")
    assert r.status_code == 200 and TEXT["en"]["done_rto"] in r.text
    assert wf.updates[0][1].action == "rto"


def test_a_choice_the_reason_does_not_allow_is_refused(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", reason="payment_issue", now=NOW)
    r = post(client, link(), choice="update_address", line1="12 MG Road, Bengaluru")
    assert r.status_code == 422 and TEXT["en"]["err_choice"] in r.text
    assert post(client, link(), choice="explode").status_code == 422
    assert wf.updates == []


def test_closed_and_escalated_cases(client, temporal):  # type: ignore[no-untyped-def]
    wf = temporal.add_shipment("shp_a", now=NOW)
    wf.state.ndr_cases[0]["state"] = "closed"
    r = client.get(link())
    assert r.status_code == 410 and TEXT["en"]["closed_title"] in r.text
    wf.state.ndr_cases[0]["state"] = "escalated"
    r = client.get(link())
    assert r.status_code == 409 and TEXT["en"]["used_agent"] in r.text


def test_workflow_refusal_is_a_clear_page(client, temporal, monkeypatch):  # type: ignore[no-untyped-def]
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError

    temporal.add_shipment("shp_a", now=NOW)

    async def refuse(self, *a, **k):  # type: ignore[no-untyped-def]
        raise WorkflowUpdateFailedError(ApplicationError("NDR case 1 is closed (delivered)"))

    monkeypatch.setattr(FakeHandle, "execute_update", refuse)
    r = post(client, link(), choice="reattempt")
    assert r.status_code == 410 and TEXT["en"]["closed_title"] in r.text


@pytest.mark.parametrize(
    "path",
    ["/r/%00", "/r/" + "a" * 5000, "/r/shp_a~1~K7QM.AAAAAA.AAAAAAAAAAAAAAAAAAAAAA", "/r/..%2F..%2Fetc", "/r/ü"],
)
def test_garbage_never_yields_a_500(client, temporal, path):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", now=NOW)
    assert 400 <= client.get(path).status_code < 500
    assert 400 <= client.post(path, content=b"\xff\xfe", headers={"content-type": "multipart/form-data; boundary=x"}).status_code < 500


def test_dates_follow_the_clock_in_the_customers_zone(client, temporal):  # type: ignore[no-untyped-def]
    temporal.add_shipment("shp_a", tz="Asia/Seoul", locale="ko-KR", now=NOW)
    client.app.state.clock = lambda: NOW + timedelta(hours=6)  # 21:00 in India = 00:30 Friday in Seoul
    r = client.get(link())
    options = re.findall(r'<option value="([0-9-]+)"', r.text)
    assert options[0] == "2026-11-28"
