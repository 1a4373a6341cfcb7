"""Customers' messages: Twilio inbound webhooks (SMS and WhatsApp) and SendGrid Inbound Parse.

Both authenticate the request before reading it, then take the same path:

  1. `channels.optout.record_inbound_message`: the provider message id is UNIQUE, so a webhook the
     provider retries is logged once; it opens WhatsApp's 24-hour window and applies STOP / START
     (per channel and number). The customer's words are logged once, in the NDR reply log
     (`inbound_replies`, with what we did with them); this row keeps only that a message arrived
     (and the keyword itself when it is one).
  2. `api.reply_routing.handle_inbound`: route to the open case, parse, Temporal Update
     `customer_reply`. The keyword list's verdict wins over the parser, so STOP (or CANCEL, which
     carriers treat as STOP) in an NDR conversation is an opt-out, never a cancellation.
  3. When no workflow will answer (the customer has two open cases, or wrote to a closed one), we
     answer here. Not with TwiML: the answer goes through the same channel stack as every other
     message (NotifyActivities: template, provider or local outbox, the exactly-once
     notification log keyed by the inbound message id, delivery callbacks), so it is visible in
     the outbox in local mode, is sent once however often Twilio retries, and reaches an email
     sender too. We never answer an opt-out, and never text a number we have no shipment for.

Twilio: X-Twilio-Signature over the PUBLIC URL (NDRFLOW_PUBLIC_BASE_URL + path + query, never the
Host a proxy forwarded) and the form parameters. SendGrid Inbound Parse signs nothing, so its URL
carries a secret token (`?token=`, NDRFLOW_SENDGRID_INBOUND_TOKEN, generated per home when
unset). Anything we cannot verify gets 403 and changes nothing; unreadable input gets a 400 that
names the problem (both recorded by api/errors.py); Temporal down is a 503 so the provider retries.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlmodel import Session
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.reply_routing import InboundMessage as ReplyMessage
from api.reply_routing import InboundOutcome, handle_inbound, normalise_sender
from api.routes.provider_webhooks import channel_settings, public_url
from channels import optout, sendgrid_email, twilio_common
from channels.base import InboundMessage
from channels.settings import TWILIO_INBOUND_PATH
from ndrflow.ndr_settings import NdrSettings, get_ndr_settings
from store import ndr as routes
from store.models import Shipment
from workflows.messages import SendNotificationInput
from workflows.ndr_policy import NOTIFY_WHICH_CASE

log = logging.getLogger(__name__)

router = APIRouter(tags=["provider webhooks"])

SENDGRID_INBOUND_PATH = "/v1/webhooks/sendgrid/inbound"
_TOKEN_IN_QUERY = re.compile(r"(?<=[?&]token=)[^&\s\"]+")


class RedactInboundToken(logging.Filter):
    """The Inbound Parse token rides in the URL, which access logs print: never log it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def _redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub("[redacted]", text) if SENDGRID_INBOUND_PATH in text else text


_access_log = logging.getLogger("uvicorn.access")
if not any(isinstance(f, RedactInboundToken) for f in _access_log.filters):
    _access_log.addFilter(RedactInboundToken())
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# An SMS or WhatsApp message is at most 1,600 characters; a form with every Twilio field stays
# far below this. Emails are bounded by the app's body limit (NDRFLOW_MAX_BODY_BYTES).
MAX_TWILIO_BODY = 64 * 1024


@router.post(
    TWILIO_INBOUND_PATH,
    summary="Twilio inbound message (SMS and WhatsApp)",
    response_class=Response,
    responses={
        200: {"description": "empty TwiML; any answer is sent as its own message", "content": {"application/xml": {}}},
        400: {"description": "unreadable webhook (not a form, MessageSid or From missing)"},
        403: {"description": "missing or invalid X-Twilio-Signature"},
        503: {"description": "Temporal unavailable; Twilio may retry"},
    },
)
async def twilio_inbound(request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_TWILIO_BODY:
        raise HTTPException(413, f"request body over {MAX_TWILIO_BODY} bytes")
    cs = channel_settings(request)
    if not cs.twilio_auth_token:
        raise HTTPException(403, "cannot verify Twilio signatures: NDRFLOW_TWILIO_AUTH_TOKEN is not set")
    if not twilio_common.verify_signature(raw, request.headers, public_url(cs, request), cs):
        raise HTTPException(403, "X-Twilio-Signature is missing or does not match this request")
    ctype = (request.headers.get("content-type") or "").lower()
    if "application/x-www-form-urlencoded" not in ctype:
        raise HTTPException(400, "Twilio inbound webhook: expected application/x-www-form-urlencoded")
    try:
        parsed = twilio_common.parse_inbound("twilio", raw)
    except ValueError as exc:
        raise HTTPException(400, f"Twilio inbound webhook: {exc}") from None
    # Which of our providers this number belongs to: the outbox in local mode.
    msg = replace(parsed, provider=cs.provider_for(parsed.channel))
    await _receive(request, msg)
    return Response(EMPTY_TWIML, media_type="application/xml")


@router.post(
    SENDGRID_INBOUND_PATH,
    summary="SendGrid Inbound Parse (a customer's email reply)",
    status_code=200,
    responses={
        400: {"description": "not an Inbound Parse multipart form, or no sender"},
        403: {"description": "missing or wrong ?token="},
        503: {"description": "Temporal unavailable; SendGrid retries"},
    },
)
async def sendgrid_inbound(
    request: Request,
    token: str | None = Query(None, description="NDRFLOW_SENDGRID_INBOUND_TOKEN (Inbound Parse signs nothing)"),
) -> dict[str, Any]:
    expected = getattr(request.app.state.settings, "sendgrid_inbound_token", "") or ""
    if not expected:
        raise HTTPException(403, "cannot authenticate Inbound Parse: NDRFLOW_SENDGRID_INBOUND_TOKEN is not set")
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(403, "the Inbound Parse URL's token is missing or wrong")
    raw = await request.body()
    try:
        msg = sendgrid_email.parse_inbound(raw, request.headers.get("content-type") or "")
    except ValueError as exc:
        raise HTTPException(400, f"SendGrid Inbound Parse: {exc}") from None
    result = await _receive(request, msg)
    return {"outcome": result.outcome}


# ---- the shared path ----------------------------------------------------------------------------


async def _receive(request: Request, msg: InboundMessage) -> InboundOutcome:
    engine = request.app.state.engine
    # Words of a reply are logged once, in inbound_replies; a keyword is the whole message.
    logged = msg if msg.optout else replace(msg, body="")
    await asyncio.to_thread(optout.record_inbound_message, engine, logged)
    temporal = getattr(request.app.state, "temporal", None)
    if temporal is None:
        raise HTTPException(503, "Temporal is not connected; retry the webhook later")
    ndr = _ndr_settings(request)
    try:
        outcome = await handle_inbound(
            temporal=temporal,
            engine=engine,
            msg=ReplyMessage(
                channel=msg.channel,
                from_address=msg.from_address,
                body=msg.body,
                provider_message_id=msg.provider_message_id,
                to_address=msg.to_address,
            ),
            inbound_domain=ndr.inbound_email_domain,
            max_days=ndr.reattempt_max_days,
            optout=msg.optout,
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise  # Temporal unreachable: 503 (api/errors.py), the provider retries; the row says "failed"
        # The case's workflow is gone (finished past its retention): nothing to deliver to.
        log.info("inbound %s: the workflow of its case no longer exists", msg.provider_message_id)
        return InboundOutcome("case_closed", detail="the case's workflow no longer exists")
    except WorkflowQueryFailedError as exc:
        log.warning("inbound %s: the case's workflow could not answer: %s", msg.provider_message_id, exc)
        raise HTTPException(503, "the shipment's workflow could not answer; retry the webhook later") from None
    log.info("inbound %s %s: %s %s", msg.channel, msg.provider_message_id, outcome.outcome, outcome.detail[:200])
    if outcome.answer_purpose and outcome.outcome != "duplicate" and not msg.optout:
        await _answer(request, msg, outcome)
    return outcome


async def _answer(request: Request, msg: InboundMessage, outcome: InboundOutcome) -> None:
    """"Which delivery do you mean?" or "this one is settled", on the channel they wrote from."""
    shipment_id = outcome.shipment_id
    context: dict[str, Any] = {}
    if outcome.answer_purpose == NOTIFY_WHICH_CASE:
        context["cases"], shipment_id = await asyncio.to_thread(_which_cases, request, msg)
    if not shipment_id:
        return  # nobody we know: no answer (we are not an SMS relay for strangers)
    inp = SendNotificationInput(
        shipment_id=shipment_id,
        purpose=outcome.answer_purpose or "",
        occurrence=f"inbound:{msg.provider_message_id}"[:200],
        channel=msg.channel,
        context=context,
    )
    try:
        result = await asyncio.to_thread(_notifier(request).send_sync, inp)
    except Exception as exc:  # noqa: BLE001 - the customer's message is recorded; the answer is best effort
        log.warning("could not answer inbound %s (%s): %s", msg.provider_message_id, inp.purpose, exc)
        return
    log.info("answered inbound %s with %s: %s", msg.provider_message_id, inp.purpose, result.status)


def _which_cases(request: Request, msg: InboundMessage) -> tuple[list[dict[str, Any]], str | None]:
    cs = channel_settings(request)
    sender = normalise_sender(msg.channel, msg.from_address)
    with Session(request.app.state.engine) as s:
        cases = routes.find_open_cases(s, **({"email": sender} if msg.channel == "email" else {"phone": sender}))
        out = []
        for c in cases:
            row = s.get(Shipment, c.shipment_id)
            merchant = row.merchant_id if row else ""
            out.append(
                {
                    "ref": c.ref,
                    "merchant_name": cs.policy_book.policy_for(merchant).merchant_name or merchant,
                    "order_id": (row.order_id or row.tracking_number) if row else "",
                }
            )
    return out, (cases[0].shipment_id if cases else None)


def _notifier(request: Request) -> Any:
    notifier = getattr(request.app.state, "inbound_notifier", None)
    if notifier is None:
        from activities.notify import NotifyActivities

        notifier = NotifyActivities(request.app.state.engine, channel_settings(request), ndr_settings=_ndr_settings(request))
        request.app.state.inbound_notifier = notifier
    return notifier


def _ndr_settings(request: Request) -> NdrSettings:
    return getattr(request.app.state, "ndr_settings", None) or get_ndr_settings()
