"""Notification store on SQLite and PostgreSQL (store/notifications.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy.engine import Engine

from store import notifications as ns
from store.models import utcnow


def claim(engine: Engine, key: str = "shp_1:delivered:e1:sms", **kw) -> ns.Claim:
    args = dict(key=key, shipment_id="shp_1", channel="sms", purpose="delivered", occurrence="e1")
    args.update(kw)
    return ns.claim_notification(engine, **args)


def test_claim_is_unique_per_key(engine: Engine) -> None:
    first = claim(engine)
    again = claim(engine)
    assert first.fresh and not again.fresh
    assert again.row.id == first.row.id and again.row.status == "pending"


def test_concurrent_claims_have_one_winner(engine: Engine) -> None:
    results: list[ns.Claim] = []
    lock = threading.Lock()

    def go() -> None:
        c = claim(engine, key="shp_1:picked_up:e1:sms")
        with lock:
            results.append(c)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(c.fresh for c in results) == 1
    assert len({c.row.id for c in results}) == 1


def test_send_lifecycle_compare_and_set(engine: Engine) -> None:
    row = claim(engine).row
    a1 = ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+919876543210")
    assert a1 is not None and a1.status == "sending" and a1.attempt == 1 and a1.attempt_started_at
    # a second worker holding the stale row cannot start an attempt too
    assert ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+919876543210") is None
    sent = ns.mark_sent(engine, a1, provider_message_id="SM123")
    assert sent.status == "sent" and sent.provider_message_id == "SM123" and sent.sent_at
    # final: nothing moves it any more
    assert ns.begin_attempt(engine, sent, provider="twilio_sms", recipient="x") is None
    assert ns.mark_failed(engine, a1, error_code="21211", reason="late").status == "sent"


def test_release_returns_to_pending_and_failure_is_final(engine: Engine) -> None:
    row = claim(engine).row
    a1 = ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+91")
    assert a1 is not None
    released = ns.release_attempt(engine, a1, error_code="429", reason="Too Many Requests")
    assert released is not None and released.status == "pending" and released.error_code == "429"
    a2 = ns.begin_attempt(engine, released, provider="twilio_sms", recipient="+91")
    assert a2 is not None and a2.attempt == 2
    failed = ns.mark_failed(engine, a2, error_code="21211", reason="invalid To" * 100)
    assert failed.status == "failed" and failed.error_code == "21211" and len(failed.reason or "") == 500


def test_unknown_outcome_can_be_retried_or_confirmed(engine: Engine) -> None:
    row = claim(engine).row
    a1 = ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+91")
    unknown = ns.mark_unknown(engine, a1, error_code="network", reason="read timeout")
    assert unknown is not None and unknown.status == "unknown"
    assert ns.release_attempt(engine, unknown, error_code=None, reason=None) is None  # only from sending
    a2 = ns.begin_attempt(engine, unknown, provider="twilio_sms", recipient="+91")
    assert a2 is not None and a2.attempt == 2 and a2.status == "sending"
    assert ns.mark_sent(engine, a2, provider_message_id="SM7").status == "sent"


def test_delivery_status_never_moves_backwards(engine: Engine) -> None:
    row = claim(engine).row
    a1 = ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+91")
    ns.mark_sent(engine, a1, provider_message_id="SM1")
    r, changed = ns.apply_delivery_status(engine, provider_message_id="SM1", status="delivered")
    assert changed and r.delivery_status == "delivered"
    r, changed = ns.apply_delivery_status(engine, provider_message_id="SM1", status="sent")  # late
    assert not changed and r.delivery_status == "delivered"
    r, changed = ns.apply_delivery_status(engine, key=row.key, status="read")
    assert changed and r.delivery_status == "read"


def test_failure_is_kept_and_signalled_once(engine: Engine) -> None:
    row = claim(engine).row
    a1 = ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+91")
    ns.mark_sent(engine, a1, provider_message_id="SM2")
    r, changed = ns.apply_delivery_status(engine, key=row.key, status="undelivered", error_code="30003")
    assert changed and r.error_code == "30003"
    _, changed = ns.apply_delivery_status(engine, key=row.key, status="delivered")
    assert not changed  # a late success never hides the failure
    assert [x.key for x in ns.unsignalled_failures(engine, [row.key, "other"])] == [row.key]
    ns.mark_failure_signalled(engine, row.key)
    assert ns.unsignalled_failures(engine, [row.key]) == []


def test_callback_before_our_own_write_fills_the_message_id(engine: Engine) -> None:
    row = claim(engine).row
    ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+91")
    r, changed = ns.apply_delivery_status(engine, key=row.key, provider_message_id="SM3", status="queued")
    assert changed and r.provider_message_id == "SM3" and r.status == "sending"


def test_unknown_callback_is_ignored(engine: Engine) -> None:
    assert ns.apply_delivery_status(engine, provider_message_id="SMnope", status="failed") == (None, False)
    assert ns.apply_delivery_status(engine, status="failed") == (None, False)


def test_notifications_for_shipment(engine: Engine) -> None:
    row = claim(engine).row
    claim(engine, key="shp_1:delivered:e1:email", channel="email")
    claim(engine, key="shp_2:delivered:e1:sms", shipment_id="shp_2")
    a1 = ns.begin_attempt(engine, row, provider="twilio_sms", recipient="+91")
    ns.mark_sent(engine, a1, provider_message_id="SM9")
    items = ns.notifications_for_shipment(engine, "shp_1")
    assert [(i["channel"], i["status"], i["provider_message_id"]) for i in items] == [
        ("sms", "sent", "SM9"),
        ("email", "pending", None),
    ]
    assert "recipient" not in items[0]  # no contact data in API views


def test_opt_out_and_back_in(engine: Engine) -> None:
    assert not ns.is_opted_out(engine, channel="sms", address="+919876543210")
    ns.set_opt_out(
        engine, channel="sms", address="+919876543210", opted_out=True, source="keyword", keyword="STOP"
    )
    ns.set_opt_out(
        engine, channel="sms", address="+919876543210", opted_out=True, source="keyword", keyword="STOP"
    )
    assert ns.is_opted_out(engine, channel="sms", address="+919876543210")
    assert not ns.is_opted_out(engine, channel="whatsapp", address="+919876543210")  # per channel
    ns.set_opt_out(
        engine, channel="whatsapp", address="whatsapp:+919876543210", opted_out=True, source="keyword"
    )
    assert ns.is_opted_out(engine, channel="whatsapp", address="+919876543210")
    ns.set_opt_out(
        engine, channel="sms", address="+919876543210", opted_out=False, source="keyword", keyword="START"
    )
    assert not ns.is_opted_out(engine, channel="sms", address="+919876543210")
    ns.set_opt_out(
        engine, channel="email", address="Asha@Example.com", opted_out=True, source="sendgrid_unsubscribe"
    )
    assert ns.is_opted_out(engine, channel="email", address="asha@example.COM")


def test_outbox_is_idempotent_and_filtered(engine: Engine) -> None:
    def msg(key: str, to: str, body: str) -> ns.OutboxMessage:
        return ns.OutboxMessage(
            key=key,
            message_id="OB" + key[-6:],
            shipment_id="shp_1",
            channel="sms",
            to_address=to,
            purpose="delivered",
            locale="en",
            body=body,
        )

    first = ns.store_outbox_message(engine, msg("k:000001", "+919876543210", "one"))
    again = ns.store_outbox_message(engine, msg("k:000001", "+919876543210", "one, retried"))
    assert again.id == first.id and again.body == "one"
    ns.store_outbox_message(engine, msg("k:000002", "+919876543210", "two"))
    ns.store_outbox_message(engine, msg("k:000003", "+821012345678", "other"))
    assert [m.body for m in ns.list_outbox(engine, to="+919876543210")] == ["one", "two"]
    assert len(ns.list_outbox(engine)) == 3
    assert [m.body for m in ns.list_outbox(engine, limit=2)] == ["two", "other"]
    assert ns.outbox_by_key(engine, "k:000002").body == "two"


def test_inbound_dedupe_and_last_inbound(engine: Engine) -> None:
    t0 = utcnow() - timedelta(hours=30)
    t1 = utcnow() - timedelta(hours=2)
    assert ns.record_inbound(
        engine,
        provider="twilio",
        provider_message_id="SM1",
        channel="whatsapp",
        from_address="whatsapp:+919876543210",
        body="hi",
        received_at=t0,
    )
    assert ns.record_inbound(
        engine,
        provider="twilio",
        provider_message_id="SM2",
        channel="whatsapp",
        from_address="whatsapp:+919876543210",
        body="2",
        received_at=t1,
    )
    assert not ns.record_inbound(
        engine,
        provider="twilio",
        provider_message_id="SM2",
        channel="whatsapp",
        from_address="+919876543210",
        body="2",
    )
    last = ns.last_inbound_at(engine, channel="whatsapp", from_address="+919876543210")
    assert last is not None and last.tzinfo is not None and abs((last - t1).total_seconds()) < 1
    assert ns.last_inbound_at(engine, channel="sms", from_address="+919876543210") is None


def test_sendgrid_events_deduplicated_and_applied(engine: Engine) -> None:
    row = claim(engine, key="shp_1:delivered:e1:email", channel="email").row
    a1 = ns.begin_attempt(engine, row, provider="sendgrid_email", recipient="a@example.com")
    ns.mark_sent(engine, a1, provider_message_id="14c5d75ce93")
    assert ns.apply_sendgrid_event(
        engine,
        sg_event_id="ev1",
        event="delivered",
        status="delivered",
        key=row.key,
        provider_message_id=None,
    )
    assert not ns.apply_sendgrid_event(
        engine,
        sg_event_id="ev1",
        event="delivered",
        status="delivered",
        key=row.key,
        provider_message_id=None,
    )
    # by message id when the custom arg is missing: sg_message_id carries a suffix
    assert ns.apply_sendgrid_event(
        engine,
        sg_event_id="ev2",
        event="bounce",
        status="bounce",
        key=None,
        provider_message_id="14c5d75ce93.filterdrecv-p3las1-5bf99c48d5-2cg5w-18-5BFE.0",
        error_code="550",
    )
    r = ns.get_notification(engine, row.key)
    assert r.delivery_status == "bounce" and r.error_code == "550"
    # an event we cannot place is still remembered (and not applied anywhere)
    assert ns.apply_sendgrid_event(
        engine, sg_event_id="ev3", event="open", status="open", key="nope", provider_message_id=None
    )
