"""Local outbox: the channel used whenever a provider's credentials are absent.

Each message is stored (store.notifications.OutboxMessage) and shown at GET /dev/outbox and
GET /v1/dev/outbox. Storing is idempotent by notification key, so the outbox itself never
holds a duplicate. Replies to outbox messages use the Twilio webhook format (signed with the
per-home NDRFLOW_TWILIO_AUTH_TOKEN), so the inbound path is the same as in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from hashlib import sha256
from typing import Any

from channels import twilio_common as tw
from channels.base import ChannelError, InboundMessage, OutboundMessage, SendResult, StatusUpdate
from channels.settings import ChannelSettings
from store.notifications import OutboxMessage, outbox_by_key, store_outbox_message

PROVIDER = "outbox"


def message_id_for(key: str) -> str:
    """Deterministic, so a retried store returns the same id."""
    return "OB" + sha256(key.encode()).hexdigest()[:32]


def send(msg: OutboundMessage, settings: ChannelSettings, engine: Any = None) -> SendResult:
    if engine is None:
        raise ChannelError("not_configured", True, "the outbox channel needs the database engine")
    stored = store_outbox_message(
        engine,
        OutboxMessage(
            key=msg.key,
            message_id=message_id_for(msg.key),
            shipment_id=msg.shipment_id,
            channel=msg.channel,
            to_address=msg.to.lower() if msg.channel == "email" else msg.to,
            purpose=msg.purpose,
            locale=msg.locale,
            template_locale=msg.template_locale,
            subject=msg.subject,
            body=msg.body,
            html=msg.html,
        ),
    )
    return SendResult(provider=PROVIDER, provider_message_id=stored.message_id, status="delivered")


def reconcile(
    msg: OutboundMessage, settings: ChannelSettings, engine: Any, since: datetime, exclude_ids: set[str]
) -> SendResult | None:
    found = outbox_by_key(engine, msg.key)
    if found is None:
        return None
    return SendResult(
        provider=PROVIDER, provider_message_id=found.message_id, status="delivered", detail="reconciled"
    )


def parse_inbound(raw: bytes, content_type: str = "application/x-www-form-urlencoded") -> InboundMessage:
    return tw.parse_inbound(PROVIDER, raw)


def parse_status(raw: bytes, query: Mapping[str, str] | None = None) -> list[StatusUpdate]:
    return tw.parse_status(PROVIDER, raw, query)


def verify_signature(
    raw: bytes, headers: Mapping[str, str], url: str, settings: ChannelSettings, now: datetime | None = None
) -> bool:
    return tw.verify_signature(raw, headers, url, settings, now)
