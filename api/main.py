"""Builds the FastAPI app: one router per audience, shared dependencies in api/deps.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from carriers.settings import CarrierSettings
from ndrflow.config import Settings
from store.db import engine_for


def create_app(settings: Settings, temporal: Client | None = None, carrier_settings: CarrierSettings | None = None) -> FastAPI:
    """`temporal` may be given (tests, `ndrflow up`); otherwise the app connects on startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.temporal is None:
            from ndrflow.temporal import connect

            app.state.temporal = await connect(settings)
        yield

    app = FastAPI(
        title="ndrflow",
        version="0.1.0",
        summary="Shipment notifications and NDR resolution on durable Temporal workflows",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine_for(settings.effective_database_url)
    app.state.temporal = temporal
    app.state.carrier_settings = carrier_settings or CarrierSettings()

    from api import errors, ratelimit
    from api.redaction import install_access_log_redaction
    from api.routes import (
        agent_pages,
        agents,
        carriers,
        codec,
        customer,
        dev,
        health,
        inbound,
        merchants,
        provider_webhooks,
        tracking,
    )

    errors.install(app)
    ratelimit.install(app)  # last middleware added runs first: floods stop before anything else
    install_access_log_redaction()
    # One router per audience (FastAPI "bigger applications" layout).
    app.include_router(health.router)
    app.include_router(merchants.router)  # merchants: register and read shipments
    app.include_router(carriers.router)  # carriers: tracking events in their own formats
    app.include_router(provider_webhooks.router)  # Twilio / SendGrid delivery status
    app.include_router(inbound.router)  # customers' SMS, WhatsApp and email replies
    app.include_router(customer.router)  # customers: the self-service page /r/{token}
    app.include_router(tracking.router)  # customers: the public tracking page /t/{shipment_id}
    app.include_router(agents.router)  # agents: queue, timeline, actions
    app.include_router(agent_pages.router)  # agents: the /agent dashboard
    app.include_router(codec.router)  # operators: the Temporal UI's codec server
    app.include_router(dev.router)  # answers 404 unless in local mode (no provider credentials)
    return app
