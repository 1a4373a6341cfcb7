"""Twilio Programmable Messaging, SMS.

Sends From (NDRFLOW_TWILIO_FROM) or through a Messaging Service
(NDRFLOW_TWILIO_MESSAGING_SERVICE_SID, which then picks the sender), with StatusCallback set to
our public URL carrying the notification key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from channels import twilio_common as tw
from channels.base import ChannelError, InboundMessage, OutboundMessage, SendResult, StatusUpdate
from channels.settings import ChannelSettings

PROVIDER = "twilio_sms"
CHANNEL = "sms"


def send(msg: OutboundMessage, settings: ChannelSettings, engine: Any = None) -> SendResult:
    if not msg.body:
        raise ChannelError("empty_body", True, "refusing to send an empty SMS")
    params = {
        "to": msg.to,
        "body": msg.body,
        "status_callback": settings.status_callback_url(msg.key),
        **tw.sender_params(settings, whatsapp=False),
    }
    created = tw.create_message(settings, params)
    return SendResult(
        provider=PROVIDER, provider_message_id=created.sid, status=str(created.status or "queued")
    )


def reconcile(
    msg: OutboundMessage, settings: ChannelSettings, engine: Any, since: datetime, exclude_ids: set[str]
) -> SendResult | None:
    return tw.reconcile(PROVIDER, msg, settings, since, exclude_ids)


def parse_inbound(raw: bytes, content_type: str = "application/x-www-form-urlencoded") -> InboundMessage:
    return tw.parse_inbound(PROVIDER, raw)


def parse_status(raw: bytes, query: Mapping[str, str] | None = None) -> list[StatusUpdate]:
    return tw.parse_status(PROVIDER, raw, query)


def verify_signature(
    raw: bytes, headers: Mapping[str, str], url: str, settings: ChannelSettings, now: datetime | None = None
) -> bool:
    return tw.verify_signature(raw, headers, url, settings, now)
