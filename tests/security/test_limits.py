"""Request size and rate limits on the endpoints anyone can reach."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from api.ratelimit import Limit, RateLimiter, RateLimitSettings, TokenBuckets
from carriers.fake.payloads import Scan, webhook
from store.models import RefusedRequest
from tests.api.conftest import Api
from tests.api.routes.test_merchants import BODY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(api: Api) -> Clock:
    """The app's limiter with tiny limits and a clock the test moves."""
    c = Clock()
    limiter: RateLimiter = api.client.app.state.rate_limiter  # type: ignore[attr-defined]
    for group in limiter.buckets:
        limiter.buckets[group] = TokenBuckets(Limit(3, 0.5), clock=c)
    return c


def refusals(api: Api) -> int:
    with Session(api.engine) as s:
        return s.exec(select(func.count()).select_from(RefusedRequest)).one()


def post_webhook(client: TestClient, event_id: str = "e1", **headers: str):  # type: ignore[no-untyped-def]
    body, signed = webhook(
        "generic", Scan(tracking_number="TRK1001", milestone="picked_up", event_id=event_id), "generic-secret"
    )
    return client.post("/v1/carriers/generic/events", content=body, headers={**signed, **headers})


def test_webhook_flood_gets_429_with_retry_after_then_recovers(api: Api, clock: Clock) -> None:
    assert [post_webhook(api.client, f"e{i}").status_code for i in range(3)] == [202, 202, 202]
    before = refusals(api)
    r = post_webhook(api.client, "e9")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"  # one token at 0.5/s
    assert "too many requests" in r.json()["detail"]
    # Refused before the app ran: nothing written, not even to the refusal log.
    assert refusals(api) == before
    clock.now += 2
    assert post_webhook(api.client, "e10").status_code == 202


def test_limits_are_per_client_address(api: Api, clock: Clock) -> None:
    for i in range(3):
        post_webhook(api.client, f"e{i}")
    assert post_webhook(api.client, "x").status_code == 429
    other = TestClient(api.client.app, client=("203.0.113.7", 40000))
    assert post_webhook(other, "y").status_code == 202


def test_a_spoofed_forwarded_for_does_not_evade_the_limit(api: Api, clock: Clock) -> None:
    codes = [
        post_webhook(api.client, f"e{i}", **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(5)
    ]
    assert codes == [202, 202, 202, 429, 429]


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    limiter = RateLimiter(RateLimitSettings(_env_file=None, rate_limit_trusted_proxies=["10.0.0.0/8"]))
    assert limiter.client_ip("10.1.2.3", "198.51.100.9, 10.0.0.5") == "198.51.100.9"
    assert (
        limiter.client_ip("10.1.2.3", "203.0.113.1, 198.51.100.9") == "198.51.100.9"
    )  # nearest untrusted hop
    assert limiter.client_ip("192.0.2.1", "198.51.100.9") == "192.0.2.1"  # not a proxy of ours
    assert limiter.client_ip("10.1.2.3", None) == "10.1.2.3"


LIMITED = [
    ("POST", "/v1/carriers/generic/events", True),
    ("POST", "/v1/webhooks/twilio/inbound", True),
    ("POST", "/v1/webhooks/twilio/status", True),
    ("POST", "/v1/webhooks/sendgrid/events", True),
    ("GET", "/r/some-token", True),
    ("POST", "/r/some-token", True),
    ("POST", "/codec/decode", True),
    ("POST", "/agent/sign-in", True),
    ("POST", "/v1/shipments", False),  # authenticated merchants: not throttled per IP
    ("GET", "/v1/cases", False),
    ("GET", "/healthz", False),
]


def test_which_endpoints_are_limited(api: Api, clock: Clock) -> None:
    got = {}
    for method, path, _ in LIMITED:
        codes = [
            api.client.request(method, path, headers=api.auth(api.merchant_key)).status_code for _ in range(5)
        ]
        got[(method, path)] = 429 in codes
    assert got == {(m, p): limited for m, p, limited in LIMITED}


def test_group_limits_are_independent(api: Api, clock: Clock) -> None:
    for i in range(3):
        post_webhook(api.client, f"e{i}")
    assert post_webhook(api.client, "x").status_code == 429
    assert (
        api.client.post("/codec/decode", json={"payloads": []}, headers=api.auth(api.agent_key)).status_code
        == 200
    )


def test_disabled_limiter_never_refuses(api: Api, clock: Clock) -> None:
    api.client.app.state.rate_limiter.enabled = False  # type: ignore[attr-defined]
    assert all(post_webhook(api.client, f"e{i}").status_code == 202 for i in range(10))


def test_limits_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NDRFLOW_RATE_LIMITS", '{"webhook": "5/2", "custom": "1/0.1"}')
    monkeypatch.setenv("NDRFLOW_RATE_LIMIT_ENABLED", "false")
    s = RateLimitSettings(_env_file=None)
    assert s.limits()["webhook"] == Limit(5, 2) and s.limits()["custom"] == Limit(1, 0.1)
    assert s.limits()["page"] == Limit(30, 0.5)  # defaults kept
    assert RateLimiter(s).enabled is False
    with pytest.raises(ValueError, match="burst/per_second"):
        Limit.parse("fast")


def test_token_bucket_refills_to_its_burst_only_and_forgets_old_clients() -> None:
    c = Clock()
    b = TokenBuckets(Limit(2, 1), clock=c, max_keys=3)
    assert [b.take("a"), b.take("a")] == [None, None]
    assert b.take("a") == pytest.approx(1.0)
    c.now += 3600  # a long idle does not bank more than the burst
    assert [b.take("a"), b.take("a"), b.take("a") is not None] == [None, None, True]
    for k in "bcde":
        b.take(k)
    assert len(b._buckets) == 3  # memory stays bounded under many addresses


# ---- request size ---------------------------------------------------------------------------
def test_oversized_bodies_are_413_before_parsing(api: Api) -> None:
    big = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    for path, key in (
        ("/v1/shipments", api.merchant_key),
        ("/v1/carriers/generic/events", api.carrier_key),
        ("/codec/decode", api.agent_key),
    ):
        r = api.client.post(path, content=big, headers={**api.auth(key), "Content-Type": "application/json"})
        assert r.status_code == 413 and "over 1048576 bytes" in r.json()["detail"]


def test_oversized_chunked_body_without_length_is_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    r = api.client.post(
        "/v1/carriers/generic/events",
        content=chunks(),
        headers={**api.auth(api.carrier_key), "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_malformed_and_hostile_json_is_a_4xx_never_a_500(api: Api) -> None:
    h = {**api.auth(api.merchant_key), "Content-Type": "application/json"}
    for body in (
        b"{",
        b"[]",
        b"null",
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"\xff\xfe",
        '{"merchant_id": "\u0000"}'.encode(),
    ):
        r = api.client.post("/v1/shipments", content=body, headers=h)
        assert 400 <= r.status_code < 500, (body[:20], r.status_code)
    deep = {"events": [{**BODY}]}
    assert (
        api.client.post(
            "/v1/carriers/generic/events", json=deep, headers=api.auth(api.carrier_key)
        ).status_code
        == 422
    )
