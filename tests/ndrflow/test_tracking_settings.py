"""NDRFLOW_POLL_AFTER_S and NDRFLOW_STALE_AFTER_S reach the policy snapshot a new shipment's
workflow decides by (api/routes/merchants.py shipment_policy_for)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from api.routes.merchants import shipment_policy_for
from ndrflow.tracking_settings import TrackingSettings, get_tracking_settings
from workflows.shipment_policy import DEFAULT_POLL_AFTER_S, DEFAULT_STALE_AFTER_S, load_policy, policy_dict


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NDRFLOW_POLL_AFTER_S", raising=False)
    monkeypatch.delenv("NDRFLOW_STALE_AFTER_S", raising=False)
    get_tracking_settings.cache_clear()
    yield
    get_tracking_settings.cache_clear()


def test_defaults_are_the_policy_defaults() -> None:
    s = TrackingSettings()
    assert s.poll_after_s == DEFAULT_POLL_AFTER_S
    assert s.effective_stale_after_s() == DEFAULT_STALE_AFTER_S
    policy = shipment_policy_for("acme")
    assert (policy.poll_after_s, policy.stale_after_s) == (DEFAULT_POLL_AFTER_S, DEFAULT_STALE_AFTER_S)


def test_env_values_reach_the_snapshot_and_survive_the_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NDRFLOW_POLL_AFTER_S", "90")
    monkeypatch.setenv("NDRFLOW_STALE_AFTER_S", '{"out_for_delivery": 600, "created": 0}')
    policy = shipment_policy_for("acme")
    assert policy.poll_after_s == 90
    # Merged over the defaults: the others keep theirs; 0 turns a status's check off.
    assert policy.stale_after_s["out_for_delivery"] == 600
    assert policy.stale_after_s["created"] == 0
    assert policy.stale_after_s["in_transit"] == DEFAULT_STALE_AFTER_S["in_transit"]
    # What the workflow reads back from its registration.
    loaded = load_policy(policy_dict(policy))
    assert (loaded.poll_after_s, loaded.stale_after_s) == (90, policy.stale_after_s)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NDRFLOW_POLL_AFTER_S", "-1", "must be >= 0"),
        ("NDRFLOW_STALE_AFTER_S", '{"out_for_delivey": 600}', "unknown status out_for_delivey"),
        ("NDRFLOW_STALE_AFTER_S", '{"created": -5}', "must be >= 0"),
        ("NDRFLOW_STALE_AFTER_S", "not json", ""),
    ],
)
def test_bad_values_are_refused_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises((ValidationError, ValueError)) as err:
        TrackingSettings()
    assert message in str(err.value)
