"""Shared helpers for the carrier adapter tests: fixture files, settings, and an httpx transport
that records every request and answers from a script."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from carriers.base import WebhookRequest
from carriers.settings import CarrierSettings
from domain.instructions import Instruction, SendInstructionInput

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(slug: str, name: str) -> bytes:
    return (FIXTURES / slug / name).read_bytes()


def request(body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    return WebhookRequest(body=body, headers=headers or {}, query={})


def settings(**overrides: Any) -> CarrierSettings:
    values: dict[str, Any] = {
        "carrier_http_timeout_s": 2.0,
        "generic_webhook_secret": "generic-secret",
        "generic_instruction_url": "https://carrier.example/ndr/instructions",
        "generic_base_url": "https://carrier.example",
        "delhivery_base_url": "https://track.delhivery.example",
        "delhivery_api_token": "dlv-token",
        "delhivery_webhook_secret": "dlv-push-secret",
        "delhivery_upl_poll_attempts": 3,
        "delhivery_upl_poll_interval_s": 0.0,
        "shiprocket_base_url": "https://apiv2.shiprocket.example",
        "shiprocket_email": "api@merchant.example",
        "shiprocket_password": "pw",
        "shiprocket_webhook_secret": "sr-token",
        "clickpost_base_url": "https://www.clickpost.example",
        "clickpost_username": "acme",
        "clickpost_api_key": "lic-key-123",
        "clickpost_cp_id": 4,
        "clickpost_account_code": "Delhivery-Express",
        "clickpost_webhook_secret": "cp-key",
        "easypost_webhook_secret": "ep-secret",
        "aftership_webhook_secret": "as-secret",
        "carrier_ops_email": "ndr-desk@carrier.example",
    }
    values.update(overrides)
    return CarrierSettings(_env_file=None, **values)


@pytest.fixture
def cfg() -> CarrierSettings:
    return settings()


def instruction_input(carrier: str, action: str = "reattempt", **kw: Any) -> SendInstructionInput:
    extra = kw.pop("extra", {})
    return SendInstructionInput(
        shipment_id="shp_01",
        carrier=carrier,
        tracking_number=kw.pop("tracking_number", "AWB123"),
        attempt=kw.pop("attempt", 1),
        idempotency_key=kw.pop("idempotency_key", "shp_01:ndr1:1"),
        instruction=Instruction(action=action, **kw),
        extra=extra,
    )


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """A MockTransport that records requests and answers them in order (the last answer repeats)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def handler(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(req)
        return reply

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def json(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def ok(status: int = 200, body: Any = None) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {})
