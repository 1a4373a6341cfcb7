"""The two things a journey is sent to.

- `PipelineTarget`: ndrflow's real HTTP API, as merchants, carriers and Twilio call it (one
  pooled httpx.AsyncClient, carrier pushes in each carrier's own format and signature, customer
  replies as signed Twilio-format form posts).
- `BaselineTarget`: the Temporal client directly, making the calls the API makes (signal-with-
  start per message, an update or signal per reply) against the skeleton workflow.

Both return a `Sent` per step with wall-clock send/finish times; steps that never reach Temporal
in the pipeline (a redelivered push the API drops, a scan held until registration) are skipped
by the baseline so both sides do the same Temporal work.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from twilio.request_validator import RequestValidator

from bench.baseline import BASELINE_WORKFLOW, BaselineInput
from bench.journeys import Journey, ScanSpec, Step
from bench.shape import trigger_key
from carriers import registry
from carriers.base import WebhookRequest
from carriers.fake import payloads
from workflows import search

TWILIO_PATH = "/v1/webhooks/twilio/inbound"
OUR_NUMBER = "+15005550006"


@dataclass
class Sent:
    journey: int
    step: int
    kind: str
    t_sent: float
    t_done: float
    ok: bool
    status: int | str
    key: str = ""  # the baseline trigger key (also used to join latencies)
    milestone: str = ""  # as the API parses it
    occurrence: int = 0  # nth push of this parsed milestone reaching the workflow
    detail: str = ""
    api_duplicates: int = 0


@dataclass
class JourneyCtx:
    """Per-journey state while it runs."""

    t0_wall: float
    bodies: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    scans_sent: list[payloads.Scan] = field(default_factory=list)
    ordinals: dict[str, int] = field(default_factory=dict)
    replies: int = 0

    def next_ordinal(self, milestone: str) -> int:
        self.ordinals[milestone] = self.ordinals.get(milestone, 0) + 1
        return self.ordinals[milestone]


def parsed_milestone_map(
    carriers: tuple[str, ...] = ("generic", "delhivery", "shiprocket", "clickpost"),
) -> dict[tuple[str, str], str]:
    """(carrier, milestone we send) → milestone the API reads (Delhivery reports pick-up as
    'In Transit', so it never causes a picked-up notification): found by parsing our own payloads."""
    out: dict[tuple[str, str], str] = {}
    for carrier in carriers:
        for m in ("picked_up", "in_transit", "out_for_delivery", "delivery_failed", "delivered"):
            scan = payloads.Scan("MAP0000001", m, "customer_unavailable" if m == "delivery_failed" else None)
            body, headers = payloads.webhook(carrier, scan, "x")
            events, _ = registry.parse_webhook(
                carrier,
                WebhookRequest(body=body, headers={k.lower(): v for k, v in headers.items()}, query={}),
            )
            out[(carrier, m)] = events[0].milestone if events else m
    return out


def scan_at_wall(ctx: JourneyCtx, spec: ScanSpec, j: Journey) -> payloads.Scan:
    when = datetime.fromtimestamp(ctx.t0_wall + spec.scan_at, UTC)
    return payloads.Scan(
        j.tracking_number,
        spec.milestone,
        spec.ndr_reason,
        when,
        location=j.customer.city,
        event_id=spec.event_id,
    )


class PipelineTarget:
    name = "pipeline"

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_url: str,
        merchant_keys: dict[str, str],
        carrier_secret: str,
        twilio_token: str,
        milestone_map: dict[tuple[str, str], str],
    ) -> None:
        self.http = http
        self.api_url = api_url
        self.merchant_keys = merchant_keys
        self.carrier_secret = carrier_secret
        self.validator = RequestValidator(twilio_token)
        self.account_sid = "AC" + hashlib.md5(twilio_token.encode()).hexdigest()
        self.milestone_map = milestone_map

    async def send(self, j: Journey, i: int, ctx: JourneyCtx) -> Sent:
        st = j.steps[i]
        if st.kind == "register":
            return await self._post(
                j,
                i,
                st,
                f"{self.api_url}/v1/shipments",
                json_body=j.registration_body(),
                headers={"Authorization": f"Bearer {self.merchant_keys[j.merchant_id]}"},
            )
        if st.kind == "push":
            assert st.scan is not None
            body, headers = self._push_body(j, st, ctx)
            parsed = self.milestone_map.get((j.carrier, st.scan.milestone), st.scan.milestone)
            occurrence = 0 if not st.reaches_temporal else ctx.next_ordinal(parsed)
            sent = await self._post(
                j, i, st, f"{self.api_url}/v1/carriers/{j.carrier}/events", content=body, headers=headers
            )
            sent.milestone, sent.occurrence = parsed, occurrence
            if occurrence:
                sent.key = trigger_key("signal", "carrier_events", parsed, occurrence)
            return sent
        # A customer's SMS, as Twilio posts it.
        ctx.replies += 1
        sid = "SM" + hashlib.md5(f"{j.tracking_number}:{i}".encode()).hexdigest()
        params = {
            "ToCountry": "US",
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": st.text,
            "FromCountry": j.customer.country,
            "To": OUR_NUMBER,
            "ToZip": "",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": j.customer.phone,
            "ApiVersion": "2010-04-01",
        }
        url = f"{self.api_url}{TWILIO_PATH}"
        headers = {
            "X-Twilio-Signature": self.validator.compute_signature(url, params),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        sent = await self._post(j, i, st, url, content=urlencode(params).encode(), headers=headers)
        sent.key = f"reply#{st.reply_ordinal}"
        return sent

    def _push_body(self, j: Journey, st: Step, ctx: JourneyCtx) -> tuple[bytes, dict[str, str]]:
        assert st.scan is not None
        cached = ctx.bodies.get(st.scan.event_id)
        if cached is not None:  # a carrier redelivers the same bytes
            return cached
        scan = scan_at_wall(ctx, st.scan, j)
        if j.carrier == "clickpost":
            # ClickPost's push also carries the newest status it knows, which a late push shows.
            latest = max([*ctx.scans_sent, scan], key=lambda s: s.occurred_at)
            body = payloads.encode(payloads.build_clickpost(scan, latest=latest))
            headers = payloads.sign_headers("clickpost", body, self.carrier_secret)
        else:
            body, headers = payloads.webhook(j.carrier, scan, self.carrier_secret)
        ctx.scans_sent.append(scan)
        ctx.bodies[st.scan.event_id] = (body, headers)
        return body, headers

    async def _post(
        self,
        j: Journey,
        i: int,
        st: Step,
        url: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str],
    ) -> Sent:
        t_sent = time.time()
        try:
            r = await self.http.post(url, json=json_body, content=content, headers=headers)
            status: int | str = r.status_code
            ok = r.status_code < 300
            detail = "" if ok else r.text[:300]
            dups = 0
            if ok and st.kind == "push":
                try:
                    dups = int(r.json().get("duplicates", 0))
                except ValueError:
                    dups = 0
        except httpx.HTTPError as exc:
            status, ok, detail, dups = type(exc).__name__, False, str(exc)[:300], 0
        return Sent(j.index, i, st.kind, t_sent, time.time(), ok, status, detail=detail, api_duplicates=dups)


class BaselineTarget:
    name = "baseline"

    def __init__(
        self,
        client: Client,
        task_queue: str,
        plan_kinds: dict[str, str],
        reply: dict[str, str] | None,
        milestone_map: dict[tuple[str, str], str],
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.plan_kinds = plan_kinds  # journey kind → plan kind (falls back when a kind was not calibrated)
        self.reply = reply
        self.milestone_map = milestone_map

    def workflow_id(self, j: Journey) -> str:
        return f"bl-{j.merchant_id}-{j.tracking_number}"

    async def send(self, j: Journey, i: int, ctx: JourneyCtx) -> Sent | None:
        st = j.steps[i]
        if not st.reaches_temporal:
            return None
        now_iso = datetime.now(UTC).isoformat()
        if st.kind == "register":
            held = [s.scan for s in j.steps if s.held and s.scan is not None]
            payload = {
                "_key": "signal:register",
                "milestones": [self.milestone_map.get((j.carrier, s.milestone), s.milestone) for s in held],
                "profile": {
                    "shipment_id": j.tracking_number,
                    "merchant_id": j.merchant_id,
                    "carrier": j.carrier,
                    "tracking_number": j.tracking_number,
                    "order_id": j.order_id,
                    "payment_mode": j.payment_mode,
                    "order_value": j.amount,
                    "currency": j.currency,
                    "locale": j.customer.locale,
                    "timezone": j.customer.timezone,
                    "has_phone": True,
                    "phone_is_mobile": True,
                    "has_email": True,
                    "whatsapp_opt_in": j.customer.whatsapp_opt_in,
                    "promised_delivery_date": j.promised_delivery_date,
                },
                "registered_at": now_iso,
                "events": [self._event(j, s, ctx) for s in held],
            }
            return await self._start(j, i, st, "register", payload, "signal:register")
        if st.kind == "push":
            assert st.scan is not None
            parsed = self.milestone_map.get((j.carrier, st.scan.milestone), st.scan.milestone)
            n = ctx.next_ordinal(parsed)
            key = trigger_key("signal", "carrier_events", parsed, n)
            payload = {
                "_key": key,
                "milestones": [parsed],
                "events": [self._event(j, st.scan, ctx)],
                "received_at": now_iso,
            }
            sent = await self._start(j, i, st, "carrier_events", payload, key)
            sent.milestone, sent.occurrence = parsed, n
            return sent
        if self.reply is None:
            return None
        ctx.replies += 1
        key = trigger_key(self.reply["via"], self.reply["name"], None, st.reply_ordinal)
        payload = {"_key": key, "text": st.text, "channel": "sms", "received_at": now_iso}
        handle = self.client.get_workflow_handle(self.workflow_id(j))
        t_sent = time.time()
        try:
            if self.reply["via"] == "update":
                await handle.execute_update(self.reply["name"], payload)
            else:
                await handle.signal(self.reply["name"], payload)
            ok, status, detail = True, "ok", ""
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            ok, status, detail = False, type(exc).__name__, str(exc)[:300]
        return Sent(j.index, i, st.kind, t_sent, time.time(), ok, status, key=key, detail=detail)

    def _event(self, j: Journey, spec: ScanSpec, ctx: JourneyCtx) -> dict[str, Any]:
        when = datetime.fromtimestamp(ctx.t0_wall + spec.scan_at, UTC)
        return {
            "carrier": j.carrier,
            "tracking_number": j.tracking_number,
            "milestone": self.milestone_map.get((j.carrier, spec.milestone), spec.milestone),
            "occurred_at": when.isoformat(),
            "event_id": spec.event_id,
            "ndr_reason": spec.ndr_reason,
            "raw_code": spec.milestone.upper(),
            "raw_status": spec.milestone.replace("_", " "),
            "location": j.customer.city,
        }

    async def _start(
        self, j: Journey, i: int, st: Step, signal: str, payload: dict[str, Any], key: str
    ) -> Sent:
        t_sent = time.time()
        try:
            await self.client.start_workflow(
                BASELINE_WORKFLOW,
                BaselineInput(
                    shipment_id=j.tracking_number,
                    kind=self.plan_kinds.get(j.kind, "normal"),
                    merchant_id=j.merchant_id,
                    carrier=j.carrier,
                ),
                id=self.workflow_id(j),
                task_queue=self.task_queue,
                start_signal=signal,
                start_signal_args=[payload],
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search.initial_attributes(j.merchant_id, j.carrier),
            )
            ok, status, detail = True, "ok", ""
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            ok, status, detail = False, type(exc).__name__, str(exc)[:300]
        return Sent(j.index, i, st.kind, t_sent, time.time(), ok, status, key=key, detail=detail)
