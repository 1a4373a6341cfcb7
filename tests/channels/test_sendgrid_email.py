"""SendGrid email channel against the loopback fake (channels/sendgrid_email.py).

Every provider module has the same test names; recorded raw payloads are at the bottom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from channels import sendgrid_email as provider
from channels.base import ChannelError, OutboundMessage
from store import notifications as ns
from tests.channels.fake_providers import FakeProviders

MSG = OutboundMessage(
    key="shp_abc:delivered:e7:email",
    shipment_id="shp_abc",
    channel="email",
    purpose="delivered",
    locale="en-IN",
    template_locale="en",
    to="asha@example.com",
    body="Hello Asha,\n\nYour order A-1 was delivered.",
    subject="Your Acme order A-1 was delivered",
    html="<p>Hello Asha,</p><p>Your order A-1 was delivered.</p>",
    variables={"order_id": "A-1", "merchant_name": "Acme"},
    sender_name="Acme Fashions",
)


def test_send_request_shape(fake: FakeProviders) -> None:
    result = provider.send(MSG, fake.sendgrid_settings())
    [mail] = fake.state.sendgrid_mails
    assert result.provider == "sendgrid_email" and result.provider_message_id == mail["message_id"]
    payload = mail["payload"]
    [p] = payload["personalizations"]
    assert p["to"] == [{"email": "asha@example.com"}]
    assert p["custom_args"]["ndrflow_key"] == MSG.key  # per personalization: events carry it
    assert "custom_args" not in payload  # top level is a string in the official spec
    assert payload["from"] == {"email": "notify@acme.example", "name": "Acme Fashions"}
    assert payload["reply_to"] == {"email": "replies@parse.acme.example"}
    assert payload["subject"] == MSG.subject
    assert payload["content"] == [
        {"type": "text/plain", "value": MSG.body},
        {"type": "text/html", "value": MSG.html},
    ]
    assert fake.state.requests[0]["auth"].startswith("Bearer ")
    # a per-case reply-to address wins over the configured one
    provider.send(
        OutboundMessage(**{**MSG.__dict__, "reply_to": "case-k7q@parse.acme.example"}),
        fake.sendgrid_settings(),
    )
    assert fake.state.sendgrid_mails[-1]["payload"]["reply_to"] == {"email": "case-k7q@parse.acme.example"}


def test_dynamic_template_when_configured(fake: FakeProviders) -> None:
    settings = fake.sendgrid_settings(
        sendgrid_templates={"delivered": "d-generic", "delivered.en": "d-english"}
    )
    provider.send(MSG, settings)
    payload = fake.state.sendgrid_mails[-1]["payload"]
    assert payload["template_id"] == "d-english" and "content" not in payload
    assert payload["personalizations"][0]["dynamic_template_data"]["order_id"] == "A-1"
    provider.send(OutboundMessage(**{**MSG.__dict__, "locale": "ko", "template_locale": "ko"}), settings)
    assert fake.state.sendgrid_mails[-1]["payload"]["template_id"] == "d-english"  # ko -> en fallback


def test_send_permanent_error_is_not_retryable(fake: FakeProviders) -> None:
    fake.fail_next("sendgrid", status=400, code=1, message="Does not contain a valid address.")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.sendgrid_settings())
    assert info.value.permanent and info.value.code == "invalid_email"
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.sendgrid_settings(sendgrid_api_key="SG.wrong"))
    assert info.value.permanent and info.value.code == "401"
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.sendgrid_settings(sendgrid_from=""))
    assert info.value.permanent and info.value.code == "not_configured"


def test_send_rate_limit_and_server_error_are_retryable(fake: FakeProviders) -> None:
    fake.fail_next("sendgrid", status=429, message="too many requests", retry_after=7)
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.sendgrid_settings())
    assert not info.value.permanent and not info.value.maybe_sent and info.value.retry_after == 7
    fake.fail_next("sendgrid", status=502, message="bad gateway")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.sendgrid_settings())
    assert not info.value.permanent and info.value.maybe_sent
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.sendgrid_settings(sendgrid_base_url="http://127.0.0.1:9"))
    assert not info.value.permanent and not info.value.maybe_sent
    assert fake.state.sendgrid_mails == []


def test_lost_response_is_reconciled(fake: FakeProviders, engine) -> None:
    settings = fake.sendgrid_settings(sendgrid_reconcile_wait_seconds=120)
    row = ns.claim_notification(
        engine, key=MSG.key, shipment_id="shp_abc", channel="email", purpose="delivered"
    ).row
    row = ns.begin_attempt(engine, row, provider="sendgrid_email", recipient=MSG.to)
    started = row.attempt_started_at
    fake.fail_next("sendgrid", kind="accept_then_hang", hang=1.6)
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, settings)
    assert info.value.maybe_sent
    # no event yet: wait for SendGrid's events rather than send blind
    with pytest.raises(ChannelError) as info:
        provider.reconcile(MSG, settings, engine, started, set())
    assert info.value.code == "awaiting_events" and 0 < info.value.retry_after <= 120
    # the event webhook delivered an event carrying our custom arg: it went out
    ns.apply_sendgrid_event(
        engine,
        sg_event_id="ev-1",
        event="processed",
        status="processed",
        key=MSG.key,
        provider_message_id="abc.filter1",
    )
    found = provider.reconcile(MSG, settings, engine, started, set())
    assert found is not None and found.detail.startswith("reconciled")
    # no event after the wait: send again
    other = OutboundMessage(**{**MSG.__dict__, "key": "shp_abc:delivered:e8:email"})
    assert (
        provider.reconcile(other, settings, engine, datetime.now(UTC) - timedelta(seconds=121), set()) is None
    )
    # no event webhook configured: nothing to wait for
    assert (
        provider.reconcile(
            other, fake.sendgrid_settings(sendgrid_event_public_key=""), engine, datetime.now(UTC), set()
        )
        is None
    )


def test_parse_inbound() -> None:
    msg = provider.parse_inbound(RAW_INBOUND_PARSE, INBOUND_CONTENT_TYPE)
    assert (msg.channel, msg.from_address, msg.to_address) == (
        "email",
        "asha@example.com",
        "case-k7q@parse.acme.example",
    )
    assert msg.body.startswith("2\r\n") or msg.body.startswith("2\n")
    assert msg.subject == "Re: Action needed: delivery of order A-1 failed"
    assert msg.provider_message_id == "<CAF=abc123@mail.example.com>"
    with pytest.raises(ValueError, match="multipart"):
        provider.parse_inbound(b"{}", "application/json")


@pytest.mark.parametrize(
    ("first_line", "expected"), [("STOP", "opt_out"), ("unsubscribe", "opt_out"), ("2", None)]
)
def test_optout_keywords_through_inbound_parser(first_line: str, expected: str | None) -> None:
    assert provider.parse_inbound(_with_text(first_line), INBOUND_CONTENT_TYPE).optout == expected
    # a keyword above a quoted email is a reply, not a keyword message
    assert (
        provider.parse_inbound(_with_text(first_line + "\r\n\r\n> quoted"), INBOUND_CONTENT_TYPE).optout
        is None
    )


def test_parse_status() -> None:
    updates = provider.parse_status(RAW_EVENTS)
    assert [(u.raw_status, u.status, u.key) for u in updates] == [
        ("processed", "processed", "shp_abc:delivered:e7:email"),
        ("delivered", "delivered", "shp_abc:delivered:e7:email"),
        ("bounce", "bounce", "shp_def:out_for_delivery:e3:email"),
        ("dropped", "dropped", "shp_ghi:picked_up:e1:email"),
        ("open", "open", "shp_abc:delivered:e7:email"),
        ("unsubscribe", None, "shp_abc:delivered:e7:email"),
    ]
    bounce = updates[2]
    assert (
        bounce.error_code == "5.1.1"
        and bounce.recipient == "old@example.com"
        and bounce.event_id == "qL1kH9G7Qz6ZyXBbWQ1n6Q=="
    )
    assert updates[5].optout == "opt_out" and updates[5].recipient == "asha@example.com"
    assert updates[0].occurred_at == datetime.fromtimestamp(1795843200, UTC)
    for bad, problem in [(b"not json", "not JSON"), (b"{}", "array"), (b'[{"event":"open"}]', "sg_event_id")]:
        with pytest.raises(ValueError, match=problem):
            provider.parse_status(bad)


def test_verify_signature_accepts_recorded_and_refuses_tampered(fake: FakeProviders) -> None:
    settings = fake.sendgrid_settings(sendgrid_event_public_key=RECORDED_PUBLIC_KEY)
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": RECORDED_SIGNATURE,
        "X-Twilio-Email-Event-Webhook-Timestamp": RECORDED_TIMESTAMP,
    }
    signed_at = datetime.fromtimestamp(int(RECORDED_TIMESTAMP), UTC)
    assert provider.verify_signature(RAW_EVENTS, headers, "", settings, now=signed_at + timedelta(seconds=30))
    # replayed later than the allowed age (default 10 minutes), or from the future
    assert not provider.verify_signature(
        RAW_EVENTS, headers, "", settings, now=signed_at + timedelta(minutes=11)
    )
    assert not provider.verify_signature(
        RAW_EVENTS, headers, "", settings, now=signed_at - timedelta(minutes=11)
    )
    assert not provider.verify_signature(
        RAW_EVENTS.replace(b"bounce", b"delivered"), headers, "", settings, now=signed_at
    )
    assert not provider.verify_signature(
        RAW_EVENTS,
        {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": str(int(RECORDED_TIMESTAMP) + 1)},
        "",
        settings,
        now=signed_at,
    )
    assert not provider.verify_signature(RAW_EVENTS, {}, "", settings, now=signed_at)
    assert not provider.verify_signature(
        RAW_EVENTS, headers, "", fake.sendgrid_settings(), now=signed_at
    )  # other key
    assert not provider.verify_signature(
        RAW_EVENTS, headers, "", fake.sendgrid_settings(sendgrid_event_public_key=""), now=signed_at
    )
    assert not provider.verify_signature(
        RAW_EVENTS,
        headers,
        "",
        fake.sendgrid_settings(sendgrid_event_public_key="bm90IGEga2V5"),
        now=signed_at,
    )
    # what the fake signs now verifies with the fake's key
    body, live = fake.signed_sendgrid_events([{"event": "delivered", "sg_event_id": "x", "email": "a@b.c"}])
    assert provider.verify_signature(body, live, "", fake.sendgrid_settings())


def _with_text(text: str) -> bytes:
    start = RAW_INBOUND_PARSE.index(b'name="text"\r\n\r\n') + len(b'name="text"\r\n\r\n')
    end = RAW_INBOUND_PARSE.index(b"\r\n--xYzZY", start)
    return RAW_INBOUND_PARSE[:start] + text.encode() + RAW_INBOUND_PARSE[end:]


# ---- recorded payloads -------------------------------------------------------------------
# Signed Event Webhook batch (ECDSA P-256; this public key, that timestamp, that signature).
RECORDED_PUBLIC_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAET/3wDk/0tZhIHpwXOemX1tDUvoLnXO8vYlrKPvZWdmf5JwQf8xS1Y6bN3ZyCCc/1sqi6WhsepdydQG48WlNx9w=="
RECORDED_TIMESTAMP = "1795843310"
RECORDED_SIGNATURE = (
    "MEUCIDSz9/RPjLDdtTGtlBy24JJElgOMTH6TQuTAfss3pH4uAiEA0pFZj5r/0rvWtUnH4+wsmPAvGcT0h8Cs4s/Poprx+Ko="
)
RAW_EVENTS = (
    b'[{"email":"asha@example.com","timestamp":1795843200,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"processed","category":["delivered"],"sg_event_id":"rbtnWrG1DVDGGGFHFyun0A==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0","ndrflow_key":"shp_abc:delivered:e7:email","shipment_id":"shp_abc","purpose":"delivered"},'
    b'{"email":"asha@example.com","timestamp":1795843203,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"delivered","category":["delivered"],"sg_event_id":"Lcx_mkbBS6uTnAEtRkMjQQ==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0","response":"250 OK","ndrflow_key":"shp_abc:delivered:e7:email","shipment_id":"shp_abc","purpose":"delivered"},'
    b'{"email":"old@example.com","timestamp":1795843205,"smtp-id":"<14c5d75ce94.dfd.64b469@ismtpd-555>","event":"bounce","category":["out_for_delivery"],"sg_event_id":"qL1kH9G7Qz6ZyXBbWQ1n6Q==","sg_message_id":"14c5d75ce94.dfd.64b469.filter0001.16648.5515E0B88.0","reason":"550 5.1.1 The email account that you tried to reach does not exist.","status":"5.1.1","type":"bounce","bounce_classification":"Invalid Address","ndrflow_key":"shp_def:out_for_delivery:e3:email","shipment_id":"shp_def","purpose":"out_for_delivery"},'
    b'{"email":"blocked@example.com","timestamp":1795843206,"event":"dropped","category":["picked_up"],"sg_event_id":"zmzJhfJgAfUSOW80yEbPyw==","sg_message_id":"14c5d75ce95.dfd.64b469.filter0001.16648.5515E0B88.0","reason":"Bounced Address","status":"5.0.0","ndrflow_key":"shp_ghi:picked_up:e1:email"},'
    b'{"email":"asha@example.com","timestamp":1795843260,"event":"open","sg_event_id":"FOTFFO0ecsBE-zxFXfs6WA==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0","useragent":"Mozilla/5.0","ip":"203.0.113.7","sg_machine_open":false,"ndrflow_key":"shp_abc:delivered:e7:email"},'
    b'{"email":"asha@example.com","timestamp":1795843300,"event":"unsubscribe","sg_event_id":"Gcx_mkbBS6uTnAEtRkMjQQ==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0","ndrflow_key":"shp_abc:delivered:e7:email"}]'
)
# Inbound Parse (non-raw mode) as SendGrid posts it: a reply "2" above the quoted NDR email.
INBOUND_CONTENT_TYPE = "multipart/form-data; boundary=xYzZY"
RAW_INBOUND_PARSE = (
    b'--xYzZY\r\nContent-Disposition: form-data; name="headers"\r\n\r\n'
    b"Received: by mx0047p1mdw1.sendgrid.net with SMTP id 6WCVv7KAWn Sat, 28 Nov 2026 10:12:01 +0000 (UTC)\r\n"
    b"From: Asha Rao <Asha@Example.com>\r\nTo: case-k7q@parse.acme.example\r\n"
    b"Message-ID: <CAF=abc123@mail.example.com>\r\nSubject: Re: Action needed: delivery of order A-1 failed\r\n"
    b"Content-Type: multipart/alternative; boundary=000000000000\r\n\r\n"
    b'--xYzZY\r\nContent-Disposition: form-data; name="dkim"\r\n\r\n{@example.com : pass}\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="to"\r\n\r\ncase-k7q@parse.acme.example\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="from"\r\n\r\nAsha Rao <Asha@Example.com>\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
    b"2\r\n\r\nOn Sat, 28 Nov 2026 Acme wrote:\r\n> The courier could not deliver your order A-1: nobody was available.\r\n"
    b'--xYzZY\r\nContent-Disposition: form-data; name="html"\r\n\r\n<div dir="ltr">2</div><br><div class="gmail_quote">...</div>\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="sender_ip"\r\n\r\n209.85.218.41\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="envelope"\r\n\r\n{"to":["case-k7q@parse.acme.example"],"from":"asha@example.com"}\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="attachments"\r\n\r\n0\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="subject"\r\n\r\nRe: Action needed: delivery of order A-1 failed\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="charsets"\r\n\r\n{"to":"UTF-8","html":"UTF-8","subject":"UTF-8","from":"UTF-8","text":"UTF-8"}\r\n'
    b'--xYzZY\r\nContent-Disposition: form-data; name="SPF"\r\n\r\npass\r\n'
    b"--xYzZY--\r\n"
)
