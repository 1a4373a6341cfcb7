"""Quick-reply Content template definitions for NDR questions (channels/whatsapp_content.py)."""

from __future__ import annotations

import re

import pytest

from channels import whatsapp_content as wc
from domain.ndr_options import options_for
from domain.reply_parser import parse_reply
from domain.taxonomy import CUSTOMER_ACTIONS, allowed_customer_actions
from templates import render
from tests.templates.test_render import LONG_CONTEXT
from workflows.ndr_policy import menu_context

DEFS = wc.all_definitions()


def test_one_definition_per_purpose_menu_and_locale() -> None:
    # every menu some reason offers has its template, in every language
    offered = {"".join(str(o.number) for o in options_for(r)) for r in CUSTOMER_ACTIONS}
    assert set(wc.menus()) == offered
    keys = {(k, loc) for k, loc, _ in DEFS}
    for purpose in ("ndr_ask", "ndr_reminder"):
        for menu in offered:
            for loc in ("en", "hi", "ko"):
                assert (f"{purpose}:{menu}", loc) in keys


@pytest.mark.parametrize(("key", "locale", "definition"), DEFS, ids=[f"{k}.{loc}" for k, loc, _ in DEFS])
def test_definitions_follow_whatsapps_rules(key: str, locale: str, definition: dict) -> None:
    qr = definition["types"][wc.QUICK_REPLY]
    body = qr["body"]
    assert not re.match(r"^\s*\{\{\d+\}\}", body), "a body may not start with a variable"
    assert not re.search(r"\{\{\d+\}\}\s*$", body), "a body may not end with a variable"
    assert not re.search(r"\}\}\s*\{\{", body), "no two variables side by side"
    used = sorted(set(re.findall(r"\{\{(\d+)\}\}", body)), key=int)
    assert used == list(definition["variables"]), "every variable used and sampled, numbered from 1"
    assert len(body) <= 1024 and 1 <= len(qr["actions"]) <= 10
    for action in qr["actions"]:
        assert 0 < len(action["title"]) <= 20
    assert definition["language"] == locale


@pytest.mark.parametrize("reason", [r.value for r in CUSTOMER_ACTIONS])
def test_button_ids_are_the_option_numbers_the_parser_reads(reason: str) -> None:
    menu = "".join(str(o["number"]) for o in menu_context(reason))
    definition = wc.quick_reply_definition("ndr_ask", "hi", menu)
    ids = [a["id"] for a in definition["types"][wc.QUICK_REPLY]["actions"]]
    assert ids == list(menu)
    from datetime import UTC, datetime

    for o in menu_context(reason):
        parsed = parse_reply(
            o["number"].__str__(),
            reason=reason,
            allowed_actions=allowed_customer_actions(reason),
            now=datetime(2026, 12, 28, 10, tzinfo=UTC),
            tz="Asia/Kolkata",
            locale="hi",
            channel="whatsapp",
        )
        assert parsed.option == o["number"]


def test_rendered_variables_fill_the_template_and_pick_it() -> None:
    ctx = {**LONG_CONTEXT, "options": menu_context("payment_issue")}
    out = render("whatsapp", "ndr_ask", "en", ctx)
    key = f"ndr_ask:{out.variables['menu']}"
    assert key == "ndr_ask:124" and key in {k for k, _, _ in DEFS}
    entry = wc.config_entry("ndr_ask", "HX" + "0" * 32)
    assert all(out.variables.get(name) for name in entry["variables"])
    with pytest.raises(ValueError, match="not an option number"):
        wc.quick_reply_definition("ndr_ask", "en", "19")
