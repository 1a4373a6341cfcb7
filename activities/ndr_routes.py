"""Open and close an NDR case's reply routes (store/ndr.py). Idempotent: opening the same case
again returns the same code, closing twice closes nothing more."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity

from store import ndr as routes
from store.models import Shipment
from workflows.messages import (
    CLOSE_REPLY_ROUTE,
    OPEN_REPLY_ROUTE,
    CloseReplyRouteInput,
    OpenReplyRouteInput,
    OpenReplyRouteResult,
)


class NdrRouteActivities:
    def __init__(self, engine: Engine, *, inbound_email_domain: str = "", reply_key_secret: str = "") -> None:
        self.engine = engine
        self.inbound_email_domain = inbound_email_domain
        self.reply_key_secret = reply_key_secret  # NDRFLOW_SECRET_KEY: reply-to keys cannot be derived

    @activity.defn(name=OPEN_REPLY_ROUTE)
    def open_reply_route(self, inp: OpenReplyRouteInput) -> OpenReplyRouteResult:
        with Session(self.engine) as session:
            row = session.get(Shipment, inp.shipment_id)
            phone = row.customer_phone if row else None
            email = row.customer_email if row else None
            if row is None:
                activity.logger.warning("reply route: no shipment row for %s; only the web link will route", inp.shipment_id)
            route = routes.open_route(
                session, shipment_id=inp.shipment_id, attempt=inp.attempt, phone=phone, email=email, key_secret=self.reply_key_secret
            )
        reply_to = routes.reply_to_address(route.reply_key, self.inbound_email_domain) if route.reply_key and self.inbound_email_domain else ""
        return OpenReplyRouteResult(ref=route.ref, reply_to=reply_to)

    @activity.defn(name=CLOSE_REPLY_ROUTE)
    def close_reply_route(self, inp: CloseReplyRouteInput) -> int:
        with Session(self.engine) as session:
            return routes.close_route(session, shipment_id=inp.shipment_id, attempt=inp.attempt)
