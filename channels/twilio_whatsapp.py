"""Twilio WhatsApp.

WhatsApp allows free-form text only inside the 24-hour session that the customer's last
message opens. Outside it we send an approved Content template: ContentSid plus
ContentVariables ({"1": ..., "2": ...}) mapped per (purpose, locale) in
NDRFLOW_WHATSAPP_TEMPLATES. NDR questions use quick-reply templates keyed per menu
("ndr_ask:1234"; see template_keys and channels/whatsapp_content.py, which builds their
definitions with button ids equal to the fixed option numbers, so a tap reads like the digit).
When Twilio refuses free-form text with 63016 (window closed after all) we fall back to the
template in the same attempt. Twilio may also report 63016 later, in the
status callback; the workflow then sees a failure for this channel (NotificationStatusInput with
error_code "63016") and may resend with context {"whatsapp_force_template": true} or move on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from channels import twilio_common as tw
from channels.base import ChannelError, InboundMessage, OutboundMessage, SendResult, StatusUpdate
from channels.settings import ChannelSettings
from templates import locale_chain

PROVIDER = "twilio_whatsapp"
CHANNEL = "whatsapp"
OUTSIDE_WINDOW = "63016"


def _base(msg: OutboundMessage, settings: ChannelSettings) -> dict[str, Any]:
    return {
        "to": tw.address(msg),
        "status_callback": settings.status_callback_url(msg.key),
        **tw.sender_params(settings, whatsapp=True),
    }


def content_variables(variables: Mapping[str, str], names: list[str]) -> str:
    # WhatsApp refuses empty parameters: an absent optional value shows as "-".
    return json.dumps(
        {str(i): (variables.get(name) or "-") for i, name in enumerate(names, 1)}, ensure_ascii=False
    )


def template_keys(msg: OutboundMessage) -> list[str]:
    """Configuration keys to look up, most specific first. NDR questions offer different options
    per reason, and quick-reply buttons are fixed in an approved template, so a template made for
    one menu is keyed "<purpose>:<menu numbers>" ("ndr_ask:124"); "<purpose>" alone is the
    fallback (a text template carrying {{options_text}})."""
    menu = msg.variables.get("menu")
    return ([f"{msg.purpose}:{menu}"] if menu else []) + [msg.purpose]


def send_template(msg: OutboundMessage, settings: ChannelSettings, why: str) -> SendResult:
    chain = [c for c in (msg.template_locale, *locale_chain(msg.locale)) if c]
    chain = list(dict.fromkeys(chain))
    template = None
    for key in template_keys(msg):
        template = settings.whatsapp_template(key, chain)
        if template is not None:
            break
    if template is None:
        raise ChannelError(
            "no_template",
            True,
            f"{why}, and no approved WhatsApp template is configured for "
            f"{' or '.join(template_keys(msg))} ({'/'.join(chain)})",
        )
    params = {
        **_base(msg, settings),
        "content_sid": template.content_sid,
        "content_variables": content_variables(msg.variables, template.variables),
    }
    created = tw.create_message(settings, params)
    return SendResult(
        provider=PROVIDER,
        provider_message_id=created.sid,
        status=str(created.status or "queued"),
        detail=f"template {template.content_sid} ({why})",
    )


def send(msg: OutboundMessage, settings: ChannelSettings, engine: Any = None) -> SendResult:
    if msg.within_session and not msg.force_template:
        try:
            created = tw.create_message(settings, {**_base(msg, settings), "body": msg.body})
            return SendResult(
                provider=PROVIDER, provider_message_id=created.sid, status=str(created.status or "queued")
            )
        except ChannelError as err:
            if err.code != OUTSIDE_WINDOW:
                raise
            return send_template(msg, settings, "Twilio answered 63016 (session window closed)")
    why = "template requested" if msg.force_template else "outside the 24-hour session window"
    return send_template(msg, settings, why)


def reconcile(
    msg: OutboundMessage, settings: ChannelSettings, engine: Any, since: datetime, exclude_ids: set[str]
) -> SendResult | None:
    return tw.reconcile(PROVIDER, msg, settings, since, exclude_ids)


def parse_inbound(raw: bytes, content_type: str = "application/x-www-form-urlencoded") -> InboundMessage:
    return tw.parse_inbound(PROVIDER, raw)


def parse_status(raw: bytes, query: Mapping[str, str] | None = None) -> list[StatusUpdate]:
    return tw.parse_status(PROVIDER, raw, query)


def verify_signature(
    raw: bytes, headers: Mapping[str, str], url: str, settings: ChannelSettings, now: datetime | None = None
) -> bool:
    return tw.verify_signature(raw, headers, url, settings, now)
