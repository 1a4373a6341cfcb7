"""Channel -> provider module, from configuration: Twilio for sms/whatsapp when an account SID
is set, SendGrid for email when an API key is set, the local outbox otherwise."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from channels import outbox, sendgrid_email, twilio_sms, twilio_whatsapp
from channels.settings import ChannelSettings

PROVIDERS: dict[str, ModuleType] = {
    twilio_sms.PROVIDER: twilio_sms,
    twilio_whatsapp.PROVIDER: twilio_whatsapp,
    sendgrid_email.PROVIDER: sendgrid_email,
    outbox.PROVIDER: outbox,
}


class ChannelRegistry:
    """`overrides` replaces provider modules by name (tests pass fakes with send/reconcile)."""

    def __init__(self, settings: ChannelSettings, overrides: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._providers: dict[str, Any] = {**PROVIDERS, **(overrides or {})}

    def provider_name(self, channel: str) -> str:
        return self.settings.provider_for(channel)

    def provider(self, channel: str) -> Any:
        return self._providers[self.provider_name(channel)]

    def by_name(self, provider: str) -> Any:
        return self._providers[provider]
