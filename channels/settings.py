"""Channel configuration (env prefix NDRFLOW_), read by the worker and the API.

Without NDRFLOW_TWILIO_ACCOUNT_SID, SMS and WhatsApp go to the local outbox; without
NDRFLOW_SENDGRID_API_KEY, email does. Local mode (no provider at all) also serves the
/dev/outbox pages. NDRFLOW_TWILIO_AUTH_TOKEN signs Twilio-format webhooks in every mode; when
unset, ndrflow/config.py generates one per home.

Structured settings take JSON in the environment:
    NDRFLOW_WHATSAPP_TEMPLATES='{"out_for_delivery": {"en": {"content_sid": "HX...", "variables": ["merchant_name", "order_id", "tracking_url"]}}}'
    NDRFLOW_SENDGRID_TEMPLATES='{"delivered": "d-...", "ndr_ask.hi": "d-..."}'
    NDRFLOW_NOTIFY_POLICY='{"default": {...}, "merchants": {"acme": {...}}}'   (see workflows/notify_policy.py)
or files: NDRFLOW_WHATSAPP_TEMPLATES_FILE, NDRFLOW_NOTIFY_POLICY_FILE (JSON, or TOML by extension).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from workflows.notify_policy import (
    DEFAULT_QUIET_HOURS,
    MerchantPolicy,
    PolicyBook,
    effective_quiet_hours,
    parse_quiet_hours,
    policy_book_from_dict,
)

TWILIO_STATUS_PATH = "/v1/webhooks/twilio/status"
TWILIO_INBOUND_PATH = "/v1/webhooks/twilio/inbound"
SENDGRID_EVENTS_PATH = "/v1/webhooks/sendgrid/events"


class WhatsAppTemplate(BaseModel):
    content_sid: str  # HX..., an approved Content template
    # Rendered variable names (templates.Rendered.variables) for {{1}}, {{2}}, ... in order.
    variables: list[str] = Field(default_factory=list)


def _read_structured(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        return tomllib.loads(text)
    return json.loads(text)


class ChannelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NDRFLOW_", env_file=".env", extra="ignore")

    home: Path = Path(".ndrflow")
    public_base_url: str = "http://127.0.0.1:8000"
    # Signs the customer self-service links NDR messages carry (api/tokens.py); "" = the one
    # generated for this home (home/secrets.json, written by ndrflow.config.Settings).
    secret_key: str = ""

    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_from: str = ""  # E.164 sender, when no messaging service
    twilio_whatsapp_from: str = ""  # WhatsApp sender E.164; defaults to twilio_from
    twilio_base_url: str = ""  # "" = https://api.twilio.com; tests point it at a loopback mock
    twilio_timeout_seconds: float = 10.0

    sendgrid_api_key: str = ""
    sendgrid_from: str = ""
    sendgrid_from_name: str = ""
    sendgrid_base_url: str = ""  # "" = https://api.sendgrid.com
    sendgrid_timeout_seconds: float = 10.0
    sendgrid_reply_to: str = ""  # the Inbound Parse address (a per-case address in context wins)
    sendgrid_event_public_key: str = ""  # Event Webhook verification key (base64 DER, from SendGrid)
    sendgrid_event_max_age_seconds: int = 600
    # Crash window: how long to wait for SendGrid events carrying our key before re-sending an
    # email whose send outcome was never recorded.
    sendgrid_reconcile_wait_seconds: float = 300.0
    sendgrid_templates: dict[str, str] = Field(default_factory=dict)  # purpose[.locale] -> d-...

    whatsapp_templates: dict[str, dict[str, WhatsAppTemplate]] = Field(
        default_factory=dict
    )  # purpose -> locale -> template
    whatsapp_templates_file: Path | None = None
    # Free-form WhatsApp only this long after the customer's last message (Twilio allows 24 h;
    # the margin absorbs queueing so an asynchronous 63016 stays rare).
    whatsapp_session_hours: float = 23.5

    quiet_hours: str = DEFAULT_QUIET_HOURS  # "" = off
    notify_policy: str = ""  # JSON
    notify_policy_file: Path | None = None  # JSON or TOML
    notify_task_queue: str = "ndrflow-notify"
    # Worker(max_task_queue_activities_per_second=...) on notify_task_queue: provider rate limits
    # hold across any number of workers.
    notify_max_per_second: float = 10.0
    # Send a notification inside the workflow task that decided it (a local activity: 1 history
    # event instead of 6, no queue hop) while the budget shared with the queue above has room
    # (store/send_budget.py); otherwise, and on any provider or local failure, the queue sends it.
    notify_inline: bool = True
    notify_default_region: str = "IN"
    # An attempt "sending" for less than this may still be in flight on another worker: a
    # retry waits instead of reconciling. Longer than any provider timeout; shorter than the
    # activity's start-to-close timeout (60 s recommended).
    notify_attempt_lease_seconds: float = 30.0

    # /dev/outbox pages: None = only in local mode.
    dev_pages: bool | None = None

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ChannelSettings:
        """Channel settings consistent with the app's Settings (home, public URL, and the
        per-home generated Twilio auth token when none is configured)."""
        values: dict[str, Any] = {}
        for name in ("home", "public_base_url", "twilio_auth_token", "secret_key"):
            value = getattr(settings, name, None)
            if value:
                values[name] = value
        values.update(overrides)
        return cls(**values)

    def signing_key(self) -> str | None:
        """NDRFLOW_SECRET_KEY, else the key generated for this home; None when neither exists
        (never generated here: the API must verify with the same key the worker signs with)."""
        if self.secret_key:
            return self.secret_key
        path = self.home / "secrets.json"
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        key = stored.get("secret_key") if isinstance(stored, dict) else None
        return str(key) if key else None

    # ---- which provider ------------------------------------------------------------------
    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid)

    @property
    def sendgrid_enabled(self) -> bool:
        return bool(self.sendgrid_api_key)

    @property
    def local_mode(self) -> bool:
        return not self.twilio_enabled and not self.sendgrid_enabled

    @property
    def dev_pages_enabled(self) -> bool:
        return self.local_mode if self.dev_pages is None else self.dev_pages

    def provider_for(self, channel: str) -> str:
        if channel == "sms":
            return "twilio_sms" if self.twilio_enabled else "outbox"
        if channel == "whatsapp":
            return "twilio_whatsapp" if self.twilio_enabled else "outbox"
        if channel == "email":
            return "sendgrid_email" if self.sendgrid_enabled else "outbox"
        raise ValueError(f"unknown channel {channel!r}")

    def check(self) -> list[str]:
        """Configuration problems, named (the worker refuses to start on any)."""
        problems = []
        if self.twilio_enabled:
            if not self.twilio_auth_token:
                problems.append("NDRFLOW_TWILIO_AUTH_TOKEN is required with NDRFLOW_TWILIO_ACCOUNT_SID")
            if not (self.twilio_messaging_service_sid or self.twilio_from):
                problems.append("set NDRFLOW_TWILIO_MESSAGING_SERVICE_SID or NDRFLOW_TWILIO_FROM")
        if self.sendgrid_enabled and not self.sendgrid_from:
            problems.append("NDRFLOW_SENDGRID_FROM is required with NDRFLOW_SENDGRID_API_KEY")
        try:
            parse_quiet_hours(self.quiet_hours)
        except ValueError as exc:
            problems.append(f"NDRFLOW_QUIET_HOURS: {exc}")
        try:
            self.policy_book  # noqa: B018 - parse it now
            self.whatsapp_template_map  # noqa: B018
        except (ValueError, OSError) as exc:
            problems.append(str(exc))
        return problems

    # ---- URLs ----------------------------------------------------------------------------
    def public_url(self, path: str) -> str:
        return self.public_base_url.rstrip("/") + path

    def status_callback_url(self, key: str) -> str:
        # The key rides in the callback URL: a callback that beats our own database write
        # (or follows a crash) still finds its notification.
        return self.public_url(TWILIO_STATUS_PATH) + "?key=" + quote(key, safe="")

    # ---- templates and policy ------------------------------------------------------------
    @cached_property
    def whatsapp_template_map(self) -> dict[str, dict[str, WhatsAppTemplate]]:
        merged: dict[str, dict[str, WhatsAppTemplate]] = {}
        if self.whatsapp_templates_file:
            data = _read_structured(self.whatsapp_templates_file)
            for purpose, by_locale in dict(data).items():
                merged[purpose] = {
                    loc: WhatsAppTemplate.model_validate(t) for loc, t in dict(by_locale).items()
                }
        for purpose, by_locale in self.whatsapp_templates.items():
            merged.setdefault(purpose, {}).update(by_locale)
        return merged

    def whatsapp_template(self, purpose: str, locales: list[str]) -> WhatsAppTemplate | None:
        by_locale = self.whatsapp_template_map.get(purpose, {})
        for loc in locales:
            if loc in by_locale:
                return by_locale[loc]
        return None

    def sendgrid_template_id(self, purpose: str, locales: list[str]) -> str | None:
        for loc in locales:
            if f"{purpose}.{loc}" in self.sendgrid_templates:
                return self.sendgrid_templates[f"{purpose}.{loc}"]
        return self.sendgrid_templates.get(purpose)

    @cached_property
    def policy_book(self) -> PolicyBook:
        data: dict[str, Any] = {}
        if self.notify_policy_file:
            try:
                data = dict(_read_structured(self.notify_policy_file))
            except (OSError, ValueError) as exc:
                raise ValueError(f"NDRFLOW_NOTIFY_POLICY_FILE {self.notify_policy_file}: {exc}") from exc
        if self.notify_policy:
            try:
                data = {**data, **json.loads(self.notify_policy)}
            except ValueError as exc:
                raise ValueError(f"NDRFLOW_NOTIFY_POLICY is not valid JSON: {exc}") from exc
        if self.notify_default_region and "default_region" not in (data.get("default") or {}):
            data = {
                **data,
                "default": {**(data.get("default") or {}), "default_region": self.notify_default_region},
            }
        return policy_book_from_dict(data)

    def policy_for(self, merchant_id: str) -> MerchantPolicy:
        """The merchant's policy with quiet hours resolved against NDRFLOW_QUIET_HOURS, ready to
        hand to a workflow (which cannot read configuration itself)."""
        policy = self.policy_book.policy_for(merchant_id)
        return replace(policy, quiet_hours=effective_quiet_hours(policy, self.quiet_hours) or "")
