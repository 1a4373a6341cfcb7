"""Settings of the NDR area (env prefix NDRFLOW_), kept apart from the shared Settings class."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict


class NdrSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NDRFLOW_", env_file=".env", extra="ignore")

    # Per-case reply-to addresses are r+<key>@<domain>; SendGrid Inbound Parse must receive this
    # domain (MX record). Empty: email replies are routed by the sender's address only.
    inbound_email_domain: str = ""
    # Self-service links stop working after this long even if the case is still open (the page
    # also refuses once the case is decided or closed). Window (6 days) + a day of slack.
    case_link_max_age_days: float = 8.0
    # The page form must be submitted within this long after it was shown.
    case_page_csrf_max_age_s: int = 2 * 3600
    # Reattempt dates the carrier accepts: tomorrow .. +N days.
    reattempt_max_days: int = 6
    # The merchants' default rules when nobody answers (domain/ndr_rules.py format), as JSON:
    # {"*": [rules for everyone], "acme": [rules for acme]}. Empty: the built-in defaults
    # (reattempt on attempts 1 and 2, return to origin after the 3rd).
    ndr_rules: str = ""

    def rules_for(self, merchant_id: str) -> list[dict[str, Any]]:
        if not self.ndr_rules.strip():
            return []
        data = json.loads(self.ndr_rules)
        if isinstance(data, list):
            return list(data)
        return list(data.get(merchant_id) or data.get("*") or [])


@lru_cache
def get_ndr_settings() -> NdrSettings:
    return NdrSettings()
