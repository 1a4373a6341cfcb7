"""Customer- and merchant-supplied text (names, order ids, shop names) in every message template:
never markup in email HTML, never executed as template code, never a second line in a subject.

Sweeps every (channel, purpose, locale) the templates exist for, with hostile values in every
free-text field the API lets a merchant set (customer name, order id) or configure (shop name),
as activities.notify.base_context passes them.
"""

from __future__ import annotations

import itertools
import re

import pytest

from templates import PURPOSES, render

HOSTILE = {
    "customer_name": 'Asha"><script>alert(1)</script><img src=x onerror=alert(2)>{{ 7*7 }}{% raw %}',
    "merchant_name": "Tom & Jerry's <b onmouseover=alert(3)>Shop</b> {{ config }}",
    "order_id": "A-1'\"><svg/onload=alert(4)>\r\nBcc: victim@example.com",
    "carrier_name": "<iframe src=//evil.example>",
}
SAFE = {
    "tracking_number": "TRK1001",
    "tracking_url": "https://shop.example/t/TRK1001",
    "payment_mode": "cod",
    "cod_amount": "1299.00",
    "currency": "INR",
    "expected_date": "2026-11-30",
    "delivered_at": "2026-11-30T09:00:00Z",
    "reason": "customer_unavailable",
    "attempt": 1,
    "options": ["reattempt", "reschedule", "update_address", "rto"],
    "link": "https://shop.example/r/tok",
    "reply_by": "2026-11-30T12:00:00Z",
    "action": "reschedule",
    "date": "2026-11-30",
    "question": "option",
    "max_date": "2026-12-05",
    "cases": [{"ref": "K7Q", "merchant_name": HOSTILE["merchant_name"], "order_id": HOSTILE["order_id"]}],
}
CONTEXT = {**SAFE, **HOSTILE}
RAW_MARKUP = re.compile(r"<(script|img|svg|iframe|b onmouseover)", re.I)

COMBOS = list(itertools.product(("email", "sms", "whatsapp"), PURPOSES, ("en", "hi", "ko")))


@pytest.mark.parametrize(("channel", "purpose", "locale"), COMBOS, ids=["-".join(c) for c in COMBOS])
def test_hostile_text_stays_text(channel: str, purpose: str, locale: str) -> None:
    out = render(channel, purpose, locale, CONTEXT, tz="Asia/Kolkata")
    texts = [out.body] + ([out.subject] if out.subject is not None else [])
    # Template syntax in data is data: shown as typed where shown, never evaluated.
    for text in texts + ([out.html] if out.html else []):
        assert "<Config" not in text and "&lt;Config" not in text
        if "Asha" in text:
            assert "{{ 7*7 }}" in text
    if out.html is not None:
        assert RAW_MARKUP.search(out.html) is None, "customer text became markup"
        # Quotes are escaped too, so a value cannot close an attribute it sits in.
        if "A-1" in out.html:
            assert "A-1&#39;&#34;&gt;" in out.html
    if out.subject is not None:
        assert "\r" not in out.subject and "\n" not in out.subject  # no header or line injection


@pytest.mark.parametrize("locale", ["en", "hi", "ko"])
def test_every_email_shows_the_customer_escaped_where_it_names_them(locale: str) -> None:
    # The sweep above must not pass vacuously: the name is really in the HTML, escaped.
    out = render("email", "delivered", locale, CONTEXT, tz="Asia/Kolkata")
    assert out.html is not None
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html or "&lt;script&gt;" in out.html
    assert "Tom &amp; Jerry" in out.html
