"""SendGrid email (v3 Mail Send through the sendgrid SDK).

HTML and text come from our templates, or a dynamic template id when NDRFLOW_SENDGRID_TEMPLATES
names one for the purpose. The notification key travels in personalizations[].custom_args
(SendGrid copies custom args into every event, which is how events find their notification).
Not top-level custom_args: the official OpenAPI spec types that as a string and a validating mock
refuses the object the SDK would send. reply_to is the Inbound Parse address.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import urllib.error
from collections.abc import Mapping
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default as default_policy
from email.utils import parseaddr
from functools import lru_cache
from hashlib import sha256
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from channels import optout
from channels.base import ChannelError, InboundMessage, OutboundMessage, SendResult, StatusUpdate
from channels.settings import ChannelSettings
from store.notifications import get_notification
from templates import locale_chain

PROVIDER = "sendgrid_email"
CHANNEL = "email"
KEY_ARG = "ndrflow_key"
SENDGRID_API = "https://api.sendgrid.com"

# SendGrid event -> (our delivery status, opt-out implied)
_EVENTS: dict[str, tuple[str | None, str | None]] = {
    "processed": ("processed", None),
    "deferred": ("deferred", None),
    "delivered": ("delivered", None),
    "open": ("open", None),
    "click": ("click", None),
    "bounce": ("bounce", None),
    "blocked": ("bounce", None),
    "dropped": ("dropped", None),
    "spamreport": (None, "opt_out"),
    "unsubscribe": (None, "opt_out"),
    "group_unsubscribe": (None, "opt_out"),
    "group_resubscribe": (None, "opt_in"),
}


@lru_cache(maxsize=8)
def _client(api_key: str, base_url: str, timeout: float) -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=api_key, host=(base_url or SENDGRID_API).rstrip("/"))
    sg.client.timeout = timeout  # inherited by the per-path clients; the SDK never retries
    return sg


def build_payload(msg: OutboundMessage, settings: ChannelSettings) -> dict[str, Any]:
    chain = list(dict.fromkeys(c for c in (msg.template_locale, *locale_chain(msg.locale)) if c))
    personalization: dict[str, Any] = {
        "to": [{"email": msg.to}],
        "custom_args": {KEY_ARG: msg.key, "shipment_id": msg.shipment_id, "purpose": msg.purpose},
    }
    sender: dict[str, str] = {"email": settings.sendgrid_from}
    name = msg.sender_name or settings.sendgrid_from_name
    if name:
        sender["name"] = name
    payload: dict[str, Any] = {
        "personalizations": [personalization],
        "from": sender,
        "categories": [msg.purpose],
    }
    reply_to = msg.reply_to or settings.sendgrid_reply_to
    if reply_to:
        payload["reply_to"] = {"email": reply_to}
    template_id = settings.sendgrid_template_id(msg.purpose, chain)
    if template_id:
        payload["template_id"] = template_id
        personalization["dynamic_template_data"] = {**msg.variables, "subject": msg.subject or ""}
    else:
        if not msg.subject or not msg.body:
            raise ChannelError("empty_body", True, "email needs a subject and a text body")
        payload["subject"] = msg.subject
        payload["content"] = [{"type": "text/plain", "value": msg.body}]
        if msg.html:
            payload["content"].append({"type": "text/html", "value": msg.html})
    return payload


def classify_error(exc: BaseException) -> ChannelError:
    if isinstance(exc, HTTPError):
        status = int(exc.status_code or 0)
        try:
            errors = json.loads(exc.body or b"{}").get("errors") or []
        except (ValueError, AttributeError):
            errors = []
        text = "; ".join(
            f"{e.get('field') or ''} {e.get('message') or ''}".strip() for e in errors if isinstance(e, dict)
        )[:300]
        if status == 429:
            reset = _header(exc.headers, "Retry-After") or _header(exc.headers, "X-RateLimit-Reset")
            return ChannelError(
                "429",
                False,
                f"rate limited {text}".strip(),
                retry_after=_retry_after(reset),
                http_status=status,
            )
        if status >= 500:
            return ChannelError(
                str(status), False, f"SendGrid {status} {text}".strip(), maybe_sent=True, http_status=status
            )
        if status == 400 and any(
            "email" in str(e.get("field", "")) or "email" in str(e.get("message", "")).lower()
            for e in errors
            if isinstance(e, dict)
        ):
            return ChannelError("invalid_email", True, text or "invalid email address", http_status=status)
        if status in (401, 403):
            return ChannelError(
                str(status),
                True,
                f"SendGrid refused our credentials: check NDRFLOW_SENDGRID_API_KEY {text}".strip(),
                http_status=status,
            )
        return ChannelError(str(status), True, text or f"HTTP {status}", http_status=status)
    if isinstance(exc, urllib.error.URLError) and isinstance(
        exc.reason, ConnectionRefusedError | socket.gaierror
    ):
        return ChannelError("connect_error", False, f"could not connect to SendGrid: {exc.reason}")
    if isinstance(exc, ConnectionRefusedError):
        return ChannelError("connect_error", False, "could not connect to SendGrid")
    if isinstance(exc, TimeoutError | socket.timeout | urllib.error.URLError | ConnectionError | OSError):
        return ChannelError("network", False, f"{type(exc).__name__}: {exc}"[:300], maybe_sent=True)
    raise exc


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        return headers.get(name)
    except AttributeError:
        return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if seconds > 1e9:  # X-RateLimit-Reset is an epoch timestamp
        seconds = seconds - datetime.now(UTC).timestamp()
    return max(1.0, min(seconds, 3600.0))


def send(msg: OutboundMessage, settings: ChannelSettings, engine: Any = None) -> SendResult:
    if not settings.sendgrid_enabled:
        raise ChannelError("not_configured", True, "SendGrid is not configured (NDRFLOW_SENDGRID_API_KEY)")
    if not settings.sendgrid_from:
        raise ChannelError("not_configured", True, "NDRFLOW_SENDGRID_FROM is not set")
    payload = build_payload(msg, settings)
    sg = _client(settings.sendgrid_api_key, settings.sendgrid_base_url, settings.sendgrid_timeout_seconds)
    try:
        resp = sg.send(payload)
    except (HTTPError, OSError) as exc:
        raise classify_error(exc) from exc
    message_id = _header(getattr(resp, "headers", None), "X-Message-Id")
    return SendResult(provider=PROVIDER, provider_message_id=message_id, status="accepted")


def reconcile(
    msg: OutboundMessage, settings: ChannelSettings, engine: Any, since: datetime, exclude_ids: set[str]
) -> SendResult | None:
    """SendGrid has no idempotency key and its message search is a paid add-on, so the events
    webhook is our witness: every event carries our key (custom arg) and the webhook writes it
    on the notification row. An event seen -> it went out. None seen yet -> wait for them up
    to NDRFLOW_SENDGRID_RECONCILE_WAIT_SECONDS after the uncertain attempt, then send again.
    Without an event webhook (no public key configured) there is no witness: send again."""
    row = get_notification(engine, msg.key) if engine is not None else None
    if row is not None and (row.delivery_status or row.provider_message_id):
        return SendResult(
            PROVIDER,
            row.provider_message_id,
            status=row.delivery_status or "sent",
            detail="reconciled from SendGrid events",
        )
    if not settings.sendgrid_event_public_key:
        return None
    waited = (datetime.now(UTC) - since).total_seconds()
    remaining = settings.sendgrid_reconcile_wait_seconds - waited
    if remaining > 0:
        raise ChannelError(
            "awaiting_events",
            False,
            "earlier attempt's outcome unknown; waiting for SendGrid events",
            maybe_sent=True,
            retry_after=remaining,
        )
    return None


# ---- webhooks ----------------------------------------------------------------------------
def verify_signature(
    raw: bytes, headers: Mapping[str, str], url: str, settings: ChannelSettings, now: datetime | None = None
) -> bool:
    """Signed Event Webhook: ECDSA P-256 over timestamp + raw body, with the public key from
    SendGrid's settings; and the timestamp no older (or newer) than the allowed age."""
    key = settings.sendgrid_event_public_key
    signature = _lookup(headers, EventWebhookHeader.SIGNATURE)
    timestamp = _lookup(headers, EventWebhookHeader.TIMESTAMP)
    if not key or not signature or not timestamp:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = (now or datetime.now(UTC)).timestamp()
    if abs(current - ts) > settings.sendgrid_event_max_age_seconds:
        return False
    try:
        verifier = EventWebhook(key)
        return bool(verifier.verify_signature(raw.decode("utf-8"), signature, timestamp))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return False


def _lookup(headers: Mapping[str, str], name: str) -> str | None:
    got = headers.get(name)
    if got is not None:
        return got
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), None)


def parse_status(raw: bytes, query: Mapping[str, str] | None = None) -> list[StatusUpdate]:
    try:
        events = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(events, list):
        raise ValueError("expected a JSON array of events")
    out = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            raise ValueError(f"event {i} is not an object")
        name = str(ev.get("event") or "")
        event_id = ev.get("sg_event_id")
        if not name:
            raise ValueError(f"event {i} has no 'event'")
        if not event_id:
            raise ValueError(f"event {i} has no 'sg_event_id'")
        status, opt = _EVENTS.get(name, (None, None))
        error = None
        if status in ("bounce", "dropped"):
            error = str(ev.get("status") or ev.get("bounce_classification") or ev.get("type") or name)[:32]
        ts = ev.get("timestamp")
        out.append(
            StatusUpdate(
                provider=PROVIDER,
                channel=CHANNEL,
                status=status,
                provider_message_id=ev.get("sg_message_id"),
                key=ev.get(KEY_ARG) or None,
                error_code=error,
                raw_status=name,
                event_id=str(event_id),
                recipient=ev.get("email"),
                occurred_at=datetime.fromtimestamp(int(ts), UTC) if isinstance(ts, int | float) else None,
                optout=opt,
            )
        )
    return out


def _multipart_fields(raw: bytes, content_type: str) -> dict[str, str]:
    if "multipart/form-data" not in content_type.lower():
        raise ValueError("expected multipart/form-data (SendGrid Inbound Parse)")
    message = BytesParser(policy=default_policy).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        raise ValueError("multipart body could not be parsed")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name or part.get_filename():
            continue  # attachments are not read
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        fields[str(name)] = payload.decode(charset, errors="replace")
    return fields


def parse_inbound(raw: bytes, content_type: str = "multipart/form-data") -> InboundMessage:
    """SendGrid Inbound Parse (multipart form). The case is found by the address it was sent to
    (per-case reply-to), so to_address prefers the SMTP envelope's recipient."""
    fields = _multipart_fields(raw, content_type)
    sender = parseaddr(fields.get("from", ""))[1]
    if not sender:
        raise ValueError("'from' is missing")
    to = ""
    try:
        envelope = json.loads(fields.get("envelope") or "{}")
        to = (envelope.get("to") or [""])[0]
    except (ValueError, AttributeError):
        pass
    to = to or parseaddr(fields.get("to", ""))[1]
    text = fields.get("text") or ""
    headers = fields.get("headers", "")
    message_id = next(
        (ln.split(":", 1)[1].strip() for ln in headers.splitlines() if ln.lower().startswith("message-id:")),
        "",
    )
    ident = message_id or "sg-" + base64.b32encode(sha256(raw).digest()[:15]).decode().lower()
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return InboundMessage(
        provider=PROVIDER,
        channel=CHANNEL,
        provider_message_id=ident[:64],
        from_address=sender.lower(),
        to_address=to.lower(),
        body=text,
        subject=fields.get("subject"),
        received_at=datetime.now(UTC),
        optout=optout.classify(first_line) if len(text.strip().splitlines()) <= 1 else None,
        raw={
            k: v
            for k, v in fields.items()
            if k in ("to", "from", "subject", "envelope", "spam_score", "SPF", "dkim")
        },
    )
