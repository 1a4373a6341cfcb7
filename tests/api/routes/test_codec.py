"""The codec server: Temporal's remote codec protocol, who may call it, CORS for the Web UI."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from temporalio.api.common.v1 import Payload

from api.routes.codec import codec_ui_endpoint, ui_token
from ndrflow.codec import ENCODING, KEY_ID_FIELD, codec_for
from tests.api.conftest import Api

UI = "http://127.0.0.1:8233"  # Settings.temporal_ui_url default


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain_payload(value: object) -> dict:
    return {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(value).encode())}


def test_encode_then_decode_round_trips_in_protocol_shape(api: Api) -> None:
    h = api.auth(api.agent_key)
    original = {"payloads": [plain_payload({"phone": "+919876543210"}), plain_payload("hello")]}
    enc = api.client.post("/codec/encode", json=original, headers=h)
    assert enc.status_code == 200, enc.text
    sealed = enc.json()["payloads"]
    assert [base64.b64decode(p["metadata"]["encoding"]) for p in sealed] == [ENCODING, ENCODING]
    assert all(KEY_ID_FIELD in p["metadata"] for p in sealed)
    assert "+919876543210" not in enc.text
    dec = api.client.post("/codec/decode", json={"payloads": sealed}, headers=h)
    assert dec.status_code == 200 and dec.json() == original


def test_decodes_what_the_worker_encoded_with_the_same_settings(api: Api) -> None:
    settings = api.client.app.state.settings  # type: ignore[attr-defined]
    [sealed] = asyncio.run(
        codec_for(settings).encode(
            [Payload(metadata={"encoding": b"json/plain"}, data=b'"asha@example.com"')]
        )
    )
    body = {
        "payloads": [{"metadata": {k: b64(v) for k, v in sealed.metadata.items()}, "data": b64(sealed.data)}]
    }
    r = api.client.post("/codec/decode", json=body, headers=api.auth(api.agent_key))
    assert base64.b64decode(r.json()["payloads"][0]["data"]) == b'"asha@example.com"'


def test_the_protocol_only_looks_at_the_last_path_segment_and_empty_lists_work(api: Api) -> None:
    r = api.client.post("/codec/decode", json={"payloads": []}, headers=api.auth(api.agent_key))
    assert r.status_code == 200 and r.json() == {}  # protobuf JSON omits an empty list
    assert (
        api.client.post("/codec/explode", json={"payloads": []}, headers=api.auth(api.agent_key)).status_code
        == 422
    )


def test_undecodable_payloads_are_4xx_naming_the_problem(api: Api) -> None:
    h = api.auth(api.agent_key)
    foreign = {
        "metadata": {"encoding": b64(ENCODING), KEY_ID_FIELD: b64(b"retired-2024")},
        "data": b64(b"x" * 40),
    }
    r = api.client.post("/codec/decode", json={"payloads": [foreign]}, headers=h)
    assert r.status_code == 422 and "retired-2024" in r.json()["detail"]
    bad_b64 = api.client.post(
        "/codec/decode", json={"payloads": [{"metadata": {"encoding": "!!"}, "data": "x"}]}, headers=h
    )
    assert bad_b64.status_code == 400 and "protobuf JSON" in bad_b64.json()["detail"]


def test_only_agent_keys_may_call_it(api: Api) -> None:
    body = {"payloads": [plain_payload("x")]}
    assert api.client.post("/codec/decode", json=body).status_code == 401
    assert (
        api.client.post(
            "/codec/decode", json=body, headers={"Authorization": "Bearer ndr_a_" + "x" * 43}
        ).status_code
        == 401
    )
    for key in (api.merchant_key, api.carrier_key):
        r = api.client.post("/codec/decode", json=body, headers=api.auth(key))
        assert r.status_code == 403 and "needs agent" in r.json()["detail"]
    assert api.client.post("/codec/encode", json=body, headers=api.auth(api.merchant_key)).status_code == 403


def test_dev_ui_capability_url(api: Api) -> None:
    settings = api.client.app.state.settings  # type: ignore[attr-defined]
    endpoint = codec_ui_endpoint(settings, "http://127.0.0.1:8000/")
    assert endpoint == f"http://127.0.0.1:8000/codec/ui/{ui_token(settings)}"
    path = endpoint.removeprefix("http://127.0.0.1:8000")
    sealed = api.client.post(f"{path}/encode", json={"payloads": [plain_payload("x")]}).json()
    back = api.client.post(f"{path}/decode", json=sealed, headers={"X-Namespace": "default", "Origin": UI})
    assert back.status_code == 200 and back.json() == {"payloads": [plain_payload("x")]}
    assert back.headers["access-control-allow-origin"] == UI
    # A guessed token is "not found"; the token changes with the secret key.
    assert api.client.post("/codec/ui/guess/decode", json={"payloads": []}).status_code == 404
    assert ui_token(settings.model_copy(update={"secret_key": "other"})) != ui_token(settings)


def test_no_capability_url_without_a_secret_key(api: Api) -> None:
    settings = api.client.app.state.settings  # type: ignore[attr-defined]
    empty = settings.model_copy(update={"secret_key": ""})
    with pytest.raises(ValueError, match="SECRET_KEY"):
        ui_token(empty)
    # The token an empty key would give is refused too, should the key ever be blanked.
    import base64 as b
    import hashlib
    import hmac

    guess = b.urlsafe_b64encode(hmac.new(b"", b"ndrflow codec ui v1", hashlib.sha256).digest()[:24]).decode()
    api.client.app.state.settings = empty  # type: ignore[attr-defined]
    assert api.client.post(f"/codec/ui/{guess}/decode", json={"payloads": []}).status_code == 404


def test_cors_allows_only_the_temporal_ui_origin(api: Api) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    for origin in (UI, "http://localhost:8233"):
        r = api.client.options("/codec/decode", headers={**preflight, "Origin": origin})
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == origin
        assert "x-namespace" in r.headers["access-control-allow-headers"].lower()
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
    evil = api.client.options("/codec/decode", headers={**preflight, "Origin": "https://evil.example"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    # Actual requests carry the header only for the UI's origin, errors included (so the UI can
    # tell "unauthorised" from "unreachable").
    ok = api.client.post(
        "/codec/decode", json={"payloads": []}, headers={**api.auth(api.agent_key), "Origin": UI}
    )
    assert ok.headers["access-control-allow-origin"] == UI
    denied = api.client.post("/codec/decode", json={"payloads": []}, headers={"Origin": UI})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == UI
    other = api.client.post(
        "/codec/decode",
        json={"payloads": []},
        headers={**api.auth(api.agent_key), "Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in other.headers
