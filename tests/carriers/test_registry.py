"""Every adapter module has the same shape, and the registry finds it by code."""

from __future__ import annotations

import inspect

import pytest

from carriers.registry import ADAPTERS, get_adapter
from domain.taxonomy import NdrAction


def test_registry_lists_the_six_adapters_by_their_code():
    assert sorted(ADAPTERS) == ["aftership", "clickpost", "delhivery", "easypost", "generic", "shiprocket"]
    assert all(m.CODE == code for code, m in ADAPTERS.items())


def test_unknown_carrier_is_a_key_error():
    with pytest.raises(KeyError, match="pigeon"):
        get_adapter("pigeon")


@pytest.mark.parametrize("code", sorted(ADAPTERS))
def test_same_shape_everywhere(code):
    m = get_adapter(code)
    for name in ("verify_webhook", "parse_webhook"):
        assert callable(getattr(m, name))
    for name in ("send_instruction", "poll_tracking"):
        assert inspect.iscoroutinefunction(getattr(m, name))
    assert "unknown" in m.TrackingStatus.__members__
    assert set(m.supported_actions) <= {a.value for a in NdrAction}


def test_registry_verifies_with_each_carriers_configured_secret():
    from carriers import registry
    from carriers.base import WebhookAuthError, WebhookRequest
    from carriers.fake.payloads import Scan, webhook
    from tests.carriers.conftest import settings

    cfg = settings(delhivery_webhook_header="x-our-token")
    for code in sorted(ADAPTERS):
        body, headers = webhook(code, Scan("AWB1", "delivered"), cfg.webhook_secret(code))
        if code == "delhivery":
            headers = {"X-Our-Token": headers.pop("X-Delhivery-Token")}
        req = WebhookRequest(body=body, headers=headers)
        registry.verify_webhook(code, req, cfg)
        assert registry.parse_webhook(code, req)[0][0].milestone == "delivered"
        with pytest.raises(WebhookAuthError):
            registry.verify_webhook(
                code,
                WebhookRequest(body=body + b" ", headers=headers),
                settings(**{f"{code}_webhook_secret": "other"}),
            )
