"""Shared adapter machinery: request header handling, time conversion, the HTTP failure rules."""

from __future__ import annotations

from datetime import UTC

import httpx
import pytest

from carriers.base import (
    IST,
    CarrierUnavailable,
    WebhookFormatError,
    WebhookRequest,
    call,
    national_in,
    reason_from_text,
    to_utc,
)


def test_header_names_are_case_insensitive():
    req = WebhookRequest(body=b"", headers={"X-Hmac-Signature": "a", "Content-Type": "b"})
    assert req.header("x-hmac-signature") == "a" and req.headers == {
        "x-hmac-signature": "a",
        "content-type": "b",
    }


@pytest.mark.parametrize(
    "value, local, expected",
    [
        ("2026-11-28T19:40:12", IST, "2026-11-28T14:10:12.000000Z"),
        ("2026-11-28T19:40:12+05:30", UTC, "2026-11-28T14:10:12.000000Z"),
        ("2026-11-28T14:10:12Z", IST, "2026-11-28T14:10:12.000000Z"),
        (
            "2026-11-29T03:00:00",
            IST,
            "2026-11-28T21:30:00.000000Z",
        ),  # local early morning is the day before in UTC
        (1795875012, IST, "2026-11-28T14:10:12.000000Z"),
    ],
)
def test_to_utc(value, local, expected):
    assert to_utc(value, local=local) == expected


def test_to_utc_extra_formats_and_errors():
    assert (
        to_utc("28 11 2026 19:40:12", local=IST, formats=("%d %m %Y %H:%M:%S",))
        == "2026-11-28T14:10:12.000000Z"
    )
    with pytest.raises(WebhookFormatError, match="Status.StatusDateTime 'soon' is not"):
        to_utc("soon", local=IST, where="Status.StatusDateTime")
    with pytest.raises(WebhookFormatError, match="ts is required"):
        to_utc(None, local=IST, where="ts")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Consignee not available at address", "customer_unavailable"),
        ("CUSTOMER NOT AT HOME", "customer_unavailable"),
        ("Phone switched off", "customer_unreachable"),
        ("Door locked", "premises_closed"),
        ("Non-serviceable pincode", "out_of_delivery_area"),
        ("Customer refused to accept", "customer_refused"),
        ("OTP not shared", "verification_failed"),
        ("", None),
        ("Scanned at hub", None),
    ],
)
def test_reason_from_text(text, reason):
    assert reason_from_text(text) == reason


def test_national_in():
    assert national_in("+919876543210") == "9876543210"
    assert national_in("98765 43210") == "9876543210"
    assert national_in("+14155550100") == "+14155550100"  # not Indian: left alone
    assert national_in(None) is None


@pytest.mark.parametrize(
    "reply, retryable",
    [
        (httpx.Response(200), False),
        (httpx.Response(404), False),
        (httpx.Response(422), False),
        (httpx.Response(429), True),
        (httpx.Response(500), True),
        (httpx.Response(503), True),
        (httpx.ReadTimeout("x"), True),
        (httpx.ConnectError("x"), True),
        (httpx.RemoteProtocolError("x"), True),
    ],
)
async def test_call_failure_rules(reply, retryable):
    def handler(req: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        return reply

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        if retryable:
            with pytest.raises(CarrierUnavailable):
                await call(http, "POST", "https://c.example/x?key=SECRET", carrier="c", timeout=1)
        else:
            resp = await call(http, "POST", "https://c.example/x?key=SECRET", carrier="c", timeout=1)
            assert resp.status_code == reply.status_code


async def test_call_errors_never_include_the_query_string():
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway"))
    ) as http:
        with pytest.raises(CarrierUnavailable) as err:
            await call(http, "POST", "https://c.example/api?username=u&key=SECRET", carrier="c", timeout=1)
    assert "SECRET" not in str(err.value) and "/api" in str(err.value) and err.value.http_status == 502
