"""Every template renders; SMS budgets hold with long, realistic values; fallback, escaping and
Babel formatting behave (templates/__init__.py, templates/sms_segments.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jinja2 import TemplateNotFound
from jinja2.exceptions import UndefinedError

from api.tokens import case_url, make_case_token
from domain.reply_parser import parse_reply
from domain.taxonomy import CUSTOMER_ACTIONS, allowed_customer_actions
from templates import (
    NDR_PURPOSES,
    PURPOSES,
    TEMPLATE_DIR,
    WITHOUT_SHIPMENT,
    TemplateContextError,
    locale_chain,
    render,
    template_files,
)
from templates.labels import LABELS
from templates.sms_segments import analyze, segment_count
from workflows.ids import shipment_id_for
from workflows.ndr_policy import menu_context

LOCALES = ("en", "hi", "ko")
SMS_BUDGET = {"en": 2, "hi": 3, "ko": 3}

# Variants that change which branch of a template renders: each must fit the budget. NDR menus:
# every actionable reason's own options (a reason without option 3 skips the number).
MENUS = [{"reason": r.value, "options": menu_context(r.value)} for r in CUSTOMER_ACTIONS]
DECIDED = (
    "reattempt",
    "reschedule",
    "update_contact",
    "update_address",
    "update_phone",
    "hold_for_pickup",
    "rto",
)
VARIANTS: dict[str, list[dict]] = {
    "ndr_ask": MENUS,
    "ndr_reminder": MENUS,
    "ndr_ask_details": MENUS,
    "ndr_confirm": [{"action": a} for a in (*DECIDED, "something_new")],
    "ndr_already_decided": [{"action": a} for a in DECIDED],
    "ndr_dispute_ack": [{"action": a} for a in DECIDED] + [{"action": None}],
    "ndr_clarify": [{"question": q} for q in ("date", "address", "phone")]
    + [{"question": "option", **m} for m in MENUS],
    "delivery_failed": [
        {"reason": r} for r in ("out_of_delivery_area", "order_cancelled_by_customer", "not_attempted")
    ],
}


def _parse(path: Path) -> tuple[str, str, str, str]:
    """templates/email/ndr_ask.hi.html.j2 -> ("email", "ndr_ask", "hi", "html")."""
    rel = path.relative_to(TEMPLATE_DIR)
    channel = rel.parts[0]
    purpose, locale, *rest = rel.name.removesuffix(".j2").split(".")
    return channel, purpose, locale, (rest[0] if rest else "text")


FILES = [p for p in template_files() if p.parent.name in ("sms", "whatsapp", "email")]


def test_every_purpose_and_locale_has_its_files() -> None:
    have = {(_parse(p)[0], _parse(p)[1], _parse(p)[2], _parse(p)[3]) for p in FILES}
    for purpose in PURPOSES:
        for locale in LOCALES:
            assert ("sms", purpose, locale, "text") in have, f"sms/{purpose}.{locale}.j2 missing"
            for part in ("html", "txt", "subject"):
                assert ("email", purpose, locale, part) in have, f"email/{purpose}.{locale}.{part}.j2 missing"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(TEMPLATE_DIR)))
def test_template_file_renders(path: Path) -> None:
    channel, purpose, locale, part = _parse(path)
    for variant in VARIANTS.get(purpose, [{}]):
        out = render(channel, purpose, locale, {**LONG_CONTEXT, **variant}, tz="Asia/Kolkata")
        assert out.template_locale == locale  # this very file, not a fallback
        assert out.body and "{{" not in out.body and "{%" not in out.body
        assert "None" not in out.body and "Undefined" not in out.body
        if channel == "email":
            assert out.subject and "\n" not in out.subject
            assert out.html and out.html.lstrip().startswith("<!DOCTYPE html>")
            assert LONG_CONTEXT["order_id"] in out.html or purpose == "ndr_which_case"
        if purpose in ("ndr_ask", "ndr_reminder", "ndr_ask_date", "ndr_ask_details", "ndr_clarify"):
            assert LONG_CONTEXT["link"] in out.body  # the signed self-service link is always there


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("purpose", PURPOSES)
def test_sms_segment_budget(purpose: str, locale: str) -> None:
    for variant in VARIANTS.get(purpose, [{}]):
        body = render("sms", purpose, locale, {**LONG_CONTEXT, **variant}, tz="Asia/Kolkata").body
        info = analyze(body)
        assert info.segments <= SMS_BUDGET[locale], (
            f"{purpose}.{locale} {variant}: {info} ({len(body)} chars)\n{body}"
        )
        if locale == "en":
            # one curly quote would make it UCS-2 and triple the cost
            assert info.encoding == "GSM-7", f"non-GSM characters {info.non_gsm!r} in {purpose}.en"


def test_ndr_ask_lists_numbered_options_in_order() -> None:
    body = render("sms", "ndr_ask", "en", LONG_CONTEXT).body
    assert "1 deliver tomorrow, 2 pick a date, 3 change address or phone, 4 cancel" in body
    assert body.endswith(LONG_CONTEXT["link"])
    hi = render("sms", "ndr_ask", "hi", LONG_CONTEXT).body
    assert "1 कल, 2 तारीख, 3 पता/फ़ोन, 4 रद्द" in hi  # short texts: 3 UCS-2 parts with the link
    wa = render("whatsapp", "ndr_ask", "hi", LONG_CONTEXT).body
    assert "1. कल डिलीवरी\n2. तारीख चुनें\n3. पता/फ़ोन बदलें\n4. रद्द करें" in wa


def test_menu_numbers_are_fixed_when_a_reason_skips_an_option() -> None:
    # payment_issue allows no address change: "3" is left out, "4" still means cancel
    ctx = {**LONG_CONTEXT, "reason": "payment_issue", "options": menu_context("payment_issue")}
    assert "Reply 1 deliver tomorrow, 2 pick a date, 4 cancel." in render("sms", "ndr_ask", "en", ctx).body
    selfc = {
        **LONG_CONTEXT,
        "reason": "self_collect_requested",
        "options": menu_context("self_collect_requested"),
    }
    assert "4 주문 취소, 5 직접 수령" in render("sms", "ndr_ask", "ko", selfc).body
    # plain codes (older callers) get the same fixed numbers, never positions in the list
    codes = {**LONG_CONTEXT, "options": ["rto", "reattempt"]}
    assert "Reply 1 deliver tomorrow, 4 cancel." in render("sms", "ndr_ask", "en", codes).body


def test_a_number_outside_the_menu_is_refused() -> None:
    with pytest.raises(TemplateContextError, match="number"):
        render(
            "sms", "ndr_ask", "en", {**LONG_CONTEXT, "options": [{"number": 9, "key": "x", "action": "rto"}]}
        )
    with pytest.raises(TemplateContextError, match="not on the NDR menu"):
        render("sms", "ndr_ask", "en", {**LONG_CONTEXT, "options": ["teleport"]})


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", ["sms", "whatsapp", "email"])
@pytest.mark.parametrize("reason", [r.value for r in CUSTOMER_ACTIONS])
def test_every_number_shown_means_to_the_parser_what_the_message_says(
    reason: str, channel: str, locale: str
) -> None:
    """The message and the reply parser agree on every number, for every reason and language:
    the number printed beside an option is the number that, replied alone, chooses it."""
    from datetime import UTC, datetime

    ctx = {**LONG_CONTEXT, "reason": reason, "options": menu_context(reason)}
    body = render(channel, "ndr_ask", locale, ctx).body
    shown = {int(n) for n in re.findall(r"(?:^|[\s:])([1-9])[.]? (?=\S)", body.replace(ctx["link"], ""))}
    offered = {o["number"]: o["action"] for o in ctx["options"]}
    assert shown == set(offered), (
        f"{reason} {channel}.{locale}: numbers {shown} vs menu {set(offered)}\n{body}"
    )
    now = datetime(2026, 12, 28, 10, 0, tzinfo=UTC)
    for number, action in offered.items():
        parsed = parse_reply(
            str(number),
            reason=reason,
            allowed_actions=allowed_customer_actions(reason),
            now=now,
            tz="Asia/Kolkata",
            locale=locale,
            channel=channel,
        )
        assert parsed.option == number and parsed.action is not None
        if action == "update_phone":  # "3" on a phone-only reason
            assert parsed.action.value in ("update_phone", "update_address")
        else:
            assert parsed.action.value == action, (reason, number, parsed)


def test_email_ndr_ask_has_one_button_per_option() -> None:
    out = render("email", "ndr_ask", "en", LONG_CONTEXT)
    hrefs = re.findall(r'href="([^"]+)"', out.html)
    for o in LONG_CONTEXT["options"]:
        assert f"{LONG_CONTEXT['link']}?action={o['action']}" in hrefs
    assert "4. cancel" in out.html and "3. change address or phone" in out.html
    assert f"{LONG_CONTEXT['link']}?action=reschedule" in out.body  # text part too
    assert LONG_CONTEXT["link"] in hrefs  # and the page itself


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-IN", "We will deliver order ACME-2026-004871 on Sat, 2 Jan."),
        ("hi-IN", "ऑर्डर ACME-2026-004871 शनि, 2 जन॰ को डिलीवर होगा।"),
        ("ko-KR", "주문 ACME-2026-004871 상품을 1월 2일 (토)에 배송합니다."),
    ],
)
def test_ndr_confirm_states_action_and_date_in_the_customers_language(locale: str, expected: str) -> None:
    # The workflow's ndr_context names the date agreed_date; templates read it as date.
    ctx = {k: v for k, v in LONG_CONTEXT.items() if k != "date"}
    ctx.update(action="reschedule", agreed_date="2027-01-02", ndr_attempt=2)
    assert expected in render("sms", "ndr_confirm", locale, ctx).body
    mail = render("email", "ndr_confirm", locale, ctx)
    full = {
        "en-IN": "Saturday, 2 January 2027",
        "hi-IN": "शनिवार, 2 जनवरी 2027",
        "ko-KR": "2027년 1월 2일 토요일",
    }
    assert full[locale] in mail.body and full[locale] in mail.html


def test_workflow_ndr_context_renders_every_ndr_purpose() -> None:
    """What workflows/shipment.py ndr_context sends, plus what the activity adds (link), is
    enough for every NDR purpose the workflow asks for."""
    base = {k: LONG_CONTEXT[k] for k in ("merchant_name", "order_id", "tracking_number", "tracking_url")}
    wf = {
        "ndr_attempt": 1,
        "reason": "customer_unavailable",
        "options": menu_context("customer_unavailable"),
        "case_ref": "K7QM",
        "agreed_date": None,
        "action": None,
        "link": LONG_CONTEXT["link"],
    }
    decided = {**wf, "action": "reattempt", "agreed_date": "2027-01-02"}
    for purpose in NDR_PURPOSES:
        if purpose in WITHOUT_SHIPMENT:
            continue
        ctx = {**base, **(decided if purpose in ("ndr_confirm", "ndr_already_decided") else wf)}
        for channel in ("sms", "whatsapp", "email"):
            for locale in LOCALES:
                assert render(channel, purpose, locale, ctx).body


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "email"])
@pytest.mark.parametrize("locale", LOCALES)
def test_answers_without_a_shipment_need_no_shipment_fields(channel: str, locale: str) -> None:
    out = render(channel, "ndr_no_open_case", locale, {})
    assert out.body and "None" not in out.body
    assert ":  /" not in out.body  # no empty "Order: / Tracking number:" footer
    named = render(channel, "ndr_no_open_case", locale, {"merchant_name": "Acme"})
    assert "Acme" in named.body
    which = render(channel, "ndr_which_case", locale, {"cases": LONG_CONTEXT["cases"]})
    assert "K7Q" in which.body and "M2X" in which.body


def test_ask_details_asks_only_for_the_phone_when_only_the_phone_can_change() -> None:
    phone_only = {**LONG_CONTEXT, "options": menu_context("verification_failed")}
    assert any(o["action"] == "update_phone" for o in phone_only["options"])
    body = render("sms", "ndr_ask_details", "en", phone_only).body
    assert "phone number" in body and "address" not in body
    both = render("sms", "ndr_ask_details", "en", LONG_CONTEXT).body
    assert "address" in both and "phone number" in both


def test_whatsapp_quick_reply_button_titles_fit() -> None:
    for lang, kinds in LABELS.items():
        for code, title in kinds["button"].items():
            assert len(title) <= 20, (lang, code, title)  # WhatsApp's limit for quick-reply titles


@pytest.mark.parametrize(
    ("asked", "used"),
    [
        ("ko-KR", "ko"),
        ("ko_KR", "ko"),
        ("hi-IN", "hi"),
        ("en-IN", "en"),
        ("fr-FR", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_locale_fallback(asked: str | None, used: str) -> None:
    out = render("sms", "delivered", asked, LONG_CONTEXT)
    assert out.template_locale == used


def test_locale_chain() -> None:
    assert locale_chain("ko-KR") == ["ko-KR", "ko", "en"]
    assert locale_chain("en") == ["en"]


def test_region_specific_file_wins(tmp_path: Path) -> None:
    target = TEMPLATE_DIR / "sms" / "delivered.ko-KR.j2"
    assert not target.exists()
    target.write_text("KR {{ order_id }}")
    try:
        assert render("sms", "delivered", "ko-KR", LONG_CONTEXT).body == f"KR {LONG_CONTEXT['order_id']}"
        assert render("sms", "delivered", "ko", LONG_CONTEXT).template_locale == "ko"
    finally:
        target.unlink()


def test_whatsapp_without_own_file_uses_sms_text() -> None:
    assert not (TEMPLATE_DIR / "whatsapp" / "delivered.en.j2").exists()
    from templates import _GSM_FRIENDLY

    wa = render("whatsapp", "delivered", "en", LONG_CONTEXT)
    assert wa.body.translate(_GSM_FRIENDLY) == render("sms", "delivered", "en", LONG_CONTEXT).body
    assert "\u202f" in wa.body  # Babel's narrow space stays outside SMS
    assert "*" in render("whatsapp", "ndr_ask", "en", LONG_CONTEXT).body  # its own file, with WhatsApp bold


def test_html_is_escaped_but_text_is_not() -> None:
    ctx = {
        **LONG_CONTEXT,
        "customer_name": '<script>alert("x")</script>',
        "merchant_name": "Tom & Jerry's <Shop>",
    }
    out = render("email", "delivered", "en", ctx)
    assert "<script>" not in out.html
    assert "&lt;script&gt;" in out.html
    assert "Tom &amp; Jerry&#39;s &lt;Shop&gt;" in out.html
    assert "Tom & Jerry's <Shop>" in out.subject  # a subject is plain text
    assert '<script>alert("x")</script>' in out.body  # plain text part: no entities
    assert "&amp;" not in render("sms", "delivered", "en", ctx).body


def test_template_syntax_in_customer_text_is_not_executed() -> None:
    ctx = {**LONG_CONTEXT, "customer_name": "{{ 7*7 }}{% raw %}", "merchant_name": "{{ config }}"}
    out = render("email", "delivered", "en", ctx)
    assert "{{ 7*7 }}" in out.body and "49" not in out.body.replace(LONG_CONTEXT["order_id"], "")
    assert "{{ config }}" in render("sms", "delivered", "en", ctx).body


def test_missing_required_variable_is_named() -> None:
    ctx = dict(LONG_CONTEXT)
    del ctx["link"]
    with pytest.raises(TemplateContextError, match="ndr_ask.*link"):
        render("sms", "ndr_ask", "en", ctx)
    with pytest.raises(TemplateContextError, match="tracking_url"):
        render("sms", "delivered", "en", {k: v for k, v in LONG_CONTEXT.items() if k != "tracking_url"})


def test_strict_undefined_catches_template_bugs() -> None:
    from templates import ENV

    with pytest.raises(UndefinedError):
        ENV.from_string("{{ nope }}").render({})


def test_minimal_context_renders_every_sms() -> None:
    base = {k: LONG_CONTEXT[k] for k in ("merchant_name", "order_id", "tracking_number", "tracking_url")}
    extra = {
        "delivery_failed": {"reason": "customer_unavailable"},
        "ndr_ask": {"options": ["reattempt"], "link": "https://x.in/r/t", "reason": "address_issue"},
        "ndr_reminder": {"options": ["reattempt"], "link": "https://x.in/r/t"},
        "ndr_ask_date": {"link": "https://x.in/r/t"},
        "ndr_ask_details": {"link": "https://x.in/r/t"},
        "ndr_confirm": {"action": "reattempt"},
        "ndr_clarify": {"link": "https://x.in/r/t"},
        "ndr_already_decided": {"action": "rto"},
        "ndr_which_case": {"cases": LONG_CONTEXT["cases"]},
    }
    for purpose in PURPOSES:
        for locale in LOCALES:
            assert render("sms", purpose, locale, {**base, **extra.get(purpose, {})}).body


def test_unknown_purpose_or_channel() -> None:
    with pytest.raises(TemplateNotFound):
        render("sms", "no_such_purpose", "en", LONG_CONTEXT)
    with pytest.raises(ValueError, match="unknown channel"):
        render("fax", "delivered", "en", LONG_CONTEXT)


@pytest.mark.parametrize(
    ("locale", "expected_money", "expected_date"),
    [
        ("en-IN", "Rs.12,499", "Wed, 30 Dec"),
        ("en", "Rs.12,499", "Wed, Dec 30"),
        ("hi", "₹12,499", "बुध, 30 दिस॰"),
        ("ko", "₹12,499", "12월 30일 (수)"),
    ],
)
def test_babel_formats_per_locale(locale: str, expected_money: str, expected_date: str) -> None:
    body = render("sms", "out_for_delivery", locale, LONG_CONTEXT).body
    assert expected_money in body
    body = render("sms", "picked_up", locale, LONG_CONTEXT).body
    assert expected_date in body


def test_lakh_grouping_and_fractions() -> None:
    assert (
        "Rs.1,29,999"
        in render("sms", "out_for_delivery", "en-IN", {**LONG_CONTEXT, "cod_amount": "129999.00"}).body
    )
    assert (
        "Rs.1,299.50"
        in render("sms", "out_for_delivery", "en", {**LONG_CONTEXT, "cod_amount": "1299.5"}).body
    )
    assert (
        "₩45,000"
        in render(
            "sms", "out_for_delivery", "ko", {**LONG_CONTEXT, "cod_amount": "45000", "currency": "KRW"}
        ).body
    )


def test_times_are_in_the_recipient_zone() -> None:
    ctx = {**LONG_CONTEXT, "delivered_at": "2026-12-30T19:45:00Z"}
    assert "31/12/26, 1:15 AM" in render("sms", "delivered", "en-IN", ctx, tz="Asia/Kolkata").body  # +05:30
    ko = render("sms", "delivered", "ko", ctx, tz="Asia/Seoul").body
    assert "26. 12. 31." in ko and "4:45" in ko  # +09:00, next morning


def test_prepaid_out_for_delivery_has_no_cash_line() -> None:
    body = render("sms", "out_for_delivery", "en", {**LONG_CONTEXT, "payment_mode": "prepaid"}).body
    assert "ready" not in body


def test_sms_typography_is_made_gsm_friendly() -> None:
    body = render(
        "sms",
        "delivered",
        "en",
        {**LONG_CONTEXT, "merchant_name": "Rosa\u2019s \u201cBest\u201d \u2013 Shop"},
    ).body
    assert 'Rosa\'s "Best" - Shop' in body
    assert analyze(body).encoding == "GSM-7"


def test_variables_for_provider_templates() -> None:
    out = render("whatsapp", "ndr_ask", "hi", LONG_CONTEXT)
    assert out.variables["options_text"] == "1 कल डिलीवरी, 2 तारीख चुनें, 3 पता/फ़ोन बदलें, 4 रद्द करें"
    assert out.variables["menu"] == "1234"
    assert out.variables["option_3_text"] == "पता/फ़ोन बदलें" and "option_5_text" not in out.variables
    assert out.variables["link"] == LONG_CONTEXT["link"]
    skip = render("whatsapp", "ndr_ask", "en", {**LONG_CONTEXT, "options": menu_context("payment_issue")})
    assert skip.variables["menu"] == "124" and skip.variables["options_text"].endswith("4 cancel")
    assert out.variables["reason_text"] == "फ़ोन पर संपर्क नहीं हुआ"
    assert out.variables["order_id"] == LONG_CONTEXT["order_id"]
    assert out.variables["cod_amount_text"] == "₹12,499"


# ---- segments ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension table: two septets each
        ("€" * 81, "GSM-7", 162, 2),
        ("a" * 152 + "{" + "a" * 10, "GSM-7", 164, 2),  # escape pair not split across parts
        ("a" * 152 + "[" + "a" * 152, "GSM-7", 306, 3),  # the pair moves to part 2, which then overflows
        ("é" * 160, "GSM-7", 160, 1),  # é is in the basic table
        ("ç", "UCS-2", 1, 1),  # ç is not (only Ç is)
        ("न" * 70, "UCS-2", 70, 1),
        ("न" * 71, "UCS-2", 71, 2),
        ("न" * 201, "UCS-2", 201, 3),
        ("a" * 69 + "😀", "UCS-2", 71, 2),  # emoji: surrogate pair, two code units
        ("😀" * 33 + "a", "UCS-2", 67, 1),
        ("a" * 66 + "😀" + "a" * 67, "UCS-2", 135, 3),  # the pair is not split at 67
    ],
)
def test_segments(text: str, encoding: str, units: int, segments: int) -> None:
    info = analyze(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)
    assert segment_count(text) == segments


def test_non_gsm_characters_are_reported() -> None:
    assert analyze("Hello “world”").non_gsm == "“”"


# Long, realistic values: long merchant and carrier names, an order id and AWB of the length
# Indian marketplaces use, a tracking URL on the merchant's own domain, and a real signed
# self-service link (api.tokens: 65-character token) under a 29-character public base URL:
# 97 characters. Budgets hold for public base URLs up to that length.
REAL_LINK = case_url(
    "https://track.acmefashions.in",
    make_case_token(shipment_id_for("acme", "delhivery", "DLV1234567890123"), 2, "K7QM", secret_key="k" * 43),
)
LONG_CONTEXT = {
    "merchant_name": "Acme Fashions & Lifestyle",
    "customer_name": "Venkata Lakshmi Narasimhan",
    "order_id": "ACME-2026-004871",
    "tracking_number": "DLV1234567890123",
    "tracking_url": "https://track.acmefashions.in/t/DLV1234567890123",
    "carrier_name": "Delhivery Surface Express",
    "payment_mode": "cod",
    "cod_amount": "12499.00",
    "currency": "INR",
    "expected_date": "2026-12-30",
    "delivered_at": "2026-12-30T14:45:00Z",
    "reason": "customer_unreachable",
    "attempt": 2,
    "options": menu_context("customer_unreachable"),  # 1, 2, 3, 4
    "link": REAL_LINK,
    "reply_by": "2026-12-31T12:30:00Z",
    "action": "reschedule",
    "date": "2026-12-30",
    "question": "option",
    "max_date": "2027-01-06",
    "cases": [
        {"ref": "K7Q", "merchant_name": "Acme Fashions & Lifestyle", "order_id": "ACME-2026-004871"},
        {"ref": "M2X", "merchant_name": "Bharat Electronics Mart", "order_id": "BEM-88231907"},
    ],
}


def test_email_and_whatsapp_keep_the_currency_sign() -> None:
    assert "₹12,499" in render("email", "out_for_delivery", "en-IN", LONG_CONTEXT).body
    assert "₹12,499" in render("whatsapp", "out_for_delivery", "en", LONG_CONTEXT).body
    assert "₹12,499" in render("sms", "out_for_delivery", "hi", LONG_CONTEXT).body  # UCS-2 anyway


def test_line_breaks_survive_block_tags() -> None:
    # trim_blocks eats the newline after {% endif %}: the files compensate, and this holds them to it
    wa = render("whatsapp", "out_for_delivery", "en", LONG_CONTEXT).body
    assert "today.\nPlease keep" in wa and "(cash on delivery).\n\nTrack:" in wa
    mail = render("email", "picked_up", "en", LONG_CONTEXT).body
    assert "ACME-2026-004871.\n\nIt should arrive" in mail and "2026.\n\nTrack your parcel" in mail
    assert "\n\n\n" not in mail
    ask = render("whatsapp", "ndr_ask", "en", LONG_CONTEXT).body
    assert "\n1. deliver tomorrow\n2. pick a date\n" in ask and "4. cancel\n\nOr choose here" in ask
