"""Carrier settings come from NDRFLOW_* variables and can all be pointed at the fake carrier."""

from __future__ import annotations

from carriers.settings import CarrierSettings


def test_reads_env(monkeypatch):
    monkeypatch.setenv("NDRFLOW_DELHIVERY_API_TOKEN", "tok")
    monkeypatch.setenv("NDRFLOW_GENERIC_WEBHOOK_SECRET", "gsec")
    monkeypatch.setenv("NDRFLOW_CARRIER_OPS_EMAILS", '{"delhivery": "ndr@d.example"}')
    cfg = CarrierSettings(_env_file=None)
    assert (cfg.delhivery_api_token, cfg.webhook_secret("generic"), cfg.ops_email("delhivery")) == (
        "tok",
        "gsec",
        "ndr@d.example",
    )
    assert cfg.webhook_secret("nonexistent") == ""


def test_pointing_at_the_fake_changes_every_base_url_and_keeps_real_credentials():
    cfg = CarrierSettings(_env_file=None, shiprocket_email="real@x.example").pointing_at(
        "http://127.0.0.1:9999/"
    )
    assert {cfg.delhivery_base_url, cfg.shiprocket_base_url, cfg.clickpost_base_url} == {
        "http://127.0.0.1:9999"
    }
    assert cfg.generic_instruction_target == "http://127.0.0.1:9999/generic/instructions"
    assert cfg.generic_base_url == "http://127.0.0.1:9999/generic"
    assert cfg.shiprocket_email == "real@x.example" and cfg.delhivery_api_token


def test_pointing_at_the_fake_signs_generic_instructions_keeping_a_configured_secret():
    # Without a key the generic adapter refuses to send (unsupported): local mode must still work.
    assert CarrierSettings(_env_file=None).pointing_at("http://127.0.0.1:9").generic_signing_secret
    kept = CarrierSettings(_env_file=None, generic_webhook_secret="gsec").pointing_at("http://127.0.0.1:9")
    assert kept.generic_signing_secret == "gsec"
