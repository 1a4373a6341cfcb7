"""Forwarding NDR instructions to carriers, exactly once per idempotency key.

The store's `carrier_instructions` row (unique on the key) is checked before any carrier is
called: an instruction the carrier already answered (accepted or rejected) returns the recorded
result and never reaches the carrier again, whatever Temporal retries or replays. Otherwise the
row is marked "requested", the adapter is called and the outcome recorded.

Failure semantics: timeouts, connection errors, 429 and 5xx raise a retryable ApplicationError of
type "CarrierUnavailable" (Temporal retries with the workflow's backoff; the HTTP client itself
never retries). A 4xx is a rejection: recorded and returned, not retried. Delhivery's
asynchronous upload id is stored as soon as it is known, so a retry resumes following it instead
of submitting the same action twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from carriers import email_ops
from carriers.base import CarrierUnavailable
from carriers.registry import ADAPTERS
from carriers.settings import CarrierSettings
from domain.instructions import (
    CARRIER_UNAVAILABLE,
    EMAIL_CARRIER_OPS,
    SEND_CARRIER_INSTRUCTION,
    EmailCarrierOpsInput,
    InstructionResult,
    SendInstructionInput,
)
from store import carriers as store
from store.models import Shipment

HttpClientFactory = Callable[[], httpx.AsyncClient]
UNKNOWN_CARRIER = "UnknownCarrier"


class SharedClient:
    """One pooled httpx client per worker, created on first use by the injected factory."""

    def __init__(self, factory: HttpClientFactory) -> None:
        self._factory = factory
        self._client: httpx.AsyncClient | None = None

    def get(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = self._factory()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def default_http_client_factory(settings: CarrierSettings) -> HttpClientFactory:
    # No transport retries: Temporal owns retrying (DESIGN: provider SDK retries off).
    return lambda: httpx.AsyncClient(
        timeout=settings.carrier_http_timeout_s,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        headers={"User-Agent": "ndrflow"},
    )


class InstructActivities:
    def __init__(
        self,
        engine: Engine,
        settings: CarrierSettings,
        http_client_factory: HttpClientFactory | None = None,
        send_email: email_ops.SendEmail | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.http = SharedClient(http_client_factory or default_http_client_factory(settings))
        self.send_email = send_email

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- store helpers (sync SQLAlchemy, run off the event loop) -------------------------------

    async def _db(self, fn: Callable[[Session], Any]) -> Any:
        def run() -> Any:
            with Session(self.engine, expire_on_commit=False) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    def _with_shipment_details(self, session: Session, inp: SendInstructionInput) -> SendInstructionInput:
        """Carriers that need the unchanged address and phone (ClickPost's REATTEMPT makes them
        mandatory) get them from the store here, so the workflow input carries no contact data."""
        extra = dict(inp.extra)
        if "address" in extra and "phone" in extra:
            return inp
        row = session.get(Shipment, inp.shipment_id)
        if row is not None:
            extra.setdefault("address", dict(row.address or {}))
            extra.setdefault("phone", row.customer_phone)
            extra.setdefault("name", row.customer_name)
        return dataclasses.replace(inp, extra=extra)

    # --- activities ----------------------------------------------------------------------------

    @activity.defn(name=SEND_CARRIER_INSTRUCTION)
    async def send_carrier_instruction(self, inp: SendInstructionInput) -> InstructionResult:
        # Beats while the carrier answers (or times out), so a killed worker's attempt is retried
        # in seconds instead of after the whole start-to-close timeout.
        async with heartbeating():
            return await self._send_carrier_instruction(inp)

    async def _send_carrier_instruction(self, inp: SendInstructionInput) -> InstructionResult:
        adapter = ADAPTERS.get(inp.carrier)
        if adapter is None:
            raise ApplicationError(
                f"unknown carrier {inp.carrier!r}", type=UNKNOWN_CARRIER, non_retryable=True
            )

        existing = await self._db(lambda s: store.get_instruction(s, idempotency_key=inp.idempotency_key))
        if existing is not None and existing.status in store.FINAL:
            activity.logger.info(
                "instruction %s already %s: not sent again", inp.idempotency_key, existing.status
            )
            return existing.result()

        def begin(session: Session) -> tuple[store.CarrierInstruction, SendInstructionInput]:
            return store.begin_instruction(session, inp=inp), self._with_shipment_details(session, inp)

        row, full = await self._db(begin)
        http = self.http.get()

        async def remember(reference: str) -> None:
            await self._db(
                lambda s: store.set_instruction_reference(
                    s, idempotency_key=inp.idempotency_key, carrier_reference=reference
                )
            )

        try:
            follow_up = getattr(adapter, "follow_up", None)
            if row.carrier_reference and follow_up is not None:
                # A previous attempt submitted it and got a reference: only check on it.
                result = await follow_up(row.carrier_reference, full, self.settings, http)
            elif "on_reference" in inspect.signature(adapter.send_instruction).parameters:
                result = await adapter.send_instruction(full, self.settings, http, on_reference=remember)
            else:
                result = await adapter.send_instruction(full, self.settings, http)
        except CarrierUnavailable as exc:
            # Keep the row "requested" with what went wrong; Temporal retries the activity.
            pending = InstructionResult(
                status=store.REQUESTED,
                detail=f"attempt {activity.info().attempt}: {exc}",
                http_status=exc.http_status,
            )
            await self._db(
                lambda s: store.finish_instruction(s, idempotency_key=inp.idempotency_key, result=pending)
            )
            raise ApplicationError(str(exc), type=CARRIER_UNAVAILABLE) from exc

        await self._db(
            lambda s: store.finish_instruction(s, idempotency_key=inp.idempotency_key, result=result)
        )
        activity.logger.info("instruction %s to %s: %s", inp.idempotency_key, inp.carrier, result.status)
        return result

    @activity.defn(name=EMAIL_CARRIER_OPS)
    async def email_carrier_ops(self, inp: EmailCarrierOpsInput) -> InstructionResult:
        """The fallback report, once per instruction (its own key: "<instruction key>:email")."""
        async with heartbeating():
            return await self._email_carrier_ops(inp)

    async def _email_carrier_ops(self, inp: EmailCarrierOpsInput) -> InstructionResult:
        key = f"{inp.instruction.idempotency_key}:email"
        existing = await self._db(lambda s: store.get_instruction(s, idempotency_key=key))
        if existing is not None and existing.status in store.FINAL:
            return existing.result()
        keyed = dataclasses.replace(inp.instruction, idempotency_key=key)
        await self._db(lambda s: store.begin_instruction(s, inp=keyed))
        result = await email_ops.send_instruction(
            inp.instruction, self.settings, self.send_email, why=inp.why
        )
        await self._db(lambda s: store.finish_instruction(s, idempotency_key=key, result=result))
        return result
