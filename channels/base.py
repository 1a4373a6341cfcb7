"""Types every channel module shares. A provider module (twilio_sms, twilio_whatsapp,
sendgrid_email, outbox) exposes the same functions:

    send(msg: OutboundMessage, settings: ChannelSettings, engine: Engine | None = None) -> SendResult
    reconcile(msg, settings, engine, since: datetime, exclude_ids: set[str]) -> SendResult | None
    parse_inbound(raw: bytes, content_type: str = ...) -> InboundMessage
    parse_status(raw: bytes, query: Mapping[str, str] | None = None) -> list[StatusUpdate]
    verify_signature(raw: bytes, headers: Mapping[str, str], url: str, settings, now=None) -> bool

`send` raises ChannelError; nothing else escapes it. `reconcile` answers "did an earlier attempt
whose outcome we never recorded actually go out?" (see activities/notify.py, crash window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class OutboundMessage:
    key: str  # the exactly-once notification key
    shipment_id: str
    channel: str  # sms | whatsapp | email
    purpose: str
    locale: str  # the customer's locale as asked (ko-KR)
    to: str  # E.164 for sms/whatsapp (no "whatsapp:" prefix), address for email
    body: str  # SMS/WhatsApp text, or the email's plain-text part
    subject: str | None = None
    html: str | None = None
    template_locale: str = ""  # the template file's locale after fallback (ko)
    # Formatted values for provider-side templates (WhatsApp ContentVariables, SendGrid dynamic data).
    variables: dict[str, str] = field(default_factory=dict)
    # WhatsApp: the customer wrote to us within the session window, so free-form text is allowed.
    within_session: bool = False
    # WhatsApp: skip free-form even inside the window (e.g. after an asynchronous 63016).
    force_template: bool = False
    reply_to: str | None = None  # email: the inbound-parse address replies should reach
    sender_name: str | None = None  # email: display name, usually the merchant's


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str | None
    status: str = "sent"  # the provider's first word: queued / accepted / sent
    detail: str = ""  # e.g. "template HX... (outside the 24 h window)"


@dataclass(frozen=True)
class InboundMessage:
    provider: str
    channel: str
    provider_message_id: str
    from_address: str  # E.164 without "whatsapp:", or an email address
    to_address: str
    body: str
    received_at: datetime
    # "opt_out" / "opt_in" when the body is one of the carriers' keywords (channels/optout.py)
    optout: str | None = None
    subject: str | None = None
    profile_name: str | None = None  # WhatsApp display name
    # WhatsApp quick-reply button tapped (Content template): its payload id; Body is its text.
    button_payload: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    provider: str
    channel: str
    status: (
        str | None
    )  # normalised: queued sent delivered read failed undelivered bounce dropped processed deferred open click
    provider_message_id: str | None = None
    key: str | None = None  # our notification key, when the callback carries it
    error_code: str | None = None
    raw_status: str = ""
    event_id: str | None = None  # SendGrid sg_event_id
    recipient: str | None = None
    occurred_at: datetime | None = None
    # "opt_out" / "opt_in" implied by the event (SendGrid unsubscribe, Twilio 21610)
    optout: str | None = None


class ChannelError(Exception):
    """A provider refused or could not be reached.

    permanent: retrying the same request cannot succeed (invalid number, opted out, landline,
        invalid email, bad configuration); the workflow moves to the next channel.
    maybe_sent: the provider may have accepted it anyway (timeout, 5xx after the request went
        out): the next attempt must reconcile before sending again.
    retry_after: seconds the provider asked us to wait (429 Retry-After), if any.
    """

    def __init__(
        self,
        code: str,
        permanent: bool,
        message: str,
        *,
        maybe_sent: bool = False,
        retry_after: float | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = str(code)
        self.permanent = permanent
        self.message = message
        self.maybe_sent = maybe_sent
        self.retry_after = retry_after
        self.http_status = http_status


class ProviderModule(Protocol):
    PROVIDER: str

    def send(self, msg: OutboundMessage, settings: Any, engine: Any = None) -> SendResult: ...

    def reconcile(
        self, msg: OutboundMessage, settings: Any, engine: Any, since: datetime, exclude_ids: set[str]
    ) -> SendResult | None: ...
