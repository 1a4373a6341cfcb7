"""Opt-out keywords (Twilio's defaults) and recording them.

A message whose whole body is one keyword (any case, surrounding spaces and a trailing
full stop or exclamation mark ignored) opts that number out of, or back in to, the channel it
came on. "Please stop sending me offers" is not a keyword: carriers match whole messages only,
and so do we, so what the carrier blocks and what we skip stay the same.

Note for reply parsing: CANCEL is an opt-out keyword. A customer answering an NDR question
with the single word "cancel" is opted out by Twilio itself, so NDR messages ask for numbers.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from channels.base import InboundMessage, StatusUpdate
from store.notifications import is_opted_out, record_inbound, set_opt_out

OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
# Twilio's Advanced Opt-Out sends OptOutType on inbound webhooks.
_TWILIO_OPT_OUT_TYPE = {"STOP": "opt_out", "START": "opt_in"}


def classify(body: str | None, opt_out_type: str | None = None) -> str | None:
    """ "opt_out", "opt_in" or None."""
    if opt_out_type and opt_out_type.upper() in _TWILIO_OPT_OUT_TYPE:
        return _TWILIO_OPT_OUT_TYPE[opt_out_type.upper()]
    word = (body or "").strip().rstrip(".!").strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return "opt_out"
    if word in OPT_IN_KEYWORDS:
        return "opt_in"
    return None


def apply_inbound(engine: Engine, msg: InboundMessage) -> str | None:
    """Record the opt-out / opt-in an inbound message carries; returns what was recorded."""
    if msg.optout is None:
        return None
    keyword = (msg.body or "").strip().rstrip(".!").strip().upper()[:32] or None
    set_opt_out(
        engine,
        channel=msg.channel,
        address=msg.from_address,
        opted_out=msg.optout == "opt_out",
        source="keyword",
        keyword=keyword,
    )
    return msg.optout


def apply_status(engine: Engine, upd: StatusUpdate) -> str | None:
    """Opt-outs implied by delivery callbacks: Twilio 21610, SendGrid unsubscribe/spam report."""
    if upd.optout is None or not upd.recipient:
        return None
    set_opt_out(
        engine,
        channel=upd.channel,
        address=upd.recipient,
        opted_out=upd.optout == "opt_out",
        source=f"{upd.provider}_{upd.raw_status or upd.error_code}"[:32],
    )
    return upd.optout


def opted_out(engine: Engine, channel: str, address: str) -> bool:
    return is_opted_out(engine, channel=channel, address=address)


def record_inbound_message(engine: Engine, msg: InboundMessage) -> tuple[bool, str | None]:
    """For the inbound webhooks: log the message (opens WhatsApp's 24-hour window; duplicates
    from provider retries are ignored) and apply its opt-out keyword.
    Returns (new, "opt_out" | "opt_in" | None); a duplicate changes nothing."""
    new = record_inbound(
        engine,
        provider=msg.provider,
        provider_message_id=msg.provider_message_id,
        channel=msg.channel,
        from_address=msg.from_address,
        to_address=msg.to_address,
        body=msg.body,
        received_at=msg.received_at,
    )
    if not new:
        return False, None
    return True, apply_inbound(engine, msg)
