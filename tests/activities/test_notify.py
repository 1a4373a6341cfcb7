"""The send-notification activity in Temporal's activity test environment (activities/notify.py)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.notify import NotifyActivities, notify_worker
from channels import outbox
from channels.base import ChannelError, SendResult
from channels.registry import ChannelRegistry
from channels.settings import ChannelSettings
from store import notifications as ns
from store.models import Shipment, utcnow
from tests.channels.fake_providers import FakeProviders
from workflows.messages import SEND_NOTIFICATION, SendNotificationInput, SendNotificationResult

LOCAL = ChannelSettings(twilio_auth_token="t", public_base_url="https://ndr.example.com")


def add_shipment(engine: Engine, **kw: Any) -> Shipment:
    row = Shipment(
        shipment_id=kw.pop("shipment_id", "shp_test1"),
        workflow_id="shipment-shp_test1",
        merchant_id="acme",
        carrier="delhivery",
        tracking_number="DLV123",
        order_id="A-1001",
        customer_name="Asha Rao",
        customer_phone="+919876543210",
        customer_email="asha@example.com",
        customer_locale="en-IN",
        customer_timezone="Asia/Kolkata",
        whatsapp_opt_in=True,
        payment_mode="cod",
        payment_amount="1299.00",
        payment_currency="INR",
    )
    for k, v in kw.items():
        setattr(row, k, v)
    with Session(engine) as s:
        s.add(row)
        s.commit()
    return row


def inp(
    channel: str = "sms", purpose: str = "out_for_delivery", occurrence: str = "e1", **ctx: Any
) -> SendNotificationInput:
    return SendNotificationInput(
        shipment_id="shp_test1", purpose=purpose, occurrence=occurrence, channel=channel, context=ctx
    )


async def run(acts: NotifyActivities, i: SendNotificationInput):
    return await ActivityEnvironment().run(acts.send_notification, i)


async def test_sends_once_and_a_retry_returns_the_record(engine: Engine) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, LOCAL)
    first = await run(acts, inp())
    again = await run(acts, inp())
    assert first.status == "sent" and first.provider == "outbox" and first.provider_message_id
    assert again == first
    [msg] = ns.list_outbox(engine, to="+919876543210")
    assert msg.purpose == "out_for_delivery" and msg.locale == "en-IN"
    assert "A-1001" in msg.body and "Rs.1,299" in msg.body  # from the store, not the workflow
    assert ns.get_notification(engine, first.key).status == "sent"


async def test_each_channel_and_occurrence_is_its_own_message(engine: Engine) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, LOCAL)
    for channel in ("sms", "whatsapp", "email"):
        assert (await run(acts, inp(channel))).status == "sent"
    assert (await run(acts, inp("sms", occurrence="e2"))).status == "sent"
    assert len(ns.list_outbox(engine)) == 4
    [mail] = ns.list_outbox(engine, to="asha@example.com")
    assert mail.subject and mail.html and "<!DOCTYPE html>" in mail.html


async def test_locale_and_time_zone_come_from_the_store(engine: Engine) -> None:
    add_shipment(
        engine, customer_locale="ko-KR", customer_timezone="Asia/Seoul", customer_phone="+821012345678"
    )
    acts = NotifyActivities(engine, LOCAL)
    res = await run(acts, inp(purpose="delivered", delivered_at="2026-11-28T15:30:00Z"))
    assert res.status == "sent"
    [msg] = ns.list_outbox(engine)
    assert msg.locale == "ko-KR" and msg.template_locale == "ko"
    assert "배송 완료" in msg.body and "오전 12:30" in msg.body  # 15:30 UTC is 00:30 in Seoul


async def test_opted_out_recipient_is_skipped_and_recorded(engine: Engine) -> None:
    add_shipment(engine)
    ns.set_opt_out(
        engine, channel="sms", address="+919876543210", opted_out=True, source="keyword", keyword="STOP"
    )
    acts = NotifyActivities(engine, LOCAL)
    res = await run(acts, inp())
    assert (res.status, res.error_code) == ("skipped", "opted_out")
    assert ns.list_outbox(engine) == []
    assert ns.get_notification(engine, res.key).status == "skipped"
    # other channels are unaffected; opting back in restores SMS
    assert (await run(acts, inp("email"))).status == "sent"
    ns.set_opt_out(
        engine, channel="sms", address="+919876543210", opted_out=False, source="keyword", keyword="START"
    )
    assert (await run(acts, inp(occurrence="e2"))).status == "sent"


async def test_landline_is_never_texted(engine: Engine) -> None:
    add_shipment(engine, customer_phone="+918022223333")
    acts = NotifyActivities(engine, LOCAL)
    for channel in ("sms", "whatsapp"):
        res = await run(acts, inp(channel))
        assert (res.status, res.error_code) == ("skipped", "landline")
        assert "fixed_line" in res.reason
    assert ns.list_outbox(engine) == []
    assert (await run(acts, inp("email"))).status == "sent"


@pytest.mark.parametrize(
    ("fields", "channel", "code"),
    [
        ({"whatsapp_opt_in": False}, "whatsapp", "no_whatsapp_opt_in"),
        ({"customer_phone": None}, "sms", "no_phone"),
        ({"customer_email": None}, "email", "no_email"),
        ({"customer_phone": "+91555"}, "sms", "invalid_phone"),
    ],
)
async def test_missing_contact_is_skipped(engine: Engine, fields: dict, channel: str, code: str) -> None:
    add_shipment(engine, **fields)
    res = await run(NotifyActivities(engine, LOCAL), inp(channel))
    assert (res.status, res.error_code) == ("skipped", code)


async def test_unknown_shipment_is_skipped(engine: Engine) -> None:
    res = await run(NotifyActivities(engine, LOCAL), inp())
    assert (res.status, res.error_code) == ("skipped", "shipment_not_found")


async def test_unknown_channel_is_not_retried(engine: Engine) -> None:
    add_shipment(engine)
    with pytest.raises(ApplicationError) as info:
        await run(NotifyActivities(engine, LOCAL), inp("pigeon"))
    assert info.value.non_retryable and info.value.type == "InvalidNotification"


async def test_template_problem_is_recorded_as_failed(engine: Engine) -> None:
    add_shipment(engine)
    res = await run(NotifyActivities(engine, LOCAL), inp(purpose="ndr_ask"))  # no options/link/reason
    assert (res.status, res.error_code) == ("failed", "template")
    assert "options" in res.reason


# ---- real SDKs against the loopback fake -----------------------------------------------------
async def test_lost_response_is_reconciled_not_resent(engine: Engine, fake: FakeProviders) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, fake.twilio_settings())
    fake.fail_next("twilio", kind="accept_then_hang", hang=1.6)
    with pytest.raises(ApplicationError) as info:
        await run(acts, inp())
    assert not info.value.non_retryable and info.value.type == "ChannelRetryable"
    assert ns.get_notification(engine, inp().key).status == "unknown"  # maybe sent
    [accepted] = fake.state.twilio_messages
    res = await run(acts, inp())  # Temporal's retry
    assert res.status == "sent" and res.provider_message_id == accepted["sid"]
    assert len(fake.state.twilio_messages) == 1  # never sent twice
    assert (await run(acts, inp())).provider_message_id == accepted["sid"]


async def test_retry_after_429_sends_once(engine: Engine, fake: FakeProviders) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, fake.twilio_settings())
    fake.fail_next("twilio", status=429, code=20429, message="Too Many Requests", retry_after=3)
    with pytest.raises(ApplicationError) as info:
        await run(acts, inp())
    assert info.value.next_retry_delay == timedelta(seconds=3)
    row = ns.get_notification(engine, inp().key)
    assert (row.status, row.error_code) == ("pending", "20429")  # surely not taken: no reconciling
    res = await run(acts, inp())
    assert res.status == "sent" and len(fake.state.twilio_messages) == 1
    assert [r["provider"] for r in fake.state.requests] == ["twilio", "twilio"]  # no list call


async def test_server_error_reconciles_then_sends(engine: Engine, fake: FakeProviders) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, fake.twilio_settings())
    fake.fail_next("twilio", status=500, code=20500, message="Internal Server Error")
    with pytest.raises(ApplicationError):
        await run(acts, inp())
    res = await run(acts, inp())  # looked for it, found nothing, sent
    assert res.status == "sent" and len(fake.state.twilio_messages) == 1


@pytest.mark.parametrize("code", ["21211", "21614", "21635"])
async def test_permanent_error_returns_failed(engine: Engine, fake: FakeProviders, code: str) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, fake.twilio_settings())
    fake.fail_next("twilio", status=400, code=int(code), message="refused")
    res = await run(acts, inp())
    assert (res.status, res.error_code) == ("failed", code)
    assert (await run(acts, inp())) == res  # recorded: a retry does not call Twilio again
    assert len(fake.state.requests) == 1
    assert not ns.is_opted_out(engine, channel="sms", address="+919876543210")


async def test_21610_records_an_opt_out(engine: Engine, fake: FakeProviders) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, fake.twilio_settings())
    fake.fail_next("twilio", status=400, code=21610, message="Attempt to send to unsubscribed recipient")
    res = await run(acts, inp())
    assert (res.status, res.error_code) == ("failed", "21610")
    assert ns.is_opted_out(engine, channel="sms", address="+919876543210")
    res = await run(acts, inp(occurrence="e2"))
    assert (res.status, res.error_code) == ("skipped", "opted_out")
    assert len(fake.state.requests) == 1


async def test_whatsapp_free_form_only_inside_the_session(engine: Engine, fake: FakeProviders) -> None:
    add_shipment(engine)
    templates = {
        "out_for_delivery": {
            "en": {"content_sid": "HX" + "1" * 32, "variables": ["merchant_name", "order_id"]}
        }
    }
    acts = NotifyActivities(engine, fake.twilio_settings(whatsapp_templates=templates))
    assert (await run(acts, inp("whatsapp"))).status == "sent"
    assert "ContentSid" in fake.state.requests[-1]["form"]  # nobody wrote to us: template
    ns.record_inbound(
        engine,
        provider="twilio_whatsapp",
        provider_message_id="SMin1",
        channel="whatsapp",
        from_address="whatsapp:+919876543210",
        body="hi",
    )
    assert (await run(acts, inp("whatsapp", occurrence="e2"))).status == "sent"
    form = fake.state.requests[-1]["form"]
    assert "ContentSid" not in form and "A-1001" in form["Body"]
    ns.record_inbound(
        engine,
        provider="twilio_whatsapp",
        provider_message_id="SMold",
        channel="whatsapp",
        from_address="+919876543211",
        body="old",
        received_at=utcnow() - timedelta(hours=25),
    )


async def test_invalid_email_returns_failed(engine: Engine, fake: FakeProviders) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, fake.sendgrid_settings())
    fake.fail_next("sendgrid", status=400, code=1, message="Does not contain a valid address.")
    res = await run(acts, inp("email"))
    assert (res.status, res.error_code, res.provider) == ("failed", "invalid_email", "sendgrid_email")
    ok = await run(acts, inp("email", occurrence="e2"))
    assert (
        ok.status == "sent"
        and fake.state.sendgrid_mails[0]["payload"]["personalizations"][0]["custom_args"]["ndrflow_key"]
        == ok.key
    )


# ---- concurrency ------------------------------------------------------------------------------
class SlowOutbox:
    """The outbox, slowed down, counting calls: overlapping attempts must not both send."""

    PROVIDER = "outbox"

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def send(self, msg, settings, engine=None) -> SendResult:
        with self.lock:
            self.calls += 1
        time.sleep(0.3)
        return outbox.send(msg, settings, engine)

    def reconcile(self, msg, settings, engine, since, exclude_ids):
        return outbox.reconcile(msg, settings, engine, since, exclude_ids)


def test_overlapping_attempts_send_once(engine: Engine) -> None:
    add_shipment(engine)
    slow = SlowOutbox()
    acts = NotifyActivities(engine, LOCAL, ChannelRegistry(LOCAL, {"outbox": slow}))
    outcomes: list[Any] = []

    def attempt() -> None:
        try:
            outcomes.append(acts.send_sync(inp()))
        except ApplicationError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slow.calls == 1
    assert len(ns.list_outbox(engine)) == 1
    sent = [o for o in outcomes if not isinstance(o, Exception)]
    busy = [o for o in outcomes if isinstance(o, ApplicationError)]
    assert all(o.status == "sent" for o in sent) and all(not e.non_retryable for e in busy)
    assert acts.send_sync(inp()).status == "sent"  # afterwards every retry sees the record


class CrashAfterSend:
    """Takes the message, then the worker "dies" before recording it."""

    PROVIDER = "outbox"

    def __init__(self) -> None:
        self.calls = 0

    def send(self, msg, settings, engine=None) -> SendResult:
        self.calls += 1
        outbox.send(msg, settings, engine)
        raise ChannelError("network", False, "connection reset", maybe_sent=True)

    def reconcile(self, msg, settings, engine, since, exclude_ids):
        return outbox.reconcile(msg, settings, engine, since, exclude_ids)


async def test_crash_after_provider_accepted_is_reconciled(engine: Engine) -> None:
    add_shipment(engine)
    crashing = CrashAfterSend()
    acts = NotifyActivities(engine, LOCAL, ChannelRegistry(LOCAL, {"outbox": crashing}))
    with pytest.raises(ApplicationError):
        await run(acts, inp())
    res = await run(acts, inp())
    assert res.status == "sent" and res.reason == "reconciled" and crashing.calls == 1
    assert len(ns.list_outbox(engine)) == 1


async def test_worker_death_mid_send_waits_for_the_lease_then_reconciles(engine: Engine) -> None:
    import sqlalchemy as sa

    add_shipment(engine)
    acts = NotifyActivities(engine, LOCAL)
    # a worker claimed the row, handed the message to the outbox and died before recording it
    row = ns.claim_notification(
        engine, key=inp().key, shipment_id="shp_test1", channel="sms", purpose="out_for_delivery"
    ).row
    row = ns.begin_attempt(engine, row, provider="outbox", recipient="+919876543210")
    outbox.send(await _message_for(acts), LOCAL, engine)
    with pytest.raises(ApplicationError) as info:  # still inside its lease: maybe in flight
        await run(acts, inp())
    assert 1 <= info.value.next_retry_delay.total_seconds() <= LOCAL.notify_attempt_lease_seconds
    with engine.begin() as conn:
        conn.execute(sa.update(ns.NotificationLog).values(attempt_started_at=utcnow() - timedelta(minutes=5)))
    res = await run(acts, inp())
    assert res.status == "sent" and res.reason == "reconciled"
    assert len(ns.list_outbox(engine)) == 1


async def _message_for(acts: NotifyActivities):
    with Session(acts.engine) as s:
        shipment = s.get(Shipment, "shp_test1")
    return acts._compose(inp(), shipment, "+919876543210", acts.settings.policy_book.policy_for("acme"))


async def test_get_notify_policy_resolves_quiet_hours(engine: Engine) -> None:
    import json

    settings = ChannelSettings(
        quiet_hours="22:00-08:00",
        notify_policy=json.dumps({"merchants": {"acme": {"merchant_name": "Acme"}}}),
    )
    policy = await ActivityEnvironment().run(NotifyActivities(engine, settings).get_notify_policy, "acme")
    assert (policy.merchant_name, policy.quiet_hours) == ("Acme", "22:00-08:00")


async def test_bad_template_context_from_the_workflow_is_recorded_not_retried(engine: Engine) -> None:
    add_shipment(engine)
    acts = NotifyActivities(engine, LOCAL)
    res = await run(acts, inp(purpose="ndr_which_case", cases=[]))
    assert (res.status, res.error_code) == ("failed", "template")
    res = await run(acts, inp(purpose="delivered", occurrence="e9", delivered_at="yesterday-ish"))
    assert (res.status, res.error_code) == ("failed", "template")
    assert ns.list_outbox(engine) == []


# ---- on a real (time-skipping) Temporal server -----------------------------------------------
@workflow.defn(sandboxed=False)
class SendTwice:
    """Stands in for the shipment workflow: sends on the provider queue, then repeats the send."""

    @workflow.run
    async def run(self, i: SendNotificationInput, notify_queue: str) -> list[SendNotificationResult]:
        out = []
        for _ in range(2):  # a replayed or repeated send returns the recorded result
            out.append(
                await workflow.execute_activity(
                    SEND_NOTIFICATION,
                    i,
                    task_queue=notify_queue,
                    result_type=SendNotificationResult,
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            )
        return out


async def test_notify_worker_serves_the_provider_queue(engine: Engine, time_env, task_queue: str) -> None:
    notify_queue = task_queue + "-notify"
    add_shipment(engine)
    client = time_env.client
    async with (
        notify_worker(client, engine, LOCAL, task_queue=notify_queue),
        Worker(
            client, task_queue=task_queue, workflows=[SendTwice], workflow_runner=UnsandboxedWorkflowRunner()
        ),
    ):
        results = await client.execute_workflow(
            SendTwice.run, args=[inp(), notify_queue], id=f"wf-{uuid.uuid4()}", task_queue=task_queue
        )
    assert [r.status for r in results] == ["sent", "sent"]
    assert results[0] == results[1]
    assert len(ns.list_outbox(engine)) == 1


# ---- NDR messages: the signed link and the per-case reply-to ---------------------------------
class CapturingOutbox:
    """The outbox, keeping the OutboundMessage each send got."""

    PROVIDER = "outbox"

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg, settings, engine=None) -> SendResult:
        self.sent.append(msg)
        return outbox.send(msg, settings, engine)

    def reconcile(self, msg, settings, engine, since, exclude_ids):
        return outbox.reconcile(msg, settings, engine, since, exclude_ids)


NDR_SETTINGS = ChannelSettings(
    twilio_auth_token="t", public_base_url="https://ndr.example.com", secret_key="s" * 43
)


def ndr_ctx(**kw: Any) -> dict[str, Any]:
    from workflows.ndr_policy import menu_context

    ctx = {
        "ndr_attempt": 1,
        "reason": "customer_unavailable",
        "options": menu_context("customer_unavailable"),
        "case_ref": "",
        "agreed_date": None,
        "action": None,
    }
    ctx.update(kw)
    return ctx


def open_case_route(engine: Engine, attempt: int = 1):
    from store import ndr as ndr_store

    with Session(engine) as s:
        return ndr_store.open_route(
            s, shipment_id="shp_test1", attempt=attempt, phone="+919876543210", email="asha@example.com"
        )


async def test_ndr_message_carries_a_signed_link_for_its_case_and_nothing_of_it_returns(
    engine: Engine,
) -> None:
    from api.tokens import read_case_token

    add_shipment(engine)
    route = open_case_route(engine)
    acts = NotifyActivities(engine, NDR_SETTINGS)
    # The workflow may not know the case's reference yet: the store's route gives it.
    result = await run(acts, inp("sms", "ndr_ask", "ndr1:ask", **ndr_ctx()))
    assert result.status == "sent"
    [msg] = ns.list_outbox(engine, to="+919876543210")
    link = msg.body.split()[-1]
    assert link.startswith("https://ndr.example.com/r/")
    token = read_case_token(link.rsplit("/", 1)[1], secret_key=NDR_SETTINGS.secret_key, max_age=3600)
    assert (token.shipment_id, token.attempt, token.case_ref) == ("shp_test1", 1, route.ref)
    assert "1 deliver tomorrow, 2 pick a date, 3 change address or phone, 4 cancel" in msg.body
    # the result (what goes into workflow history) has no link, token or body
    assert link not in repr(result) and link.rsplit("/", 1)[1] not in repr(result)
    # the workflow's own reference wins (it is what the page checks the token against)
    await run(acts, inp("whatsapp", "ndr_reminder", "ndr1:r1", **ndr_ctx(case_ref="X9X9")))
    wa = [m for m in ns.list_outbox(engine, to="+919876543210") if m.purpose == "ndr_reminder"][0]
    assert "~1~X9X9." in wa.body


async def test_ndr_email_replies_reach_the_case_address_and_dates_follow_the_window(engine: Engine) -> None:
    from ndrflow.ndr_settings import NdrSettings
    from store import ndr as ndr_store

    add_shipment(engine)
    route = open_case_route(engine)
    cap = CapturingOutbox()
    acts = NotifyActivities(
        engine,
        NDR_SETTINGS,
        ChannelRegistry(NDR_SETTINGS, {"outbox": cap}),
        ndr_settings=NdrSettings(inbound_email_domain="in.example.com", reattempt_max_days=4),
    )
    assert (await run(acts, inp("email", "ndr_ask", "ndr1:ask", **ndr_ctx()))).status == "sent"
    assert cap.sent[-1].reply_to == ndr_store.reply_to_address(route.reply_key, "in.example.com")
    assert "/r/shp_test1~1~" in cap.sent[-1].html
    await run(acts, inp("sms", "ndr_ask_date", "ndr1:1:awaiting_date", **ndr_ctx(case_ref=route.ref)))
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from babel.dates import format_skeleton

    last = datetime.now(ZoneInfo("Asia/Kolkata")).date() + timedelta(days=4)
    assert format_skeleton("MMMEd", last, locale="en_IN") in cap.sent[-1].body
    # SMS never gets a reply-to, and without an inbound domain email does not either
    assert cap.sent[-1].reply_to is None
    plain = NotifyActivities(
        engine, NDR_SETTINGS, ChannelRegistry(NDR_SETTINGS, {"outbox": cap}), ndr_settings=NdrSettings()
    )
    await run(plain, inp("email", "ndr_reminder", "ndr1:r1", **ndr_ctx()))
    assert cap.sent[-1].reply_to is None


async def test_ndr_confirm_states_the_agreed_date_in_the_customers_language(engine: Engine) -> None:
    add_shipment(engine, customer_locale="hi-IN")
    open_case_route(engine)
    acts = NotifyActivities(engine, NDR_SETTINGS)
    ctx = ndr_ctx(action="reschedule", agreed_date="2027-01-02")
    assert (await run(acts, inp("sms", "ndr_confirm", "ndr1:2:decided", **ctx))).status == "sent"
    [msg] = ns.list_outbox(engine, to="+919876543210")
    assert "शनि, 2 जन॰ को डिलीवर होगा" in msg.body and msg.locale == "hi-IN"


async def test_without_a_signing_key_a_question_fails_loudly_instead_of_going_out_linkless(
    engine: Engine, tmp_path
) -> None:
    add_shipment(engine)
    keyless = ChannelSettings(twilio_auth_token="t", public_base_url="https://ndr.example.com", home=tmp_path)
    result = await run(NotifyActivities(engine, keyless), inp("sms", "ndr_ask", "ndr1:ask", **ndr_ctx()))
    assert (result.status, result.error_code) == ("failed", "template")
    assert "NDRFLOW_SECRET_KEY" in (result.reason or "")
    assert ns.list_outbox(engine) == []
    # the key generated for the home (what the API verifies with) is used when none is configured
    (tmp_path / "secrets.json").write_text('{"secret_key": "from-home"}')
    assert keyless.signing_key() == "from-home"
    ok = await run(NotifyActivities(engine, keyless), inp("sms", "ndr_ask", "ndr1:ask2", **ndr_ctx()))
    assert ok.status == "sent"
