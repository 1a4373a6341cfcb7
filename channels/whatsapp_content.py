"""Definitions of the WhatsApp quick-reply Content templates the NDR questions use outside the
24-hour session window, for an operator to create with Twilio's Content API and submit to
WhatsApp for approval; then map the returned HX... SIDs in NDRFLOW_WHATSAPP_TEMPLATES:

    {"ndr_ask:1234": {"en": {"content_sid": "HX...", "variables": ["merchant_name", "order_id",
                                                                   "reason_text", "link"]}}, ...}

Why per menu: quick-reply buttons are part of the approved template, and each NDR reason offers
its own options (domain/ndr_options.py: fixed numbers, a reason without "3" skips it). So there
is one template per (purpose, menu, locale), keyed "<purpose>:<menu numbers>" as
channels/twilio_whatsapp.template_keys looks them up. Each button's id is its option number:
Twilio posts it back as ButtonPayload, which the reply parser reads exactly like a typed digit.

WhatsApp's rules, held by tests: a body may neither start nor end with a variable nor put two
variables side by side; button titles are at most 20 characters; every variable has a sample.
"""

from __future__ import annotations

from typing import Any

from domain.ndr_options import MENU, options_for
from domain.taxonomy import CUSTOMER_ACTIONS
from templates.labels import label

QUICK_REPLY = "twilio/quick-reply"

# Variables of each purpose, in {{1}}, {{2}}, ... order: names of templates.Rendered.variables.
VARIABLES: dict[str, list[str]] = {
    "ndr_ask": ["merchant_name", "order_id", "reason_text", "link"],
    "ndr_reminder": ["merchant_name", "order_id", "link"],
}

BODIES: dict[str, dict[str, str]] = {
    "ndr_ask": {
        "en": "Your order from {{1}} ({{2}}) could not be delivered: {{3}}. Tap what we should do, "
        "or choose on this page: {{4}} .",
        "hi": "नमस्ते! {{1}} से आपका ऑर्डर {{2}} डिलीवर नहीं हो सका ({{3}})। नीचे विकल्प चुनें, या इस पेज पर: {{4}} ।",
        "ko": "[{{1}}] 주문 {{2}} 상품을 배송하지 못했습니다({{3}}). 아래에서 원하시는 방법을 "
        "선택하거나 이 페이지에서 선택해 주세요: {{4}} .",
    },
    "ndr_reminder": {
        "en": "Reminder from {{1}}: order {{2}} is waiting for your answer. Tap an option, "
        "or choose on this page: {{3}} .",
        "hi": "याद दिलाना: {{1}} से ऑर्डर {{2}} आपके जवाब का इंतज़ार कर रहा है। विकल्प चुनें, या इस पेज पर: {{3}} ।",
        "ko": "[{{1}}] 주문 {{2}} 배송 방법을 아직 알려주지 않으셨습니다. 아래에서 선택하거나 "
        "이 페이지에서 선택해 주세요: {{3}} .",
    },
}

SAMPLES = {
    "merchant_name": "Acme Fashions",
    "order_id": "A-1001",
    "reason_text": "nobody was available",
    "link": "https://ndr.example.com/r/shp_abc~1~K7QM.abc.def",
}


def menus() -> list[str]:
    """Every distinct menu an actionable reason offers ("1234", "124", "1245", ...)."""
    seen = {"".join(str(o.number) for o in options_for(reason)) for reason in CUSTOMER_ACTIONS}
    return sorted(seen)


def config_key(purpose: str, menu: str) -> str:
    return f"{purpose}:{menu}"


def quick_reply_definition(purpose: str, locale: str, menu: str) -> dict[str, Any]:
    """The Content API create body (POST https://content.twilio.com/v1/Content)."""
    if purpose not in BODIES:
        raise ValueError(f"no quick-reply template for {purpose!r} (have {', '.join(BODIES)})")
    lang = locale.split("-")[0]
    body = BODIES[purpose].get(lang)
    if body is None:
        raise ValueError(f"no {purpose} body in {lang!r}")
    by_number = {o.number: o for o in MENU}
    actions = []
    for ch in menu:
        option = by_number.get(int(ch))
        if option is None:
            raise ValueError(f"menu {menu!r}: {ch} is not an option number")
        # One template serves every reason with this menu: "3" reads "change address/phone",
        # which also fits the reasons where only the phone can change.
        actions.append({"title": label([lang, "en"], "button", option.label), "id": str(option.number)})
    names = VARIABLES[purpose]
    sample = dict(SAMPLES)
    return {
        "friendly_name": f"ndrflow_{purpose}_{menu}_{lang}",
        "language": lang,
        "variables": {str(i): sample[name] for i, name in enumerate(names, 1)},
        "types": {QUICK_REPLY: {"body": body, "actions": actions}},
    }


def all_definitions(locales: tuple[str, ...] = ("en", "hi", "ko")) -> list[tuple[str, str, dict[str, Any]]]:
    """[(config key, locale, definition)] for every NDR question, menu and locale."""
    out = []
    for purpose in BODIES:
        for menu in menus():
            for loc in locales:
                out.append((config_key(purpose, menu), loc, quick_reply_definition(purpose, loc, menu)))
    return out


def config_entry(purpose: str, content_sid: str) -> dict[str, Any]:
    """One NDRFLOW_WHATSAPP_TEMPLATES value for a created template."""
    return {"content_sid": content_sid, "variables": list(VARIABLES[purpose])}
