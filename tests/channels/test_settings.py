"""Channel configuration (channels/settings.py) and the registry (channels/registry.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from channels import outbox, sendgrid_email, twilio_sms, twilio_whatsapp
from channels.registry import ChannelRegistry
from channels.settings import ChannelSettings
from ndrflow.config import Settings

SID = "AC" + "0" * 32


def test_without_credentials_everything_goes_to_the_outbox() -> None:
    s = ChannelSettings()
    reg = ChannelRegistry(s)
    assert s.local_mode and s.dev_pages_enabled
    assert [reg.provider(c) for c in ("sms", "whatsapp", "email")] == [outbox, outbox, outbox]


def test_each_provider_by_its_own_credentials() -> None:
    s = ChannelSettings(twilio_account_sid=SID, twilio_auth_token="t", twilio_from="+15005550006")
    reg = ChannelRegistry(s)
    assert (reg.provider("sms"), reg.provider("whatsapp"), reg.provider("email")) == (
        twilio_sms,
        twilio_whatsapp,
        outbox,
    )
    assert not s.local_mode and not s.dev_pages_enabled
    s = ChannelSettings(sendgrid_api_key="SG.x", sendgrid_from="a@b.c")
    assert (
        ChannelRegistry(s).provider("email") is sendgrid_email
        and ChannelRegistry(s).provider("sms") is outbox
    )
    with pytest.raises(ValueError, match="unknown channel"):
        s.provider_for("fax")


def test_env_names_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "NDRFLOW_TWILIO_ACCOUNT_SID": SID,
        "NDRFLOW_TWILIO_AUTH_TOKEN": "tok",
        "NDRFLOW_TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32,
        "NDRFLOW_TWILIO_FROM": "+15005550006",
        "NDRFLOW_SENDGRID_API_KEY": "SG.k",
        "NDRFLOW_SENDGRID_FROM": "notify@acme.example",
        "NDRFLOW_TWILIO_BASE_URL": "http://127.0.0.1:4010",
        "NDRFLOW_SENDGRID_BASE_URL": "http://127.0.0.1:4011",
        "NDRFLOW_SENDGRID_EVENT_PUBLIC_KEY": "pk",
        "NDRFLOW_QUIET_HOURS": "",
        "NDRFLOW_WHATSAPP_TEMPLATES": json.dumps(
            {"delivered": {"en": {"content_sid": "HX1", "variables": ["order_id"]}}}
        ),
        "NDRFLOW_NOTIFY_POLICY": json.dumps(
            {"merchants": {"acme": {"merchant_name": "Acme", "quiet_hours": "22:00-08:00"}}}
        ),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = ChannelSettings(_env_file=None)
    assert (s.twilio_account_sid, s.twilio_auth_token, s.twilio_messaging_service_sid, s.twilio_from) == (
        SID,
        "tok",
        "MG" + "1" * 32,
        "+15005550006",
    )
    assert (s.sendgrid_api_key, s.sendgrid_from, s.twilio_base_url, s.sendgrid_base_url) == (
        "SG.k",
        "notify@acme.example",
        "http://127.0.0.1:4010",
        "http://127.0.0.1:4011",
    )
    assert s.sendgrid_event_public_key == "pk" and s.quiet_hours == ""
    assert s.whatsapp_template("delivered", ["ko", "en"]).content_sid == "HX1"
    assert s.policy_for("acme").quiet_hours == "22:00-08:00"
    assert s.policy_for("zeta").quiet_hours == ""  # global off
    assert s.check() == []


def test_policy_for_resolves_global_quiet_hours() -> None:
    s = ChannelSettings(notify_policy=json.dumps({"merchants": {"quiet": {"quiet_hours": ""}}}))
    assert s.policy_for("anyone").quiet_hours == "21:00-09:00"
    assert s.policy_for("quiet").quiet_hours == ""
    assert s.policy_for("anyone").default_region == "IN"


def test_policy_and_templates_from_files(tmp_path: Path) -> None:
    toml = tmp_path / "policy.toml"
    toml.write_text(
        '[default]\nmerchant_name = "Our Shop"\n\n[merchants.acme]\nmerchant_name = "Acme"\n'
        'tracking_url = "https://acme.in/t/{tracking_number}"\n[merchants.acme.notify]\ndelivered = ["email", "sms"]\n'
    )
    wa = tmp_path / "wa.json"
    wa.write_text(json.dumps({"ndr_ask": {"hi": {"content_sid": "HXhi", "variables": ["order_id", "link"]}}}))
    s = ChannelSettings(notify_policy_file=toml, whatsapp_templates_file=wa)
    acme = s.policy_for("acme")
    assert acme.merchant_name == "Acme" and acme.rules["delivered"].channels == ["email", "sms"]
    assert acme.tracking_url == "https://acme.in/t/{tracking_number}"
    assert s.policy_for("other").merchant_name == "Our Shop"
    assert s.whatsapp_template("ndr_ask", ["hi-IN", "hi", "en"]).variables == ["order_id", "link"]


def test_check_names_configuration_problems(tmp_path: Path) -> None:
    s = ChannelSettings(
        twilio_account_sid=SID, sendgrid_api_key="SG.x", quiet_hours="late", notify_policy="{not json"
    )
    problems = "\n".join(s.check())
    assert "NDRFLOW_TWILIO_AUTH_TOKEN" in problems
    assert "NDRFLOW_TWILIO_MESSAGING_SERVICE_SID or NDRFLOW_TWILIO_FROM" in problems
    assert "NDRFLOW_SENDGRID_FROM" in problems
    assert "NDRFLOW_QUIET_HOURS" in problems
    assert "NDRFLOW_NOTIFY_POLICY" in problems
    bad = ChannelSettings(
        notify_policy=json.dumps({"merchants": {"acme": {"notify": {"delivered": ["fax"]}}}})
    )
    assert "fax" in "\n".join(bad.check())


def test_status_callback_carries_the_key() -> None:
    s = ChannelSettings(public_base_url="https://ndr.example.com/")
    assert (
        s.status_callback_url("shp_1:ndr_ask:ndr1-0:sms")
        == "https://ndr.example.com/v1/webhooks/twilio/status?key=shp_1%3Andr_ask%3Andr1-0%3Asms"
    )


def test_twilio_auth_token_is_generated_per_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NDRFLOW_TWILIO_AUTH_TOKEN", raising=False)
    first = Settings(home=tmp_path / "a", _env_file=None).with_home_secrets()
    again = Settings(home=tmp_path / "a", _env_file=None).with_home_secrets()
    other = Settings(home=tmp_path / "b", _env_file=None).with_home_secrets()
    assert (
        first.twilio_auth_token
        and first.twilio_auth_token == again.twilio_auth_token != other.twilio_auth_token
    )
    cs = ChannelSettings.from_settings(first)
    assert cs.twilio_auth_token == first.twilio_auth_token and cs.home == tmp_path / "a"
    configured = Settings(
        home=tmp_path / "c", twilio_auth_token="real-token", _env_file=None
    ).with_home_secrets()
    assert configured.twilio_auth_token == "real-token"
