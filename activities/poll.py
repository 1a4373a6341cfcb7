"""Polling fallback: ask a carrier's tracking API about a shipment that has been quiet too long.

Carriers drop webhooks (Delhivery retries a failed push once, then gives up), so the workflow
calls this from a durable timer. Implemented for Delhivery and the generic carrier; other carriers
return no events. The events come back to the workflow, which dedupes them against what it has
(same event ids as the pushes: hashes of waybill, code and time).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.instruct import HttpClientFactory, SharedClient, default_http_client_factory
from carriers.base import CarrierUnavailable, WebhookFormatError
from carriers.registry import ADAPTERS
from carriers.settings import CarrierSettings
from domain.events import CarrierEvent
from domain.instructions import CARRIER_UNAVAILABLE, POLL_CARRIER_TRACKING, PollTrackingInput


class PollActivities:
    def __init__(
        self, settings: CarrierSettings, http_client_factory: HttpClientFactory | None = None
    ) -> None:
        self.settings = settings
        self.http = SharedClient(http_client_factory or default_http_client_factory(settings))

    async def aclose(self) -> None:
        await self.http.aclose()

    @activity.defn(name=POLL_CARRIER_TRACKING)
    async def poll_carrier_tracking(self, inp: PollTrackingInput) -> list[CarrierEvent]:
        adapter = ADAPTERS.get(inp.carrier)
        if adapter is None:
            return []
        try:
            return await adapter.poll_tracking(inp.tracking_number, self.settings, self.http.get())
        except CarrierUnavailable as exc:
            raise ApplicationError(str(exc), type=CARRIER_UNAVAILABLE) from exc
        except WebhookFormatError as exc:
            # A tracking answer we cannot read will not improve by asking again right away.
            activity.logger.warning(
                "%s tracking answer unreadable for %s: %s", inp.carrier, inp.shipment_id, exc
            )
            return []
