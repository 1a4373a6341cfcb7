"""Local outbox channel (channels/outbox.py): stores messages instead of sending them.

Every provider module has the same test names; recorded raw payloads are at the bottom."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from channels import outbox as provider
from channels.base import ChannelError, OutboundMessage
from channels.settings import ChannelSettings
from store import notifications as ns
from store.db import make_engine

MSG = OutboundMessage(
    key="shp_abc:picked_up:e1:sms",
    shipment_id="shp_abc",
    channel="sms",
    purpose="picked_up",
    locale="ko-KR",
    template_locale="ko",
    to="+821012345678",
    body="[Acme] 주문 A-1 상품이 인계되었습니다.",
)
SETTINGS = ChannelSettings(twilio_auth_token="12345")


def test_send_request_shape(engine: Engine) -> None:
    result = provider.send(MSG, SETTINGS, engine)
    assert result.provider == "outbox" and result.provider_message_id == provider.message_id_for(MSG.key)
    [stored] = ns.list_outbox(engine, to="+821012345678")
    assert (stored.channel, stored.purpose, stored.locale, stored.template_locale, stored.body) == (
        "sms",
        "picked_up",
        "ko-KR",
        "ko",
        MSG.body,
    )
    email = OutboundMessage(
        **{
            **MSG.__dict__,
            "key": "shp_abc:picked_up:e1:email",
            "channel": "email",
            "to": "Asha@Example.com",
            "subject": "S",
            "html": "<p>x</p>",
        }
    )
    provider.send(email, SETTINGS, engine)
    [mail] = ns.list_outbox(engine, to="asha@example.com")
    assert mail.subject == "S" and mail.html == "<p>x</p>"


def test_send_is_idempotent_per_key(engine: Engine) -> None:
    first = provider.send(MSG, SETTINGS, engine)
    again = provider.send(OutboundMessage(**{**MSG.__dict__, "body": "changed on retry"}), SETTINGS, engine)
    assert again.provider_message_id == first.provider_message_id
    assert [m.body for m in ns.list_outbox(engine)] == [MSG.body]


def test_send_permanent_error_is_not_retryable() -> None:
    with pytest.raises(ChannelError) as info:
        provider.send(MSG, SETTINGS, None)
    assert info.value.permanent and info.value.code == "not_configured"


def test_send_rate_limit_and_server_error_are_retryable(tmp_path) -> None:
    # The outbox has no rate limits; its only failure is the database, which is not a
    # ChannelError, so the activity lets Temporal retry it.
    broken = make_engine(f"sqlite:///{tmp_path / 'not-migrated.db'}")
    with pytest.raises(Exception) as info:
        provider.send(MSG, SETTINGS, broken)
    assert not isinstance(info.value, ChannelError)


def test_lost_response_is_reconciled(engine: Engine) -> None:
    assert provider.reconcile(MSG, SETTINGS, engine, datetime.now(UTC), set()) is None
    sent = provider.send(MSG, SETTINGS, engine)
    found = provider.reconcile(MSG, SETTINGS, engine, datetime.now(UTC), set())
    assert found is not None and found.provider_message_id == sent.provider_message_id


def test_parse_inbound() -> None:
    # replies in local mode use Twilio's webhook format
    msg = provider.parse_inbound(RAW_LOCAL_REPLY)
    assert (msg.provider, msg.channel, msg.from_address, msg.body) == ("outbox", "sms", "+821012345678", "2")


@pytest.mark.parametrize(("body", "expected"), [("STOP", "opt_out"), ("start", "opt_in"), ("토요일", None)])
def test_optout_keywords_through_inbound_parser(body: str, expected: str | None) -> None:
    from urllib.parse import quote

    raw = RAW_LOCAL_REPLY.replace(b"Body=2", b"Body=" + quote(body).encode())
    assert provider.parse_inbound(raw).optout == expected


def test_parse_status() -> None:
    [upd] = provider.parse_status(
        b"MessageSid=OB1&MessageStatus=delivered&To=%2B821012345678", {"key": MSG.key}
    )
    assert (upd.provider, upd.status, upd.key) == ("outbox", "delivered", MSG.key)


def test_verify_signature_accepts_recorded_and_refuses_tampered() -> None:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RAW_LOCAL_REPLY_SIGNATURE,
    }
    assert provider.verify_signature(RAW_LOCAL_REPLY, headers, LOCAL_URL, SETTINGS)
    assert not provider.verify_signature(
        RAW_LOCAL_REPLY.replace(b"Body=2", b"Body=3"), headers, LOCAL_URL, SETTINGS
    )
    assert not provider.verify_signature(
        RAW_LOCAL_REPLY, headers, LOCAL_URL, ChannelSettings(twilio_auth_token="")
    )


# ---- recorded payloads (a reply from the /dev/outbox page; per-home token "12345") -----------
LOCAL_URL = "http://127.0.0.1:8000/v1/webhooks/twilio/inbound"
RAW_LOCAL_REPLY = (
    b"MessageSid=SMlocal0001&AccountSid=ACLOCAL&From=%2B821012345678&To=ndrflow&Body=2&NumMedia=0"
)
RAW_LOCAL_REPLY_SIGNATURE = "Udrkgv72zqa7o3fkH4lW+GjVOds="
