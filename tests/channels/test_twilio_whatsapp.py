"""Twilio WhatsApp channel against the loopback fake (channels/twilio_whatsapp.py).

Every provider module has the same test names; recorded raw payloads are at the bottom."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from channels import twilio_whatsapp as provider
from channels.base import ChannelError, OutboundMessage
from tests.channels.fake_providers import TWILIO_FROM, FakeProviders

TEMPLATES = {
    "ndr_ask": {
        "en": {
            "content_sid": "HX" + "a" * 32,
            "variables": ["merchant_name", "order_id", "reason_text", "link"],
        },
        "hi": {
            "content_sid": "HX" + "b" * 32,
            "variables": ["merchant_name", "order_id", "reason_text", "link"],
        },
    },
    "delivered": {
        "en": {
            "content_sid": "HX" + "c" * 32,
            "variables": ["merchant_name", "order_id", "delivered_at_text"],
        }
    },
}

MSG = OutboundMessage(
    key="shp_abc:ndr_ask:ndr1-0:whatsapp",
    shipment_id="shp_abc",
    channel="whatsapp",
    purpose="ndr_ask",
    locale="hi-IN",
    template_locale="hi",
    to="+919876543210",
    body="*Acme*\nआपका ऑर्डर A-1 डिलीवर नहीं हो सका...",
    variables={
        "merchant_name": "Acme",
        "order_id": "A-1",
        "reason_text": "कोई उपलब्ध नहीं था",
        "link": "https://t.example/r/x",
    },
)


def settings(fake: FakeProviders, **kw: object):
    return fake.twilio_settings(whatsapp_templates=TEMPLATES, **kw)


def test_send_request_shape(fake: FakeProviders) -> None:
    # outside the session window: the approved template with numbered variables
    result = provider.send(MSG, settings(fake))
    assert result.provider == "twilio_whatsapp" and "template" in result.detail
    form = fake.state.requests[-1]["form"]
    assert form["To"] == "whatsapp:+919876543210" and form["From"] == "whatsapp:" + TWILIO_FROM
    assert form["ContentSid"] == TEMPLATES["ndr_ask"]["hi"]["content_sid"] and "Body" not in form
    assert json.loads(form["ContentVariables"]) == {
        "1": "Acme",
        "2": "A-1",
        "3": "कोई उपलब्ध नहीं था",
        "4": "https://t.example/r/x",
    }
    assert form["StatusCallback"].startswith("https://ndr.example.com/v1/webhooks/twilio/status?key=")
    # inside the window: our own free-form text
    inside = OutboundMessage(**{**MSG.__dict__, "within_session": True})
    provider.send(inside, settings(fake))
    form = fake.state.requests[-1]["form"]
    assert form["Body"] == MSG.body and "ContentSid" not in form
    # a dedicated WhatsApp sender wins over the SMS one
    provider.send(MSG, settings(fake, twilio_whatsapp_from="+14155238886"))
    assert fake.state.requests[-1]["form"]["From"] == "whatsapp:+14155238886"


def test_template_locale_falls_back_and_missing_values_are_dashes(fake: FakeProviders) -> None:
    msg = OutboundMessage(
        **{
            **MSG.__dict__,
            "purpose": "delivered",
            "locale": "ko-KR",
            "template_locale": "ko",
            "variables": {"merchant_name": "Acme", "order_id": "A-1"},
        }
    )
    provider.send(msg, settings(fake))
    form = fake.state.requests[-1]["form"]
    assert form["ContentSid"] == TEMPLATES["delivered"]["en"]["content_sid"]
    assert json.loads(form["ContentVariables"]) == {"1": "Acme", "2": "A-1", "3": "-"}


def test_63016_falls_back_to_the_template(fake: FakeProviders) -> None:
    fake.whatsapp_window_closed = True
    inside = OutboundMessage(**{**MSG.__dict__, "within_session": True})
    result = provider.send(inside, settings(fake))
    assert "63016" in result.detail
    first, second = fake.state.requests
    assert "Body" in first["form"] and "ContentSid" in second["form"]
    assert len(fake.state.twilio_messages) == 1


def test_send_permanent_error_is_not_retryable(fake: FakeProviders) -> None:
    # no template for this purpose and no open session: nothing we may send
    msg = OutboundMessage(**{**MSG.__dict__, "purpose": "on_hold"})
    with pytest.raises(ChannelError) as info:
        provider.send(msg, settings(fake))
    assert info.value.permanent and info.value.code == "no_template" and "on_hold" in info.value.message
    assert fake.state.requests == []
    fake.fail_next("twilio", status=400, code=63024, message="Invalid message recipient")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, settings(fake))
    assert info.value.permanent and info.value.code == "63024"
    fake.fail_next("twilio", status=400, code=21610, message="unsubscribed")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, settings(fake))
    assert info.value.permanent and info.value.code == "21610"


def test_send_rate_limit_and_server_error_are_retryable(fake: FakeProviders) -> None:
    fake.fail_next("twilio", status=429, code=20429, message="Too Many Requests")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, settings(fake))
    assert not info.value.permanent and not info.value.maybe_sent
    fake.fail_next("twilio", status=503, code=20503, message="Service Unavailable")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, settings(fake))
    assert not info.value.permanent and info.value.maybe_sent


def test_lost_response_is_reconciled(fake: FakeProviders) -> None:
    before = datetime.now(UTC)
    fake.fail_next("twilio", kind="accept_then_500")
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, settings(fake))
    assert info.value.maybe_sent
    [accepted] = fake.state.twilio_messages
    # a template message's body is Twilio's rendering, not ours: matched by recipient and time
    found = provider.reconcile(MSG, settings(fake), None, before, set())
    assert found is not None and found.provider_message_id == accepted["sid"]
    assert provider.reconcile(MSG, settings(fake), None, before, {accepted["sid"]}) is None


def test_parse_inbound() -> None:
    msg = provider.parse_inbound(RAW_INBOUND_WHATSAPP)
    assert (msg.channel, msg.from_address, msg.to_address, msg.body) == (
        "whatsapp",
        "+919876543210",
        "+14155238886",
        "2",
    )
    assert msg.profile_name == "Asha" and msg.optout is None and msg.button_payload is None
    tapped = provider.parse_inbound(
        RAW_INBOUND_WHATSAPP.replace(
            b"Body=2", b"Body=Pick+a+date&ButtonText=Pick+a+date&ButtonPayload=reschedule"
        )
    )
    assert (tapped.body, tapped.button_payload) == ("Pick a date", "reschedule")


@pytest.mark.parametrize(
    ("body", "expected"), [("STOP", "opt_out"), ("Cancel", "opt_out"), ("start", "opt_in"), ("1", None)]
)
def test_optout_keywords_through_inbound_parser(body: str, expected: str | None) -> None:
    raw = RAW_INBOUND_WHATSAPP.replace(b"Body=2", b"Body=" + body.encode())
    msg = provider.parse_inbound(raw)
    assert msg.optout == expected and msg.channel == "whatsapp"


def test_parse_status() -> None:
    [upd] = provider.parse_status(RAW_STATUS_63016, {"key": "shp_abc:ndr_ask:ndr1-0:whatsapp"})
    assert (upd.channel, upd.status, upd.error_code, upd.recipient) == (
        "whatsapp",
        "failed",
        "63016",
        "+919876543210",
    )
    assert upd.key == "shp_abc:ndr_ask:ndr1-0:whatsapp"
    [read] = provider.parse_status(b"MessageSid=SM2&MessageStatus=read&To=whatsapp%3A%2B919876543210")
    assert read.status == "read"


def test_verify_signature_accepts_recorded_and_refuses_tampered(fake: FakeProviders) -> None:
    s = settings(fake, twilio_auth_token="12345")
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": RAW_STATUS_63016_SIGNATURE,
    }
    assert provider.verify_signature(RAW_STATUS_63016, headers, STATUS_URL, s)  # header names in any case
    assert not provider.verify_signature(RAW_STATUS_63016 + b"&Extra=1", headers, STATUS_URL, s)
    inbound = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RAW_INBOUND_SIGNATURE,
    }
    assert provider.verify_signature(RAW_INBOUND_WHATSAPP, inbound, INBOUND_URL, s)
    assert not provider.verify_signature(
        RAW_INBOUND_WHATSAPP, inbound, INBOUND_URL.replace("https", "http"), s
    )


# ---- recorded payloads (Twilio's WhatsApp field set; signed with auth token "12345") -------
INBOUND_URL = "https://ndr.example.com/v1/webhooks/twilio/inbound"
RAW_INBOUND_WHATSAPP = (
    b"SmsMessageSid=SM0a1b2c3d4e5f60718293a4b5c6d7e8f9&NumMedia=0&ProfileName=Asha&MessageType=text"
    b"&SmsSid=SM0a1b2c3d4e5f60718293a4b5c6d7e8f9&WaId=919876543210&SmsStatus=received&Body=2"
    b"&To=whatsapp%3A%2B14155238886&NumSegments=1&ReferralNumMedia=0&MessageSid=SM0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    b"&AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&From=whatsapp%3A%2B919876543210&ApiVersion=2010-04-01"
)
RAW_INBOUND_SIGNATURE = "a7Hr+HzLtQ4HI3Frzb0E+EyaLHk="
STATUS_URL = "https://ndr.example.com/v1/webhooks/twilio/status?key=shp_abc%3Andr_ask%3Andr1-0%3Awhatsapp"
RAW_STATUS_63016 = (
    b"ChannelPrefix=whatsapp&ApiVersion=2010-04-01&MessageStatus=failed&SmsSid=SMb1c2d3e4f5a60718293a4b5c6d7e8f90"
    b"&SmsStatus=failed&ChannelInstallSid=XEXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&To=whatsapp%3A%2B919876543210"
    b"&From=whatsapp%3A%2B14155238886&MessageSid=SMb1c2d3e4f5a60718293a4b5c6d7e8f90&StructuredMessage=false"
    b"&AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&ErrorCode=63016&ChannelToAddress=%2B91987654XXXX"
)
RAW_STATUS_63016_SIGNATURE = "tBU0sNWaJrovnPXF265zt+C9YHY="


def test_ndr_question_uses_the_quick_reply_template_made_for_its_menu(fake: FakeProviders) -> None:
    menu_sid = "HX" + "d" * 32
    templates = {
        **TEMPLATES,
        "ndr_ask:124": {"hi": {"content_sid": menu_sid, "variables": ["merchant_name", "order_id", "link"]}},
    }
    msg = OutboundMessage(**{**MSG.__dict__, "variables": {**MSG.variables, "menu": "124"}})
    provider.send(msg, fake.twilio_settings(whatsapp_templates=templates))
    form = fake.state.requests[-1]["form"]
    assert form["ContentSid"] == menu_sid
    assert json.loads(form["ContentVariables"]) == {"1": "Acme", "2": "A-1", "3": "https://t.example/r/x"}
    # another menu has no template of its own: the purpose's generic one
    other = OutboundMessage(**{**MSG.__dict__, "variables": {**MSG.variables, "menu": "1234"}})
    provider.send(other, fake.twilio_settings(whatsapp_templates=templates))
    assert fake.state.requests[-1]["form"]["ContentSid"] == TEMPLATES["ndr_ask"]["hi"]["content_sid"]
    # neither: a permanent, named failure
    with pytest.raises(ChannelError) as err:
        provider.send(other, fake.twilio_settings(whatsapp_templates={}))
    assert err.value.permanent and "ndr_ask:1234 or ndr_ask" in err.value.message
