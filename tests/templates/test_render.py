"""Every template renders; SMS budgets hold with long, realistic values; fallback, escaping and
Babel formatting behave (templates/__init__.py, templates/sms_segments.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jinja2 import TemplateNotFound
from jinja2.exceptions import UndefinedError

from templates import (
    PURPOSES,
    TEMPLATE_DIR,
    TemplateContextError,
    locale_chain,
    render,
    template_files,
)
from templates.sms_segments import analyze, segment_count

LOCALES = ("en", "hi", "ko")
SMS_BUDGET = {"en": 2, "hi": 3, "ko": 3}

# Variants that change which branch of a template renders: each must fit the budget.
VARIANTS: dict[str, list[dict]] = {
    "ndr_confirm": [
        {"action": a}
        for a in (
            "reattempt",
            "reschedule",
            "update_contact",
            "update_address",
            "hold_for_pickup",
            "rto",
            "something_new",
        )
    ],
    "ndr_clarify": [{"question": q} for q in ("option", "date", "address", "phone")],
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
        if "link" in LONG_CONTEXT and purpose in ("ndr_ask", "ndr_reminder"):
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
    assert "1 कल डिलीवरी, 2 तारीख चुनें, 3 पता/फ़ोन बदलें, 4 रद्द करें" in hi


def test_email_ndr_ask_has_one_button_per_option() -> None:
    out = render("email", "ndr_ask", "en", LONG_CONTEXT)
    hrefs = re.findall(r'href="([^"]+)"', out.html)
    for action in LONG_CONTEXT["options"]:
        assert f"{LONG_CONTEXT['link']}?action={action}" in hrefs
    assert "4. cancel" in out.html
    assert f"{LONG_CONTEXT['link']}?action=reschedule" in out.body  # text part too


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
        "ndr_confirm": {"action": "reattempt"},
        "ndr_clarify": {"question": "option"},
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
    assert out.variables["options_text"].startswith("1 कल डिलीवरी, 2 तारीख चुनें")
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
# Indian marketplaces use, a tracking URL on the merchant's own domain, and a signed
# self-service link of 64 characters (token of 32). Budgets assume links no longer than these.
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
    "options": ["reattempt", "reschedule", "update_contact", "rto"],
    "link": "https://track.acmefashions.in/r/q9ZtK2mXv8LpR4sW7yB1nC6dF3hJ5gA0",
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
