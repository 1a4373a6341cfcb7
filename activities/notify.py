"""The send-notification activity: one message, one channel, exactly once.

The workflow passes ids and template variables only; the recipient's phone, email, name,
locale and time zone are read here from the shipments table.

Exactly once. Every notification has a deterministic key (shipment, purpose, occurrence,
channel) with a UNIQUE row in notification_log. The activity:
  1. returns the recorded result when the row is final (sent / skipped / failed): a retried or
     replayed activity never calls the provider again;
  2. claims the row (INSERT; the unique key picks one winner) and moves it to "sending" with a
     compare-and-set on its attempt counter, so two overlapping attempts cannot both send;
  3. calls the provider and records the outcome.

The crash window: between the provider accepting the message (step 3) and our "sent" write,
a timeout or a lost response leaves the row "unknown", a worker crash leaves it "sending".
A "sending" row younger than NDRFLOW_NOTIFY_ATTEMPT_LEASE_SECONDS may still be in flight on
another worker, so a retry waits (retryable error) instead of racing it. After that, or at once
for "unknown", the next attempt does not send blind; it reconciles first:
  - a status callback or event may already have put the provider message id on the row
    (Twilio's StatusCallback URL and SendGrid's custom args carry the key): then it was sent;
  - Twilio: list recent messages to the recipient; one created since the attempt began, from
    our sender, not recorded for another notification (and with the same body for free text)
    is ours;
  - SendGrid: wait (retry later) up to NDRFLOW_SENDGRID_RECONCILE_WAIT_SECONDS for an event
    carrying our key; none by then -> send again. Without a configured event webhook there is
    no witness, so this one case is at-least-once;
  - outbox: the stored message is looked up by key.
Only a provider error that proves the message was not taken (429, refused connection, a 4xx)
moves the row back to "pending" so the next attempt sends without reconciling.

Failures. 429, 5xx and network errors raise a retryable ApplicationError (type
"ChannelRetryable", next_retry_delay from Retry-After); Temporal retries with backoff.
Permanent errors (21211, 21614, 21635, 21610, 63024, invalid email, no WhatsApp template, ...)
are recorded and RETURNED as status "failed" with error_code, not raised: the result is data the
workflow branches on (try the next channel), and a retry returns the same recorded result.
21610 also records an opt-out. Skips (opted out, landline, no phone/email, no WhatsApp opt-in)
return status "skipped" with the reason; the workflow may try the next channel too.

Two ways in, one code path (`send_sync`). The workflow first tries `send_notification_inline`, a
local activity inside the workflow task that decided the message (one history event instead of
six, no queue hop); it sends only a fresh row ("pending": nothing can be in flight) and only while
the provider budget shared by every process has room (store/send_budget.py). Anything else -- no
budget, a row an earlier attempt touched, a 429/5xx/network error, any exception -- leaves the row
as the rules above left it and the workflow sends through `send_notification` on the rate-limited
notify queue, which reconciles and retries as described. The queue path debits the same budget,
so inline sends only use what the queue leaves free (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import TemplateError
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from api.tokens import case_url, make_case_token
from channels.base import ChannelError, OutboundMessage
from channels.registry import ChannelRegistry
from channels.settings import ChannelSettings
from domain import phones
from domain.case_ref import candidate_refs
from domain.ndr_options import reattempt_window
from ndrflow.ndr_settings import NdrSettings
from store import ndr as ndr_store
from store import notifications as ns
from store import send_budget
from store.models import Shipment
from templates import ASKING_PURPOSES, TemplateContextError, render
from workflows.messages import (
    GET_NOTIFY_POLICY,
    SEND_NOTIFICATION,
    SEND_NOTIFICATION_INLINE,
    InlineSendInput,
    InlineSendResult,
    SendNotificationInput,
    SendNotificationResult,
)
from workflows.notify_policy import CHANNELS, MerchantPolicy

log = logging.getLogger(__name__)

RETRYABLE_TYPE = "ChannelRetryable"
INVALID_TYPE = "InvalidNotification"

# How carrier codes read in messages; unknown codes are shown as given, "generic" not at all.
CARRIER_NAMES = {
    "generic": "",
    "delhivery": "Delhivery",
    "shiprocket": "Shiprocket",
    "clickpost": "",
    "easypost": "",
    "aftership": "",
    "bluedart": "Blue Dart",
    "ecomexpress": "Ecom Express",
    "xpressbees": "Xpressbees",
    "dtdc": "DTDC",
    "cj": "CJ Logistics",
}


class NotInline(Exception):
    """The inline path declines this send (the reason is the message); the queue sends it."""


class NotifyActivities:
    """Built once by the worker: `NotifyActivities(engine, settings)`; `settings` is a
    ChannelSettings or the app's ndrflow.config.Settings (converted with from_settings).
    `ndr_settings` (default: from the environment) gives the inbound email domain for per-case
    reply-to addresses and the reattempt window named in date questions."""

    def __init__(
        self,
        engine: Engine,
        settings: Any,
        registry: ChannelRegistry | None = None,
        ndr_settings: NdrSettings | None = None,
        *,
        budget_name: str | None = None,
        routes: Any = None,
    ) -> None:
        self.engine = engine
        self.settings = (
            settings if isinstance(settings, ChannelSettings) else ChannelSettings.from_settings(settings)
        )
        self.registry = registry or ChannelRegistry(self.settings)
        self.ndr_settings = ndr_settings or NdrSettings()
        # The shared provider budget (store/send_budget.py) is named after the notify queue.
        self.budget_name = budget_name or self.settings.notify_task_queue
        # activities.ndr_routes.NdrRouteActivities: the inline send writes the workflow task's
        # reply routes first (the main worker passes it; the notify worker never gets routes).
        self.routes = routes

    @activity.defn(name=SEND_NOTIFICATION)
    async def send_notification(self, inp: SendNotificationInput) -> SendNotificationResult:
        # The SDKs and the database driver block: keep them off the worker's event loop, which
        # heartbeats meanwhile so a killed worker's send is retried in seconds.
        async with heartbeating():
            return await asyncio.to_thread(self.send_sync, inp)

    @activity.defn(name=SEND_NOTIFICATION_INLINE)
    def send_notification_inline(self, inp: InlineSendInput) -> InlineSendResult:
        """Local activity (main worker, no retries): the read-model write the workflow task also
        had to make (reply routes, then the read model), then the send if it can go now.
        Declining is always safe: the row is left for the notify queue's activity, which applies
        every exactly-once rule. The store writes are idempotent (absolute values, open/close
        by case), so a failed local activity that the workflow follows with the separate writes
        does no harm."""
        from activities.readmodel import write_read_model

        out = InlineSendResult(result=None)
        if inp.open_routes or inp.close_routes:
            if self.routes is None:
                raise ApplicationError("no reply-route writer on this worker", non_retryable=True)
            out.routes = [self.routes.open_reply_route(r) for r in inp.open_routes]
            for r in inp.close_routes:
                self.routes.close_reply_route(r)
            out.routes_written = True
            _fill_case_ref(inp, out)
        if inp.sync is not None:
            write_read_model(self.engine, inp.sync)
            out.synced = True
        if not self.settings.notify_inline:
            out.why_not = "inline sends are off"
            return out
        try:
            out.result = self.send_sync(inp.send, inline_budget=inp.budget or self.budget_name)
        except NotInline as why:
            out.why_not = str(why)
        except ApplicationError as err:
            # 429, 5xx, network: the row is released or marked unknown by `_failed`; the queue's
            # activity retries with backoff (and reconciles first when it may have been sent).
            out.why_not = str(err)[:300]
        return out

    @activity.defn(name=GET_NOTIFY_POLICY)
    async def get_notify_policy(self, merchant_id: str) -> MerchantPolicy:
        """The merchant's notification policy, quiet hours resolved. Cheaper alternative: the
        API reads ChannelSettings.policy_for() once and passes it in the workflow input."""
        return self.settings.policy_for(merchant_id)

    # ---- the work ------------------------------------------------------------------------
    def send_sync(self, inp: SendNotificationInput, *, inline_budget: str | None = None) -> SendNotificationResult:
        """`inline_budget`: called from the inline local activity; raises NotInline rather than
        touch a row an earlier attempt left, or call the provider without a token from that
        budget. Otherwise (the notify queue) the provider call is debited from the budget."""
        if inp.channel not in CHANNELS:
            raise ApplicationError(f"unknown channel {inp.channel!r}", type=INVALID_TYPE, non_retryable=True)
        key = inp.key
        existing = ns.get_notification(self.engine, key)
        if existing is not None and existing.status in ns.FINAL_SEND_STATUSES:
            return _result(existing)

        with Session(self.engine) as s:
            shipment = s.get(Shipment, inp.shipment_id)
        if shipment is None:
            return self._skip(inp, None, "shipment_not_found", "no shipment row for this id")

        to, problem = self._recipient(inp.channel, shipment)
        if problem is not None:
            return self._skip(inp, to, problem[0], problem[1])
        assert to is not None
        if ns.is_opted_out(self.engine, channel=inp.channel, address=to):
            return self._skip(inp, to, "opted_out", f"recipient opted out of {inp.channel}")

        policy = self.settings.policy_book.policy_for(shipment.merchant_id)
        provider_name = self.registry.provider_name(inp.channel)
        try:
            msg = self._compose(inp, shipment, to, policy)
        except (TemplateContextError, TemplateError, ValueError, TypeError) as exc:
            # A missing template or variable, or a malformed date in the context: a bug or a
            # configuration problem that no retry fixes. Recorded as failed, loudly.
            log.error("notification %s: template problem: %s", key, exc)
            row = ns.claim_notification(self.engine, **self._row_args(inp, provider_name, to)).row
            if row.status not in ns.FINAL_SEND_STATUSES:
                row = ns.mark_failed(self.engine, row, error_code="template", reason=str(exc))
            return _result(row)

        row = ns.claim_notification(self.engine, **self._row_args(inp, provider_name, to)).row
        if row.status in ns.FINAL_SEND_STATUSES:
            return _result(row)
        if inline_budget is not None and row.status != "pending":
            # "sending"/"unknown": an earlier attempt (a crashed inline try, a queue attempt) may
            # have reached the provider. Leases and reconciliation are the queue path's job.
            raise NotInline(f"an earlier attempt left the row {row.status}")
        if row.status == "sending":
            started = row.attempt_started_at or row.created_at
            left = self.settings.notify_attempt_lease_seconds - (datetime.now(UTC) - started).total_seconds()
            if left > 0:  # another attempt may still be talking to the provider
                raise ApplicationError(
                    "another attempt is sending this notification",
                    type=RETRYABLE_TYPE,
                    next_retry_delay=timedelta(seconds=max(1.0, left)),
                )
        if row.status in ("sending", "unknown"):
            done = self._reconcile(row, msg)
            if done is not None:
                return done
            row = ns.get_notification(self.engine, key) or row

        rate = self.settings.notify_max_per_second
        if inline_budget is not None:
            # One second of the queue's rate may go at once (the server's limiter bursts too).
            if not send_budget.take(self.engine, inline_budget, rate=rate, burst=max(1.0, rate)):
                raise NotInline("provider budget spent: the rate-limited queue sends it")
        else:
            send_budget.debit(self.engine, self.budget_name, rate=rate)
        attempt = ns.begin_attempt(self.engine, row, provider=provider_name, recipient=to)
        if attempt is None:
            now = ns.get_notification(self.engine, key)
            if now is not None and now.status in ns.FINAL_SEND_STATUSES:
                return _result(now)
            raise ApplicationError("another attempt is sending this notification", type=RETRYABLE_TYPE)

        provider = self.registry.by_name(provider_name)
        try:
            sent = provider.send(msg, self.settings, self.engine)
        except ChannelError as err:
            return self._failed(attempt, msg, err)
        row = ns.mark_sent(
            self.engine, attempt, provider_message_id=sent.provider_message_id, reason=sent.detail or None
        )
        log.info("notification %s sent via %s (%s)", key, provider_name, sent.provider_message_id)
        return _result(row)

    # ---- pieces --------------------------------------------------------------------------
    def _recipient(self, channel: str, shipment: Shipment) -> tuple[str | None, tuple[str, str] | None]:
        if channel == "email":
            email = (shipment.customer_email or "").strip()
            if not email:
                return None, ("no_email", "no email address on the shipment")
            return email.lower(), None
        phone = (shipment.customer_phone or "").strip()
        if not phone:
            return None, ("no_phone", "no phone number on the shipment")
        if not phones.is_valid(phone):
            return phone, ("invalid_phone", "stored phone number is not a valid E.164 number")
        mobile = phones.is_mobile(phone)
        if not mobile:
            return phone, ("landline", f"{phones.number_type(phone)} number: never sent {channel}")
        if channel == "whatsapp" and not shipment.whatsapp_opt_in:
            return phone, ("no_whatsapp_opt_in", "customer did not opt in to WhatsApp")
        return phone, None

    def _row_args(self, inp: SendNotificationInput, provider: str, to: str | None) -> dict[str, Any]:
        return dict(
            key=inp.key,
            shipment_id=inp.shipment_id,
            channel=inp.channel,
            purpose=inp.purpose,
            occurrence=inp.occurrence[:200],
            provider=provider,
            recipient=to,
        )

    def _skip(
        self, inp: SendNotificationInput, to: str | None, code: str, why: str
    ) -> SendNotificationResult:
        row = ns.claim_notification(
            self.engine,
            **{**self._row_args(inp, "", to), "status": "skipped", "error_code": code, "reason": why},
        ).row
        if row.status not in ns.FINAL_SEND_STATUSES:
            # claimed earlier and only now skippable (e.g. STOP arrived between two attempts)
            row = ns.mark_failed(self.engine, row, error_code=code, reason=why, status="skipped")
        log.info("notification %s skipped: %s", inp.key, code)
        return _result(row)

    def _compose(
        self, inp: SendNotificationInput, shipment: Shipment, to: str, policy: MerchantPolicy
    ) -> OutboundMessage:
        ctx = base_context(shipment, policy, self.settings.public_base_url)
        ctx.update(inp.context or {})
        if inp.purpose.startswith("ndr_"):
            ctx.update(self._ndr_context(inp, shipment, ctx))
        rendered = render(
            inp.channel, inp.purpose, shipment.customer_locale, ctx, tz=shipment.customer_timezone
        )
        within = False
        if inp.channel == "whatsapp":
            last = ns.last_inbound_at(self.engine, channel="whatsapp", from_address=to)
            within = last is not None and datetime.now(UTC) - last < timedelta(
                hours=self.settings.whatsapp_session_hours
            )
        return OutboundMessage(
            key=inp.key,
            shipment_id=inp.shipment_id,
            channel=inp.channel,
            purpose=inp.purpose,
            locale=rendered.locale,
            template_locale=rendered.template_locale,
            to=to,
            body=rendered.body,
            subject=rendered.subject,
            html=rendered.html,
            variables=rendered.variables,
            within_session=within,
            force_template=bool(ctx.get("whatsapp_force_template")),
            reply_to=ctx.get("reply_to") or None,
            sender_name=str(ctx["merchant_name"]),
        )

    def _ndr_context(
        self, inp: SendNotificationInput, shipment: Shipment, ctx: dict[str, Any]
    ) -> dict[str, Any]:
        """What an NDR message needs that the workflow must not carry: the signed self-service
        link (a credential: never in history, computed for each send) and the per-case reply-to
        address; plus the last date a customer may ask for, in their calendar."""
        extra: dict[str, Any] = {}
        attempt = ctx.get("ndr_attempt")
        if isinstance(attempt, int) and attempt > 0:
            with Session(self.engine) as s:
                route = ndr_store.case_route(s, shipment_id=shipment.shipment_id, attempt=attempt)
            ref = str(ctx.get("case_ref") or (route.ref if route else "") or "")
            if not ref:
                # No reply route (yet): the store would give this case the first candidate, and
                # the page accepts any reference while the case has none.
                ref = candidate_refs(f"{shipment.shipment_id}:{attempt}")[0]
            key = self.settings.signing_key()
            if key:
                token = make_case_token(shipment.shipment_id, attempt, ref, secret_key=key)
                extra["link"] = case_url(self.settings.public_base_url, token)
            elif inp.purpose in ASKING_PURPOSES:
                raise TemplateContextError(
                    "cannot sign the self-service link: set NDRFLOW_SECRET_KEY (or run with a home that has one)"
                )
            domain = self.ndr_settings.inbound_email_domain.strip()
            if inp.channel == "email" and domain and route is not None and route.reply_key:
                extra["reply_to"] = ndr_store.reply_to_address(route.reply_key, domain)
        if inp.purpose in ("ndr_ask_date", "ndr_clarify") and not ctx.get("max_date"):
            tz = shipment.customer_timezone or "UTC"
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                tz = "UTC"
            _, last = reattempt_window(datetime.now(UTC), tz, max_days=self.ndr_settings.reattempt_max_days)
            extra["max_date"] = last.isoformat()
        return extra

    def _reconcile(self, row: ns.NotificationLog, msg: OutboundMessage) -> SendNotificationResult | None:
        """The previous attempt's outcome is unknown (see the module docstring)."""
        if row.provider_message_id:  # a callback recorded it after the provider took it
            return _result(
                ns.mark_sent(
                    self.engine,
                    row,
                    provider_message_id=row.provider_message_id,
                    reason="reconciled from callback",
                )
            )
        try:
            provider = (
                self.registry.by_name(row.provider) if row.provider else self.registry.provider(msg.channel)
            )
        except KeyError:
            provider = self.registry.provider(msg.channel)
        since = row.attempt_started_at or row.created_at
        exclude = ns.message_ids_for_recipient(
            self.engine, channel=msg.channel, recipient=msg.to, except_key=msg.key
        )
        try:
            found = provider.reconcile(msg, self.settings, self.engine, since, exclude)
        except ChannelError as err:
            raise _retryable(err, "reconciliation") from err
        if found is None:
            log.warning("notification %s: earlier attempt not found at the provider; sending again", msg.key)
            return None
        log.warning(
            "notification %s: earlier attempt reached the provider (%s); not sending again",
            msg.key,
            found.provider_message_id,
        )
        return _result(
            ns.mark_sent(self.engine, row, provider_message_id=found.provider_message_id, reason="reconciled")
        )

    def _failed(
        self, attempt: ns.NotificationLog, msg: OutboundMessage, err: ChannelError
    ) -> SendNotificationResult:
        if err.permanent:
            row = ns.mark_failed(self.engine, attempt, error_code=err.code, reason=err.message)
            if err.code == "21610":  # Twilio: the recipient sent STOP to our sender
                ns.set_opt_out(
                    self.engine, channel=msg.channel, address=msg.to, opted_out=True, source="twilio_21610"
                )
            log.warning("notification %s failed permanently: %s", msg.key, err)
            return _result(row)
        if err.maybe_sent:  # the next attempt reconciles before sending again
            ns.mark_unknown(self.engine, attempt, error_code=err.code, reason=err.message)
        else:
            ns.release_attempt(self.engine, attempt, error_code=err.code, reason=err.message)
        raise _retryable(err, "send") from err


def notify_worker(
    client: Any,
    engine: Engine,
    settings: Any,
    *,
    task_queue: str | None = None,
    registry: ChannelRegistry | None = None,
) -> Any:
    """A worker for the provider task queue (NDRFLOW_NOTIFY_TASK_QUEUE). The server enforces
    max_task_queue_activities_per_second across every worker polling that queue, so provider
    rate limits hold however many workers run."""
    from temporalio.worker import Worker

    acts = NotifyActivities(engine, settings, registry, budget_name=task_queue)
    return Worker(
        client,
        task_queue=acts.budget_name,
        activities=[acts.send_notification, acts.get_notify_policy],
        max_task_queue_activities_per_second=acts.settings.notify_max_per_second,
    )


def base_context(shipment: Shipment, policy: MerchantPolicy, public_base_url: str) -> dict[str, Any]:
    """Template variables every message gets from the store (the workflow's context adds to
    and overrides these)."""
    cod = shipment.payment_mode == "cod"
    fields = {
        "tracking_number": shipment.tracking_number,
        "shipment_id": shipment.shipment_id,
        "order_id": shipment.order_id or shipment.tracking_number,
        "carrier": shipment.carrier,
    }
    # Values go into a URL the merchant wrote: percent-encode them.
    tracking_url = (policy.tracking_url or public_base_url.rstrip("/") + "/t/{shipment_id}").format(
        **{k: quote(str(v), safe="") for k, v in fields.items()}
    )
    return {
        "merchant_name": policy.merchant_name or shipment.merchant_id,
        "customer_name": shipment.customer_name or "",
        "order_id": fields["order_id"],
        "tracking_number": shipment.tracking_number,
        "tracking_url": tracking_url,
        "carrier_name": CARRIER_NAMES.get(shipment.carrier, shipment.carrier.replace("_", " ").title()),
        "payment_mode": shipment.payment_mode,
        "cod_amount": shipment.payment_amount if cod else None,
        "currency": shipment.payment_currency,
        "expected_date": shipment.promised_delivery_date,
    }


def _fill_case_ref(inp: InlineSendInput, out: InlineSendResult) -> None:
    """A message about a case whose route opened in this same call carries the case's reference,
    as it would had the route opened in a call of its own first (the workflow fills its copy)."""
    ctx = inp.send.context
    if not ctx or ctx.get("case_ref"):
        return
    for opened, route in zip(inp.open_routes, out.routes, strict=True):
        if opened.attempt == ctx.get("ndr_attempt") and route.ref:
            ctx["case_ref"] = route.ref


def _retryable(err: ChannelError, stage: str) -> ApplicationError:
    delay = timedelta(seconds=err.retry_after) if err.retry_after else None
    return ApplicationError(
        f"{stage}: {err.code}: {err.message}",
        {"code": err.code, "maybe_sent": err.maybe_sent},
        type=RETRYABLE_TYPE,
        non_retryable=False,
        next_retry_delay=delay,
    )


def _result(row: ns.NotificationLog) -> SendNotificationResult:
    return SendNotificationResult(
        key=row.key,
        channel=row.channel,
        status=row.status if row.status in ns.FINAL_SEND_STATUSES else "failed",
        provider_message_id=row.provider_message_id,
        error_code=row.error_code,
        reason=row.reason,
        provider=row.provider or None,
    )
