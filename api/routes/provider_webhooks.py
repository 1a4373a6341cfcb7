"""Delivery status from the providers: Twilio status callbacks and SendGrid's signed Event
Webhook. Both update the notification log; a failure (failed, undelivered, bounce, dropped) is
forwarded once to the shipment's workflow as the `notification_status` signal so it can try the
next channel.

Both are authenticated against the raw request bytes before anything is parsed: Twilio's
X-Twilio-Signature over the public URL (NDRFLOW_PUBLIC_BASE_URL + path + query, never the Host
a proxy forwarded), SendGrid's ECDSA signature over timestamp + body with the timestamp's age
checked. Anything we cannot verify gets 403 and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from temporalio.service import RPCError, RPCStatusCode

from channels import optout, sendgrid_email, twilio_common
from channels.base import StatusUpdate
from channels.settings import SENDGRID_EVENTS_PATH, TWILIO_STATUS_PATH, ChannelSettings
from store import notifications as ns
from workflows.ids import shipment_workflow_id
from workflows.messages import NOTIFICATION_STATUS_SIGNAL, NotificationStatusInput

log = logging.getLogger(__name__)

router = APIRouter(tags=["provider webhooks"])

MAX_BODY = 2 * 1024 * 1024  # SendGrid batches up to ~1,000 events


def channel_settings(request: Request) -> ChannelSettings:
    """Channel settings for this app: app.state.channel_settings when the app set one,
    otherwise derived once from app.state.settings (same home, public URL, auth token)."""
    cs = getattr(request.app.state, "channel_settings", None)
    if cs is None:
        cs = ChannelSettings.from_settings(request.app.state.settings)
        request.app.state.channel_settings = cs
    return cs


def public_url(cs: ChannelSettings, request: Request) -> str:
    query = request.url.query
    return cs.public_url(request.url.path) + (f"?{query}" if query else "")


async def _body(request: Request) -> bytes:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise HTTPException(413, f"request body over {MAX_BODY} bytes")
    return raw


@router.post(
    TWILIO_STATUS_PATH,
    status_code=204,
    summary="Twilio message status callback",
    responses={
        400: {"description": "unparseable callback"},
        403: {"description": "missing or invalid X-Twilio-Signature"},
    },
)
async def twilio_status(request: Request) -> Response:
    raw = await _body(request)
    cs = channel_settings(request)
    if not cs.twilio_auth_token:
        raise HTTPException(403, "cannot verify Twilio signatures: NDRFLOW_TWILIO_AUTH_TOKEN is not set")
    if not twilio_common.verify_signature(raw, request.headers, public_url(cs, request), cs):
        raise HTTPException(403, "X-Twilio-Signature is missing or does not match this request")
    try:
        updates = twilio_common.parse_status("twilio", raw, dict(request.query_params))
    except ValueError as exc:
        raise HTTPException(400, f"Twilio status callback: {exc}") from None
    engine = request.app.state.engine
    keys = await asyncio.to_thread(_apply_all, engine, updates)
    await _signal_failures(request, keys)
    return Response(status_code=204)


@router.post(
    SENDGRID_EVENTS_PATH,
    status_code=204,
    summary="SendGrid signed Event Webhook",
    responses={
        400: {"description": "unparseable events"},
        403: {"description": "unsigned, wrongly signed or stale batch"},
    },
)
async def sendgrid_events(request: Request) -> Response:
    raw = await _body(request)
    cs = channel_settings(request)
    if not cs.sendgrid_event_public_key:
        raise HTTPException(
            403, "cannot verify SendGrid events: NDRFLOW_SENDGRID_EVENT_PUBLIC_KEY is not set"
        )
    if not sendgrid_email.verify_signature(raw, request.headers, public_url(cs, request), cs):
        raise HTTPException(
            403,
            "SendGrid event signature is missing or invalid, or its timestamp is older than "
            f"{cs.sendgrid_event_max_age_seconds} s",
        )
    try:
        updates = sendgrid_email.parse_status(raw)
    except ValueError as exc:
        raise HTTPException(400, f"SendGrid events: {exc}") from None
    engine = request.app.state.engine
    keys = await asyncio.to_thread(_apply_sendgrid, engine, updates)
    await _signal_failures(request, keys)
    return Response(status_code=204)


def _apply_all(engine: Any, updates: list[StatusUpdate]) -> list[str]:
    keys = []
    for upd in updates:
        key = upd.key
        if upd.status:
            row, _ = ns.apply_delivery_status(
                engine,
                status=upd.status,
                key=upd.key,
                provider_message_id=upd.provider_message_id,
                error_code=upd.error_code,
            )
            key = row.key if row is not None else None
        optout.apply_status(engine, upd)  # 21610
        if key:
            keys.append(key)
    return keys


def _apply_sendgrid(engine: Any, updates: list[StatusUpdate]) -> list[str]:
    keys = []
    for upd in updates:
        new = ns.apply_sendgrid_event(
            engine,
            sg_event_id=str(upd.event_id),
            event=upd.raw_status,
            status=upd.status,
            key=upd.key,
            provider_message_id=upd.provider_message_id,
            error_code=upd.error_code,
        )
        if new:
            optout.apply_status(engine, upd)  # unsubscribe, spam report
        # Duplicates still count here: a batch SendGrid retries after our 503 must still
        # reach the workflow (the signalled flag, not the event id, makes that once).
        key = upd.key or ns.key_for_message_id(engine, (upd.provider_message_id or "").split(".")[0])
        if key:
            keys.append(key)
    return keys


async def _signal_failures(request: Request, keys: list[str]) -> None:
    """Tell each workflow about its failed notifications once. If Temporal cannot take the
    signal we answer 503 so the provider retries the callback; the row stays unsignalled."""
    if not keys:
        return
    engine = request.app.state.engine
    rows = await asyncio.to_thread(ns.unsignalled_failures, engine, list(dict.fromkeys(keys)))
    if not rows:
        return
    temporal = getattr(request.app.state, "temporal", None)
    if temporal is None:
        raise HTTPException(503, "Temporal is not connected; retry the callback later")
    for row in rows:
        handle = temporal.get_workflow_handle(shipment_workflow_id(row.shipment_id))
        payload = NotificationStatusInput(
            key=row.key,
            channel=row.channel,
            status=row.delivery_status or "failed",
            error_code=row.error_code,
        )
        try:
            await handle.signal(NOTIFICATION_STATUS_SIGNAL, payload)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                log.warning("signal %s for %s failed: %s", NOTIFICATION_STATUS_SIGNAL, row.key, exc)
                raise HTTPException(
                    503, "could not reach the shipment workflow; retry the callback later"
                ) from None
            # The workflow has finished: nobody is left to fall back. Record and move on.
            log.info("notification %s failed after its workflow finished", row.key)
        await asyncio.to_thread(ns.mark_failure_signalled, engine, row.key)
