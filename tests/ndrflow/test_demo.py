"""`ndrflow demo` (ndrflow/demo.py): the scripted story against the real stack of the e2e harness,
with the development keys `ndrflow up` writes; and the parts that need no stack."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from ndrflow.demo import WEEKDAYS, DemoConfig, DemoError, read_secrets, reply_day, run_demo
from ndrflow.devkeys import ensure_dev_keys
from tests.e2e.harness import running_stack


@pytest.mark.parametrize("offset", range(7))
def test_reply_day_is_inside_the_carriers_window_and_prefers_saturday(offset: int) -> None:
    today = date(2026, 11, 23) + timedelta(days=offset)  # a Monday, then every weekday
    name, day = reply_day(today)
    assert 1 <= (day - today).days <= 6 and WEEKDAYS[day.weekday()] == name
    assert name == ("Saturday" if today.weekday() != 5 else "Monday")


def test_secrets_are_required_and_named(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="make run"):
        read_secrets(tmp_path)
    (tmp_path / "secrets.json").write_text(json.dumps({"twilio_auth_token": "t"}))
    with pytest.raises(DemoError, match="development API keys"):
        read_secrets(tmp_path)


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_demo_against_the_running_stack(tmp_path: Path) -> None:
    from api.routes.merchants import channel_settings
    from ndrflow.ndr_settings import get_ndr_settings

    for cached in (channel_settings, get_ndr_settings):
        cached.cache_clear()
    async with running_stack(tmp_path, quiet_hours="") as st:
        ensure_dev_keys(st.settings.home, st.engine)  # what `ndrflow up` does in local mode
        out = io.StringIO()
        cfg = DemoConfig(home=st.settings.home, api=st.base_url, temporal_ui=st.settings.temporal_ui_url, timeout_s=30)
        result = await run_demo(cfg, console=Console(file=out, width=160, force_terminal=False))

        assert len(result.shipments) >= 10 and result.problems() == []
        by_role = {s.role: s for s in result.ndr}
        assert set(by_role) == {"ndr_sms", "ndr_web", "ndr_unanswered"}
        # Re-read from the API: the states are the workflow's, not the demo's bookkeeping.
        views = {}
        for role, s in by_role.items():
            r = await st.http.get(f"/v1/shipments/{s.shipment_id}", headers=st.auth(st.agent_key))
            views[role] = r.json()["ndr_cases"][-1]
        sms, web, silent = views["ndr_sms"], views["ndr_web"], views["ndr_unanswered"]
        assert (sms["state"], [r["channel"] for r in sms["responses"]]) == ("instructed", ["sms", "sms"])
        assert sms["instructions"][0]["action"] == "reschedule" and sms["instructions"][0]["requested_date"]
        assert (web["state"], [r["channel"] for r in web["responses"]]) == ("instructed", ["web"])
        assert web["instructions"][0]["action"] == "update_address"
        assert web["instructions"][0]["address"]["line1"].startswith("Flat 4B")
        assert (silent["state"], silent["responses"], silent["instructions"]) == ("asking", [], [])
        # The fake carrier got exactly the two decided instructions.
        async with httpx.AsyncClient(base_url=st.stack.fake_carrier.url) as c:
            got = (await c.get("/_received")).json()
        mine = [g for g in got if g["body"].get("tracking_number") in {s.tracking_number for s in result.ndr}]
        assert sorted(g["body"]["action"] for g in mine) == ["reschedule", "update_address"]
        # Other journeys ended where the script stopped them.
        finals = {s.role: s.view["status"] for s in result.shipments if not s.role.startswith("ndr")}
        assert finals == {"delivered": "delivered", "out_for_delivery": "out_for_delivery", "in_transit": "in_transit", "picked_up": "picked_up"}
        text = out.getvalue()
        assert f"{st.base_url}/dev/outbox" in text and f"{st.base_url}/agent" in text
        assert st.settings.temporal_ui_url in text
