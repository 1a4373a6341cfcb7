"""Carrier code -> adapter module (`POST /v1/carriers/{carrier}/events` looks the module up here).

Every module has the same shape (see carriers/base.py): CODE, TrackingStatus/IncidentReason
tables, verify_webhook, parse_webhook, supported_actions, send_instruction, poll_tracking.
Adding a carrier means copying a sibling module and listing it here.
"""

from __future__ import annotations

from types import ModuleType

from carriers import aftership, clickpost, delhivery, easypost, generic, shiprocket
from carriers.base import Problem, WebhookRequest
from carriers.settings import CarrierSettings
from domain.events import CarrierEvent

ADAPTERS: dict[str, ModuleType] = {
    m.CODE: m for m in (generic, delhivery, shiprocket, clickpost, easypost, aftership)
}


def get_adapter(code: str) -> ModuleType:
    """The adapter module for `code`; KeyError for a carrier we don't know (the API answers 404)."""
    try:
        return ADAPTERS[code]
    except KeyError:
        raise KeyError(f"unknown carrier {code!r}") from None


def supports_polling(code: str) -> bool:
    return code in {"generic", "delhivery"}


def verify_webhook(code: str, req: WebhookRequest, cfg: CarrierSettings) -> None:
    """Check a push with the carrier's configured secret (and, for Delhivery, header name).

    Raises KeyError for an unknown carrier and WebhookAuthError when it cannot be verified."""
    adapter = get_adapter(code)
    if adapter is delhivery:
        delhivery.verify_webhook(req, cfg.delhivery_webhook_secret, header=cfg.delhivery_webhook_header)
    else:
        adapter.verify_webhook(req, cfg.webhook_secret(code))


def parse_webhook(code: str, req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]:
    """Raises KeyError (unknown carrier) or WebhookFormatError (malformed body, 422)."""
    return get_adapter(code).parse_webhook(req)
