"""Local mode only: the outbox, where messages go when no provider is configured.

GET  /dev/outbox              a phone-like page per recipient (and a mailbox for email)
GET  /dev/outbox/{id}/html    an outbox email's HTML part as the customer would see it
POST /dev/outbox/reply        reply as the customer: a Twilio-format inbound webhook signed with
                              the per-home token, posted to our own /v1/webhooks/twilio/inbound
GET  /v1/dev/outbox?to=...    {"messages": [{"channel","to","purpose","locale","body","created_at",...}]}

Enabled only when no provider credentials are configured (or NDRFLOW_DEV_PAGES=true); else 404,
so a production deployment never shows customers' messages here.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from twilio.request_validator import RequestValidator

from api.routes.provider_webhooks import channel_settings
from channels.settings import TWILIO_INBOUND_PATH
from store.notifications import OutboxMessage, list_outbox

router = APIRouter(tags=["dev"])

PAGES = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent.parent / "pages")),
    autoescape=select_autoescape(["html"]),
)
CHANNEL_LABEL = {"sms": "SMS", "whatsapp": "WhatsApp", "email": "Email"}


def _require_local(request: Request) -> None:
    if not channel_settings(request).dev_pages_enabled:
        raise HTTPException(
            404,
            "the dev outbox exists only in local mode (no provider credentials) or with NDRFLOW_DEV_PAGES=true",
        )


def normalize_to(value: str | None) -> str | None:
    """`?to=+919876543210` arrives as " 919876543210" (a + in a query string is a space)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if "@" in value:
        return value.lower()
    digits = re.sub(r"\D", "", value)
    if not digits:
        raise HTTPException(422, "to: expected an E.164 phone number or an email address")
    return "+" + digits


def message_json(m: OutboxMessage) -> dict[str, Any]:
    return {
        "channel": m.channel,
        "to": m.to_address,
        "purpose": m.purpose,
        "locale": m.locale,
        "body": m.body,
        "created_at": m.created_at.isoformat(),
        "subject": m.subject,
        "template_locale": m.template_locale,
        "shipment_id": m.shipment_id,
        "key": m.key,
        "message_id": m.message_id,
        "has_html": m.html is not None,
    }


@router.get("/v1/dev/outbox", summary="Outbox messages as JSON (local mode)")
async def outbox_json(
    request: Request,
    to: str | None = Query(None, description="E.164 number or email address"),
    limit: int = Query(500, ge=1, le=5000),
) -> JSONResponse:
    _require_local(request)
    rows = await asyncio.to_thread(list_outbox, request.app.state.engine, to=normalize_to(to), limit=limit)
    return JSONResponse({"messages": [message_json(m) for m in rows]})


@router.get(
    "/dev/outbox", response_class=HTMLResponse, summary="Outbox page (local mode)", include_in_schema=False
)
async def outbox_page(request: Request, to: str | None = None, note: str | None = None) -> HTMLResponse:
    _require_local(request)
    rows = await asyncio.to_thread(list_outbox, request.app.state.engine, to=normalize_to(to), limit=1000)
    by_recipient: dict[str, list[OutboxMessage]] = {}
    for m in rows:
        by_recipient.setdefault(m.to_address, []).append(m)
    # most recently active recipient first
    recipients = sorted(by_recipient.items(), key=lambda kv: kv[1][-1].id or 0, reverse=True)
    html = PAGES.get_template("outbox.html").render(
        recipients=recipients,
        label=CHANNEL_LABEL,
        filter_to=normalize_to(to),
        note=note,
        total=len(rows),
    )
    return HTMLResponse(html)


@router.get("/dev/outbox/{message_id}/html", response_class=HTMLResponse, include_in_schema=False)
async def outbox_email_html(request: Request, message_id: str) -> HTMLResponse:
    _require_local(request)
    rows = await asyncio.to_thread(list_outbox, request.app.state.engine, limit=5000)
    found = next((m for m in rows if m.message_id == message_id and m.html), None)
    if found is None:
        raise HTTPException(404, f"no outbox email with HTML has id {message_id}")
    # Our own rendered email (autoescaped at render time); sandboxed so its links cannot script us.
    return HTMLResponse(
        found.html or "",
        headers={"Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'"},
    )


@router.post("/dev/outbox/reply", include_in_schema=False)
async def outbox_reply(
    request: Request,
    to: str = Form(..., description="the customer's number (the reply comes from it)"),
    body: str = Form(..., max_length=1600),
    channel: str = Form("sms"),
) -> RedirectResponse:
    """Reply as the customer, through the same signed inbound webhook Twilio would call."""
    _require_local(request)
    cs = channel_settings(request)
    sender = normalize_to(to) or ""
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    params = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": prefix + sender,
        "MessageSid": "SM" + uuid.uuid4().hex,
        "NumMedia": "0",
        "SmsStatus": "received",
        "To": prefix + "ndrflow-local",
    }
    url = cs.public_url(TWILIO_INBOUND_PATH)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(cs.twilio_auth_token).compute_signature(url, params),
    }
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ndrflow.local") as client:
        resp = await client.post(TWILIO_INBOUND_PATH, content=urlencode(params), headers=headers)
    note = "reply delivered" if resp.status_code < 300 else f"inbound webhook answered {resp.status_code}"
    return RedirectResponse(f"/dev/outbox?{urlencode({'to': sender, 'note': note})}", status_code=303)
