"""Carrier code -> adapter module (`POST /v1/carriers/{carrier}/events` looks the module up here).

Every module has the same shape (see carriers/base.py): CODE, TrackingStatus/IncidentReason
tables, verify_webhook, parse_webhook, supported_actions, send_instruction, poll_tracking.
Adding a carrier means copying a sibling module and listing it here.
"""

from __future__ import annotations

from types import ModuleType

from carriers import aftership, clickpost, delhivery, easypost, generic, shiprocket

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
