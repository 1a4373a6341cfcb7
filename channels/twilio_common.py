"""What Twilio SMS and Twilio WhatsApp share: the SDK client (pointed at a configurable base
URL, SDK retries off), error classification, callback parsing, signatures, reconciliation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client

from channels import optout
from channels.base import ChannelError, InboundMessage, OutboundMessage, SendResult, StatusUpdate
from channels.settings import ChannelSettings

log = logging.getLogger(__name__)

WHATSAPP_PREFIX = "whatsapp:"

# Errors that no retry can fix. The workflow moves to the next channel; 21610 also records an
# opt-out. Anything else in 4xx is treated the same way (a bad request stays bad).
PERMANENT_ERRORS = {
    "20003": "authentication failed: check NDRFLOW_TWILIO_ACCOUNT_SID / NDRFLOW_TWILIO_AUTH_TOKEN",
    "21211": "invalid 'To' phone number",
    "21408": "sending to this region is not enabled on the account",
    "21606": "the 'From' number cannot send to this destination",
    "21610": "the recipient replied STOP: unsubscribed",
    "21612": "this 'To' number cannot be reached from the 'From' number",
    "21614": "'To' is not a mobile number",
    "21635": "'To' is a landline",
    "63003": "WhatsApp could not find the 'To' address",
    "63016": "outside the WhatsApp 24-hour window: free-form text not allowed",
    "63024": "invalid WhatsApp recipient",
}

# Twilio's MessageStatus -> ours (see store/notifications.py for the order).
_STATUS = {
    "accepted": "accepted",
    "scheduled": "scheduled",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "partially_delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}


class _RebasedHttpClient(TwilioHttpClient):
    """The SDK builds absolute https://api.twilio.com URLs; send them to `base_url` instead
    (a Prism mock or our fake on loopback). No retries: Temporal owns retrying."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout, max_retries=0)
        self._base = urlsplit(base_url) if base_url else None
        self._local = threading.local()  # the SDK's exceptions drop headers: keep Retry-After

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        if self._base is not None:
            parts = urlsplit(url)
            url = urlunsplit(
                (
                    self._base.scheme,
                    self._base.netloc,
                    self._base.path.rstrip("/") + parts.path,
                    parts.query,
                    "",
                )
            )
        self._local.retry_after = None
        response = super().request(method, url, *args, **kwargs)
        if response.status_code == 429:
            self._local.retry_after = (response.headers or {}).get("Retry-After")
        return response

    def last_retry_after(self) -> float | None:
        value = getattr(self._local, "retry_after", None)
        try:
            return max(1.0, min(float(value), 3600.0)) if value else None
        except ValueError:
            return None


@lru_cache(maxsize=16)
def _client(account_sid: str, auth_token: str, base_url: str, timeout: float) -> Client:
    return Client(account_sid, auth_token, http_client=_RebasedHttpClient(base_url, timeout))


def client_for(settings: ChannelSettings) -> Client:
    if not settings.twilio_enabled:
        raise ChannelError("not_configured", True, "Twilio is not configured (NDRFLOW_TWILIO_ACCOUNT_SID)")
    return _client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        settings.twilio_base_url,
        settings.twilio_timeout_seconds,
    )


def classify_error(exc: BaseException) -> ChannelError:
    if isinstance(exc, TwilioRestException):
        code = str(exc.code) if exc.code else None
        status = int(exc.status or 0)
        text = (exc.msg or "").strip()[:300]
        if status == 429 or code == "20429":
            return ChannelError(code or "429", False, f"rate limited: {text}", http_status=status)
        if status >= 500:
            # The request reached Twilio: it may have been accepted before the error.
            return ChannelError(
                code or str(status), False, f"Twilio {status}: {text}", maybe_sent=True, http_status=status
            )
        key = code or str(status)
        return ChannelError(
            key, True, PERMANENT_ERRORS.get(key, text or f"HTTP {status}"), http_status=status
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ChannelError("connect_timeout", False, "could not connect to Twilio")
    if isinstance(exc, requests.exceptions.ConnectionError) and _refused(exc):
        return ChannelError("connect_error", False, "Twilio refused the connection")
    if isinstance(exc, requests.exceptions.RequestException):
        # Read timeout, connection dropped mid-response: Twilio may have the message.
        return ChannelError("network", False, f"{type(exc).__name__}: {exc}"[:300], maybe_sent=True)
    raise exc


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{type(seen).__name__} {seen}"
        if "NewConnectionError" in text or "Connection refused" in text or "Failed to resolve" in text:
            return True
        nxt = seen.__cause__ or seen.__context__
        if nxt is None and seen.args and isinstance(seen.args[0], BaseException):
            nxt = seen.args[0]
        seen = nxt if nxt is not seen else None
    return False


def create_message(settings: ChannelSettings, params: dict[str, Any]) -> Any:
    client = client_for(settings)
    try:
        return client.messages.create(**params)
    except (TwilioRestException, requests.exceptions.RequestException) as exc:
        err = classify_error(exc)
        if err.http_status == 429 and isinstance(client.http_client, _RebasedHttpClient):
            err.retry_after = client.http_client.last_retry_after()
        raise err from exc


def sender_params(settings: ChannelSettings, whatsapp: bool) -> dict[str, Any]:
    if settings.twilio_messaging_service_sid:
        return {"messaging_service_sid": settings.twilio_messaging_service_sid}
    sender = (settings.twilio_whatsapp_from or settings.twilio_from) if whatsapp else settings.twilio_from
    if not sender:
        raise ChannelError(
            "not_configured", True, "set NDRFLOW_TWILIO_MESSAGING_SERVICE_SID or NDRFLOW_TWILIO_FROM"
        )
    if whatsapp and not sender.startswith(WHATSAPP_PREFIX):
        sender = WHATSAPP_PREFIX + sender
    return {"from_": sender}


def address(msg: OutboundMessage) -> str:
    return WHATSAPP_PREFIX + msg.to if msg.channel == "whatsapp" else msg.to


def strip_prefix(value: str) -> str:
    return value[len(WHATSAPP_PREFIX) :] if value.lower().startswith(WHATSAPP_PREFIX) else value


# ---- reconciliation ----------------------------------------------------------------------
def reconcile(
    provider: str, msg: OutboundMessage, settings: ChannelSettings, since: datetime, exclude_ids: set[str]
) -> SendResult | None:
    """Did an attempt that started at `since` reach Twilio? Twilio keeps no idempotency key, so
    look at the recent messages to this recipient: created after the attempt began (minus clock
    skew), from our sender, not already recorded for another notification, same body when we
    sent free text. None when nothing matches (safe to send)."""
    try:
        recent = client_for(settings).messages.list(to=address(msg), limit=50)
    except (TwilioRestException, requests.exceptions.RequestException) as exc:
        err = classify_error(exc)
        # Cannot look: do not send blind. Retry later, unless the lookup itself is refused.
        raise ChannelError(
            err.code, False, f"reconciliation lookup failed: {err.message}", maybe_sent=True
        ) from exc
    floor = since - timedelta(minutes=2)
    ours = sender_params(settings, msg.channel == "whatsapp")
    candidates = []
    for m in recent:
        created = getattr(m, "date_created", None)
        if created is None or created.astimezone(UTC) < floor or m.sid in exclude_ids:
            continue
        if not str(getattr(m, "direction", "outbound")).startswith("outbound"):
            continue
        if "messaging_service_sid" in ours and getattr(m, "messaging_service_sid", None) not in (
            None,
            ours["messaging_service_sid"],
        ):
            continue
        if "from_" in ours and getattr(m, "from_", None) not in (None, ours["from_"]):
            continue
        candidates.append(m)
    exact = [m for m in candidates if (m.body or "") == msg.body]
    pick = exact[0] if exact else (candidates[0] if candidates and msg.channel == "whatsapp" else None)
    if pick is None:
        return None
    return SendResult(
        provider=provider,
        provider_message_id=pick.sid,
        status=str(pick.status or "sent"),
        detail="reconciled",
    )


# ---- webhooks ----------------------------------------------------------------------------
class _MultiDict(dict):
    """parse_qs output shaped for RequestValidator (which asks for getlist on multi-values)."""

    def getlist(self, key: str) -> list[str]:
        return list(self[key])


def _form(raw: bytes) -> dict[str, list[str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("body is not UTF-8") from exc
    return parse_qs(text, keep_blank_values=True, strict_parsing=False)


def _one(form: Mapping[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    got = headers.get(name)
    if got is None:
        lower = name.lower()
        for k, v in headers.items():
            if k.lower() == lower:
                return v
    return got


def verify_signature(
    raw: bytes, headers: Mapping[str, str], url: str, settings: ChannelSettings, now: datetime | None = None
) -> bool:
    """X-Twilio-Signature over the public URL Twilio called (scheme, host, path and query as
    configured in NDRFLOW_PUBLIC_BASE_URL, not what a proxy forwarded) and the POST params."""
    token = settings.twilio_auth_token
    signature = _header(headers, "X-Twilio-Signature")
    if not token or not signature:
        return False
    ctype = (_header(headers, "Content-Type") or "application/x-www-form-urlencoded").lower()
    try:
        params: Any = _MultiDict(_form(raw)) if "form-urlencoded" in ctype else raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    algorithm = get_signature_algorithm(_header(headers, "X-Twilio-Webhooks-Signature-Settings"))
    try:
        return bool(RequestValidator(token).validate(url, params, signature, algorithm))
    except Exception:  # noqa: BLE001 - a malformed request is an invalid one
        log.warning("twilio signature check raised; refusing", exc_info=True)
        return False


def parse_inbound(provider: str, raw: bytes) -> InboundMessage:
    form = _form(raw)
    sid = _one(form, "MessageSid") or _one(form, "SmsMessageSid")
    sender = _one(form, "From")
    if not sid:
        raise ValueError("MessageSid is missing")
    if not sender:
        raise ValueError("From is missing")
    channel = "whatsapp" if sender.lower().startswith(WHATSAPP_PREFIX) else "sms"
    body = _one(form, "Body")
    return InboundMessage(
        provider=provider,
        channel=channel,
        provider_message_id=sid,
        from_address=strip_prefix(sender),
        to_address=strip_prefix(_one(form, "To")),
        body=body,
        received_at=datetime.now(UTC),
        optout=optout.classify(body, _one(form, "OptOutType") or None),
        profile_name=_one(form, "ProfileName") or None,
        button_payload=_one(form, "ButtonPayload") or None,
        raw={k: v[0] if len(v) == 1 else v for k, v in form.items()},
    )


def parse_status(provider: str, raw: bytes, query: Mapping[str, str] | None = None) -> list[StatusUpdate]:
    form = _form(raw)
    sid = _one(form, "MessageSid") or _one(form, "SmsSid")
    raw_status = (_one(form, "MessageStatus") or _one(form, "SmsStatus")).lower()
    if not sid:
        raise ValueError("MessageSid is missing")
    if not raw_status:
        raise ValueError("MessageStatus is missing")
    to = _one(form, "To")
    error_code = _one(form, "ErrorCode") or None
    channel = "whatsapp" if to.lower().startswith(WHATSAPP_PREFIX) else "sms"
    return [
        StatusUpdate(
            provider=provider,
            channel=channel,
            status=_STATUS.get(raw_status),
            provider_message_id=sid,
            key=(query or {}).get("key") or None,
            error_code=error_code,
            raw_status=raw_status,
            recipient=strip_prefix(to) or None,
            occurred_at=datetime.now(UTC),
            optout="opt_out" if error_code == "21610" else None,
        )
    ]
