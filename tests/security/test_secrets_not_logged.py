"""Secrets and personal data never reach the logs or the refusal log.

A full flow (register, carrier events signed and keyed, bad keys, a bad phone number, a forged
signature, codec calls) runs with every logger at DEBUG; then the captured log text and the
stored refusal reasons are searched for every key, secret and contact detail involved.
"""

from __future__ import annotations

import logging

import pytest
from sqlmodel import Session, select

from api.redaction import AccessLogRedactor, redact
from carriers.fake.payloads import Scan, webhook
from ndrflow.codec import format_keys, generate_key
from store.models import RefusedRequest
from tests.api.conftest import Api
from tests.api.routes.test_merchants import BODY


def test_full_flow_logs_no_key_secret_or_contact_detail(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    settings = api.client.app.state.settings  # type: ignore[attr-defined]
    settings.codec_keys = format_keys([generate_key("k1")])
    caplog.set_level(logging.DEBUG)
    c = api.client
    bad_phone = {
        **BODY,
        "tracking_number": "TRK9",
        "customer": {**BODY["customer"], "phone": "+91 98765 4321"},
    }
    assert c.post("/v1/shipments", json=bad_phone, headers=api.auth(api.merchant_key)).status_code == 422
    assert c.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key)).status_code == 201
    assert (
        c.post(
            "/v1/shipments", json=BODY, headers={"Authorization": "Bearer " + api.merchant_key[:-4] + "AAAA"}
        ).status_code
        == 401
    )
    assert (
        c.post(
            "/v1/shipments", json={**BODY, "merchant_id": "acme"}, headers=api.auth(api.other_merchant_key)
        ).status_code
        == 403
    )
    body, signed = webhook(
        "generic",
        Scan(tracking_number="TRK1001", milestone="out_for_delivery", event_id="e1"),
        "generic-secret",
    )
    assert c.post("/v1/carriers/generic/events", content=body, headers=signed).status_code == 202
    _, forged = webhook("generic", Scan(tracking_number="TRK1001", milestone="delivered"), "guessed-secret")
    assert c.post("/v1/carriers/generic/events", content=body, headers=forged).status_code == 401
    events = {
        "events": [
            {
                "tracking_number": "TRK1001",
                "event_id": "e2",
                "status": "delivered",
                "occurred_at": "2026-11-28T09:10:00+05:30",
                "raw_status": "Delivered to Asha Rao +919876543210",
            }
        ]
    }
    assert (
        c.post("/v1/carriers/generic/events", json=events, headers=api.auth(api.carrier_key)).status_code
        == 202
    )
    assert (
        c.post("/codec/decode", json={"payloads": []}, headers=api.auth(api.merchant_key)).status_code == 403
    )
    assert c.post("/codec/encode", json={"payloads": []}, headers=api.auth(api.agent_key)).status_code == 200

    secrets = {
        "merchant key": api.merchant_key,
        "other merchant key": api.other_merchant_key,
        "carrier key": api.carrier_key,
        "agent key": api.agent_key,
        "forged key": api.merchant_key[:-4] + "AAAA",
        "secret_key": settings.secret_key,
        "codec key": settings.codec_keys.split(":", 1)[1],
        "carrier webhook secret": "generic-secret",
        "phone (E.164)": "+919876543210",
        "phone (as typed)": "98765 43210",
        "bad phone": "98765 4321",
        "email": "asha@example.com",
        "name": "Asha Rao",
        "address": "12 MG Road",
    }
    with Session(api.engine) as s:
        refusal_text = "\n".join(f"{r.path} {r.reason}" for r in s.exec(select(RefusedRequest)).all())
    assert "customer.phone" in refusal_text  # the refusal log still says what was wrong
    assert caplog.records, "the flow logs something, so the search below is not vacuous"
    for what, value in secrets.items():
        assert value not in caplog.text, f"{what} appears in the logs"
        assert value not in refusal_text, f"{what} appears in the refusal log"


def test_settings_repr_hides_secrets() -> None:
    from ndrflow.config import Settings

    s = Settings(
        _env_file=None,
        secret_key="s3cret-value",
        codec_keys="k1:" + "A" * 43 + "=",
        temporal_api_key="tmprl-key",
    )
    assert "s3cret-value" not in repr(s) and "A" * 43 not in repr(s) and "tmprl-key" not in repr(s)


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("invalid key ndr_m_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "abcdefgh", "invalid key"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGci", "Authorization"),
        ("customer.phone: cannot parse '+91 98765 43210'", "98765", "customer.phone"),
        ("reply to asha.rao@example.com failed", "asha.rao", "reply to"),
        ("occurred_at 2026-11-28T09:10:00+05:30 is in the future", "", "2026-11-28T09:10:00+05:30"),
        ("GET /r/eyJzaGlwbWVudCI6MX0.abc HTTP/1.1", "eyJzaGlwbWVudCI6MX0", "/r/"),
    ],
)
def test_redact(text: str, hidden: str, kept: str) -> None:
    out = redact(text)
    assert kept in out
    if hidden:
        assert hidden not in out


def test_access_log_hides_capability_tokens_in_paths() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "POST", "/codec/ui/Zm9vYmFyYmF6cXV4/decode", "1.1", 200),
        None,
    )
    record2 = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/r/tok.en-123?lang=hi", "1.1", 200),
        None,
    )
    f = AccessLogRedactor()
    assert f.filter(record) and f.filter(record2)
    assert "Zm9vYmFyYmF6cXV4" not in record.getMessage() and "/codec/ui/***/decode" in record.getMessage()
    assert "tok.en-123" not in record2.getMessage() and "/r/***?lang=hi" in record2.getMessage()


def test_app_installs_the_access_log_filter(api: Api) -> None:
    assert any(isinstance(f, AccessLogRedactor) for f in logging.getLogger("uvicorn.access").filters)
