"""Settings for how long a shipment may stay quiet (env prefix NDRFLOW_), kept apart from the
shared Settings class. The API copies them into each shipment's policy snapshot at registration
(api/routes/merchants.py `shipment_policy_for`): workflows cannot read configuration, and a
change applies to shipments registered after it.

    NDRFLOW_POLL_AFTER_S=43200                        ask the carrier's tracking API after 12 h of silence
    NDRFLOW_STALE_AFTER_S='{"out_for_delivery": 21600, "created": 0}'
                                                      per-status limits before agents are asked to look
                                                      (merged over the defaults; 0 = never flag that status)
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.taxonomy import Milestone
from workflows.shipment_policy import DEFAULT_POLL_AFTER_S, DEFAULT_STALE_AFTER_S


class TrackingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NDRFLOW_", env_file=".env", extra="ignore")

    # Seconds without any scan after which the workflow asks the carrier's tracking API (only
    # carriers with one: generic, delhivery). Carriers drop pushes; 0 turns polling off.
    poll_after_s: float = DEFAULT_POLL_AFTER_S
    # Seconds a shipment may sit in a status without a scan before it is flagged
    # `no_tracking_update` for agents, as JSON keyed by status. Merged over
    # workflows/shipment_policy.py DEFAULT_STALE_AFTER_S; 0 disables the check for that status.
    stale_after_s: dict[str, float] = {}

    @field_validator("poll_after_s")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("NDRFLOW_POLL_AFTER_S must be >= 0 (0 = never poll)")
        return value

    @field_validator("stale_after_s")
    @classmethod
    def _known_statuses(cls, value: dict[str, float]) -> dict[str, float]:
        # A typo ("out_for_delivey") would otherwise silently leave the default in force.
        known = {m.value for m in Milestone}
        bad = sorted(k for k in value if k not in known)
        if bad:
            raise ValueError(f"NDRFLOW_STALE_AFTER_S: unknown status {', '.join(bad)}; one of {', '.join(sorted(known))}")
        negative = sorted(k for k, v in value.items() if v < 0)
        if negative:
            raise ValueError(f"NDRFLOW_STALE_AFTER_S: limits must be >= 0 (0 = off), not for {', '.join(negative)}")
        return value

    def effective_stale_after_s(self) -> dict[str, float]:
        return {**DEFAULT_STALE_AFTER_S, **self.stale_after_s}


@lru_cache
def get_tracking_settings() -> TrackingSettings:
    return TrackingSettings()
