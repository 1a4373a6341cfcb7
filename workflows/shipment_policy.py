"""Everything a shipment's workflow decides by, as one snapshot taken at registration.

Workflows cannot read configuration, so the API builds this from settings (merchant notify
policy, quiet hours, NDR timing and default rules, stale-tracking limits) and sends it with the
registration; the workflow keeps it in its state. Pure: imports nothing from temporalio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workflows.ndr_policy import NdrPolicy
from workflows.notify_policy import DEFAULT_QUIET_HOURS, MerchantPolicy, policy_from_dict

# How long a shipment may go without a scan in each status before agents are asked to look
# (issue 6 defaults; NDR statuses have their own deadlines).
DEFAULT_STALE_AFTER_S: dict[str, float] = {
    "created": 48 * 3600.0,
    "picked_up": 72 * 3600.0,
    "in_transit": 72 * 3600.0,
    "out_for_delivery": 12 * 3600.0,
    "on_hold": 72 * 3600.0,
    "rto_initiated": 96 * 3600.0,
    "rto_in_transit": 96 * 3600.0,
}
# After this long without a scan the workflow asks the carrier's tracking API (webhooks get lost).
DEFAULT_POLL_AFTER_S = 12 * 3600.0


@dataclass
class ShipmentPolicy:
    notify: MerchantPolicy = field(default_factory=MerchantPolicy)
    quiet_hours: str | None = DEFAULT_QUIET_HOURS  # effective for this merchant; None/"" = off
    ndr: NdrPolicy = field(default_factory=NdrPolicy)
    ndr_rules: list[dict[str, Any]] = field(default_factory=list)  # [] = built-in default rule
    stale_after_s: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STALE_AFTER_S))
    poll_after_s: float = DEFAULT_POLL_AFTER_S  # 0 = never poll
    pollable_carriers: list[str] = field(default_factory=lambda: ["generic", "delhivery"])


def policy_dict(policy: ShipmentPolicy) -> dict[str, Any]:
    return asdict(policy)


def load_policy(data: dict[str, Any] | None) -> ShipmentPolicy:
    """Tolerates missing keys (older histories) and unknown ones (newer code)."""
    if not data:
        return ShipmentPolicy()
    base = ShipmentPolicy()
    notify_data = data.get("notify") or {}
    notify = base.notify
    if notify_data:
        rules = {k: (v.get("channels", []) if isinstance(v, dict) and "fan_out" not in v else v) for k, v in (notify_data.get("rules") or {}).items()}
        notify = policy_from_dict(
            {
                "merchant_name": notify_data.get("merchant_name", ""),
                "default_region": notify_data.get("default_region", "IN"),
                "quiet_hours": notify_data.get("quiet_hours"),
                "fallback": notify_data.get("fallback", True),
                "tracking_url": notify_data.get("tracking_url", ""),
                "notify": rules,
            },
            merchant_id=notify_data.get("merchant_id", "*"),
        )
    ndr_fields = {f: v for f, v in (data.get("ndr") or {}).items() if f in NdrPolicy.__dataclass_fields__}
    return ShipmentPolicy(
        notify=notify,
        quiet_hours=data.get("quiet_hours", base.quiet_hours),
        ndr=NdrPolicy(**ndr_fields),
        ndr_rules=list(data.get("ndr_rules") or []),
        stale_after_s={**base.stale_after_s, **(data.get("stale_after_s") or {})},
        poll_after_s=float(data.get("poll_after_s", base.poll_after_s)),
        pollable_carriers=list(data.get("pollable_carriers", base.pollable_carriers)),
    )
