"""Twilio SMS channel against the loopback fake (channels/twilio_sms.py).

Every provider module has the same test names; recorded raw payloads are at the bottom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from channels import twilio_sms as provider
from channels.base import ChannelError, OutboundMessage
from tests.channels.fake_providers import MESSAGING_SERVICE_SID, TWILIO_FROM, FakeProviders

MSG = OutboundMessage(
    key="shp_abc:out_for_delivery:e3:sms",
    shipment_id="shp_abc",
    channel="sms",
    purpose="out_for_delivery",
    locale="en-IN",
    to="+919876543210",
    body="Acme: your order A-1 is out for delivery today. Track: https://t.example/x",
    template_locale="en",
)


def test_send_request_shape(fake: FakeProviders) -> None:
    result = provider.send(MSG, fake.twilio_settings())
    assert result.provider == "twilio_sms" and result.provider_message_id.startswith("SM")
    [req] = fake.state.requests
    form = req["form"]
    assert form["To"] == "+919876543210" and form["From"] == TWILIO_FROM and form["Body"] == MSG.body
    callback = urlsplit(form["StatusCallback"])
    assert (callback.scheme, callback.netloc, callback.path) == (
        "https",
        "ndr.example.com",
        "/v1/webhooks/twilio/status",
    )
    assert parse_qs(callback.query)["key"] == [MSG.key]
    # with a messaging service, no From: the service picks the sender
    fake.reset()
    provider.send(MSG, fake.twilio_settings(twilio_messaging_service_sid=MESSAGING_SERVICE_SID))
    form = fake.state.requests[0]["form"]
    assert form["MessagingServiceSid"] == MESSAGING_SERVICE_SID and "From" not in form


@pytest.mark.parametrize("code", [21211, 21614, 21635, 21610, 21408])
def test_send_permanent_error_is_not_retryable(fake: FakeProviders, code: int) -> None:
    fake.fail_next("twilio", status=400, code=code, message="refused")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.twilio_settings())
    assert info.value.permanent and info.value.code == str(code) and not info.value.maybe_sent
    assert fake.state.twilio_messages == []


def test_send_rate_limit_and_server_error_are_retryable(fake: FakeProviders) -> None:
    fake.fail_next("twilio", status=429, code=20429, message="Too Many Requests")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.twilio_settings())
    assert not info.value.permanent and not info.value.maybe_sent  # surely not taken
    fake.fail_next("twilio", status=500, code=20500, message="Internal Server Error")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.twilio_settings())
    assert not info.value.permanent and info.value.maybe_sent  # may have been taken
    # nothing listening: refused connection, surely not sent
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, fake.twilio_settings(twilio_base_url="http://127.0.0.1:9"))
    assert not info.value.permanent and not info.value.maybe_sent
    assert len(fake.state.requests) == 2  # SDK retries are off: one request per call


def test_lost_response_is_reconciled(fake: FakeProviders) -> None:
    settings = fake.twilio_settings()
    before = datetime.now(UTC)
    fake.fail_next("twilio", kind="accept_then_hang", hang=1.6)
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, settings)
    assert info.value.maybe_sent and not info.value.permanent
    [accepted] = fake.state.twilio_messages
    found = provider.reconcile(MSG, settings, None, before, set())
    assert found is not None and found.provider_message_id == accepted["sid"]
    # already recorded for another notification, or older than the attempt: not ours
    assert provider.reconcile(MSG, settings, None, before, {accepted["sid"]}) is None
    assert provider.reconcile(MSG, settings, None, before + timedelta(minutes=5), set()) is None
    other = OutboundMessage(**{**MSG.__dict__, "body": "a different message"})
    assert provider.reconcile(other, settings, None, before, set()) is None


def test_parse_inbound() -> None:
    msg = provider.parse_inbound(RAW_INBOUND_STOP)
    assert (msg.channel, msg.from_address, msg.to_address, msg.body) == (
        "sms",
        "+919876543210",
        "+15005550006",
        "Stop",
    )
    assert msg.provider_message_id == "SM9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    with pytest.raises(ValueError, match="MessageSid"):
        provider.parse_inbound(b"From=%2B919876543210&Body=hi")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", "opt_out"),
        ("stop", "opt_out"),
        (" Stop. ", "opt_out"),
        ("UNSUBSCRIBE", "opt_out"),
        ("end", "opt_out"),
        ("Quit", "opt_out"),
        ("STOPALL", "opt_out"),
        ("revoke", "opt_out"),
        ("optout", "opt_out"),
        ("CANCEL", "opt_out"),
        ("START", "opt_in"),
        ("unstop", "opt_in"),
        ("Yes", "opt_in"),
        ("2", None),
        ("please stop calling me", None),
        ("stop it", None),
        ("", None),
    ],
)
def test_optout_keywords_through_inbound_parser(body: str, expected: str | None) -> None:
    raw = f"MessageSid=SM1&From=%2B919876543210&To=%2B15005550006&Body={body.replace(' ', '+')}".encode()
    assert provider.parse_inbound(raw).optout == expected


def test_parse_status() -> None:
    [upd] = provider.parse_status(RAW_STATUS_UNDELIVERED, {"key": "shp_abc:out_for_delivery:e3:sms"})
    assert (upd.channel, upd.status, upd.error_code, upd.provider_message_id) == (
        "sms",
        "undelivered",
        "30003",
        "SM4a1f9c2b3d4e5f60718293a4b5c6d7e8",
    )
    assert (
        upd.key == "shp_abc:out_for_delivery:e3:sms"
        and upd.recipient == "+919876543210"
        and upd.optout is None
    )
    [upd] = provider.parse_status(b"MessageSid=SM1&MessageStatus=failed&ErrorCode=21610&To=%2B919876543210")
    assert upd.status == "failed" and upd.optout == "opt_out" and upd.key is None
    with pytest.raises(ValueError, match="MessageStatus"):
        provider.parse_status(b"MessageSid=SM1")


def test_verify_signature_accepts_recorded_and_refuses_tampered(fake: FakeProviders) -> None:
    settings = fake.twilio_settings(twilio_auth_token="12345")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RAW_STATUS_SIGNATURE,
    }
    assert provider.verify_signature(RAW_STATUS_UNDELIVERED, headers, STATUS_URL, settings)
    # default ports are allowed either way, as Twilio signs inconsistently
    assert provider.verify_signature(
        RAW_STATUS_UNDELIVERED, headers, STATUS_URL.replace(".com/", ".com:443/"), settings
    )
    tampered = RAW_STATUS_UNDELIVERED.replace(b"undelivered", b"delivered")
    assert not provider.verify_signature(tampered, headers, STATUS_URL, settings)
    assert not provider.verify_signature(
        RAW_STATUS_UNDELIVERED, headers, STATUS_URL.replace("e3", "e4"), settings
    )
    assert not provider.verify_signature(
        RAW_STATUS_UNDELIVERED, {"Content-Type": headers["Content-Type"]}, STATUS_URL, settings
    )
    assert not provider.verify_signature(
        RAW_STATUS_UNDELIVERED, headers, STATUS_URL, fake.twilio_settings(twilio_auth_token="other")
    )
    assert not provider.verify_signature(
        RAW_STATUS_UNDELIVERED, headers, STATUS_URL, fake.twilio_settings(twilio_auth_token="")
    )
    assert not provider.verify_signature(b"\xff\xfe", headers, STATUS_URL, settings)
    inbound_headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RAW_INBOUND_SIGNATURE,
    }
    assert provider.verify_signature(RAW_INBOUND_STOP, inbound_headers, INBOUND_URL, settings)


# ---- recorded payloads (Twilio's field set; signed with auth token "12345") ----------------
STATUS_URL = "https://ndr.example.com/v1/webhooks/twilio/status?key=shp_abc%3Aout_for_delivery%3Ae3%3Asms"
RAW_STATUS_UNDELIVERED = (
    b"SmsSid=SM4a1f9c2b3d4e5f60718293a4b5c6d7e8&SmsStatus=undelivered&MessageStatus=undelivered"
    b"&To=%2B919876543210&MessageSid=SM4a1f9c2b3d4e5f60718293a4b5c6d7e8"
    b"&AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&From=%2B15005550006&ApiVersion=2010-04-01&ErrorCode=30003"
)
RAW_STATUS_SIGNATURE = "llKc4rO8+Y1AsW5IGpRPOMB67G0="
INBOUND_URL = "https://ndr.example.com/v1/webhooks/twilio/inbound"
RAW_INBOUND_STOP = (
    b"ToCountry=US&ToState=CA&SmsMessageSid=SM9f8e7d6c5b4a39281706f5e4d3c2b1a0&NumMedia=0&ToCity=&FromZip="
    b"&SmsSid=SM9f8e7d6c5b4a39281706f5e4d3c2b1a0&FromState=&SmsStatus=received&FromCity=&Body=Stop&FromCountry=IN"
    b"&To=%2B15005550006&MessagingServiceSid=MGXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&ToZip=&NumSegments=1"
    b"&MessageSid=SM9f8e7d6c5b4a39281706f5e4d3c2b1a0&AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    b"&From=%2B919876543210&ApiVersion=2010-04-01&OptOutType=STOP"
)
RAW_INBOUND_SIGNATURE = "lLtouMzjO7Jjjd5aYkRa5GzGFRw="
