"""Per-carrier settings (env prefix NDRFLOW_): API base URLs, credentials, webhook secrets,
timeouts. Base URLs are settings so that tests, the demo and `ndrflow up` in local mode can point
every adapter at the fake carrier (`CarrierSettings.pointing_at(url)`).

Secrets are never logged: they are plain `str` here but nothing in carriers/ prints them, and the
ClickPost licence key (sent as a query parameter) is stripped from every error message.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CarrierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NDRFLOW_", env_file=".env", extra="ignore")

    # Every outbound call has this timeout (connect + read), seconds.
    carrier_http_timeout_s: float = 10.0

    # --- generic (our own JSON contract) ---
    # HMAC-SHA256 key for inbound events (header X-Ndrflow-Signature: sha256=<hex of raw body>).
    generic_webhook_secret: str = ""
    # Where we POST instructions (signed the same way). Empty = "{generic_base_url}/instructions".
    generic_instruction_url: str = ""
    # Key for signing outbound instructions; empty = generic_webhook_secret.
    generic_instruction_secret: str = ""
    # Base of the generic carrier's tracking API: GET {base}/tracking/{tracking_number}.
    generic_base_url: str = ""

    # --- Delhivery ---
    delhivery_base_url: str = "https://track.delhivery.com"
    delhivery_api_token: str = ""
    # Delhivery pushes carry whatever shared secret you name in their requirement doc; we ask
    # for it in this header.
    delhivery_webhook_secret: str = ""
    delhivery_webhook_header: str = "x-delhivery-token"
    # Following an NDR upload (UPL) until it is accepted or rejected: bounded polls per attempt.
    delhivery_upl_poll_attempts: int = 5
    delhivery_upl_poll_interval_s: float = 3.0

    # --- Shiprocket ---
    shiprocket_base_url: str = "https://apiv2.shiprocket.in"
    shiprocket_email: str = ""
    shiprocket_password: str = ""
    # The token configured with the webhook in Shiprocket (sent back in the x-api-key header).
    shiprocket_webhook_secret: str = ""

    # --- ClickPost ---
    clickpost_base_url: str = "https://www.clickpost.in"
    # NDR Action Update v2. The exact path was not in our stored copy of the docs: configurable.
    clickpost_ndr_path: str = "/api/v2/ndr/update/"
    clickpost_username: str = ""
    clickpost_api_key: str = ""
    # Defaults for the carrier partner fields ClickPost needs (SendInstructionInput.extra wins).
    clickpost_cp_id: int | None = None
    clickpost_account_code: str = ""
    # The static `webhook_key` header value registered on the ClickPost dashboard.
    clickpost_webhook_secret: str = ""

    # --- tracking-only aggregators ---
    easypost_webhook_secret: str = ""
    aftership_webhook_secret: str = ""

    # --- email fallback to carrier operations ---
    carrier_ops_email: str = ""
    # Per-carrier override, JSON in env: NDRFLOW_CARRIER_OPS_EMAILS='{"delhivery":"ndr@..."}'.
    carrier_ops_emails: dict[str, str] = Field(default_factory=dict)

    def webhook_secret(self, carrier: str) -> str:
        """The inbound webhook secret for a carrier code ("" when not configured -> refuse)."""
        return str(getattr(self, f"{carrier}_webhook_secret", "") or "")

    def ops_email(self, carrier: str) -> str:
        return self.carrier_ops_emails.get(carrier) or self.carrier_ops_email

    @property
    def generic_instruction_target(self) -> str:
        if self.generic_instruction_url:
            return self.generic_instruction_url
        return f"{self.generic_base_url.rstrip('/')}/instructions" if self.generic_base_url else ""

    @property
    def generic_signing_secret(self) -> str:
        return self.generic_instruction_secret or self.generic_webhook_secret

    def pointing_at(self, fake_url: str) -> CarrierSettings:
        """A copy whose every carrier API points at the fake carrier (local mode, tests, demo).

        Credentials left empty get placeholder values: the fake checks that they are sent, not
        what they are.
        """
        base = fake_url.rstrip("/")
        return self.model_copy(
            update={
                "delhivery_base_url": base,
                "shiprocket_base_url": base,
                "clickpost_base_url": base,
                "generic_base_url": f"{base}/generic",
                "generic_instruction_url": f"{base}/generic/instructions",
                # Unsigned generic instructions are never sent ("unsupported"): sign them for the fake.
                "generic_instruction_secret": self.generic_signing_secret or "fake-generic-secret",
                "delhivery_api_token": self.delhivery_api_token or "fake-delhivery-token",
                "shiprocket_email": self.shiprocket_email or "api@fake.example",
                "shiprocket_password": self.shiprocket_password or "fake-password",
                "clickpost_username": self.clickpost_username or "fake-enterprise",
                "clickpost_api_key": self.clickpost_api_key or "00000000-0000-0000-0000-000000000000",
                "clickpost_cp_id": self.clickpost_cp_id if self.clickpost_cp_id is not None else 4,
                "clickpost_account_code": self.clickpost_account_code or "Delhivery-Express",
            }
        )
