"""The public tracking page `GET /t/{shipment_id}`: where every message's tracking link points
by default (activities/notify.py base_context).

Anyone holding the link may read it, and links get forwarded, so the page shows only what a
courier's own tracking page shows: the status, the carrier's milestones with their times (and the
hub location for scans away from the customer's door), the carrier and tracking number, the
merchant's name and the expected date. Never the customer's name, phone, email or address, never
a carrier's free text (it can name the receiver), and never the NDR self-service link (that one is
a credential, sent only to the customer).

Cheap to serve and never a 500: the id's shape is checked before any lookup (ids are unguessable
hashes, shp_ + 24 base32 characters), views are cached for a few seconds per shipment, clients
that hammer the page get 429 with Retry-After, the workflow query has a short timeout and falls
back to the store (read model + recorded carrier events), and anything unexpected is a 503 page.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_skeleton, format_time
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlmodel import Session, select

from api.tracking_text import LANGUAGES, MILESTONES, TEXT, language_for
from domain.taxonomy import MILESTONE_RANK, TERMINAL_MILESTONES, Milestone, parse_milestone
from store.models import CarrierEventLog, Shipment, as_utc
from workflows.ids import shipment_workflow_id
from workflows.messages import ShipmentState

log = logging.getLogger(__name__)
router = APIRouter(tags=["tracking"])

PAGES = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent.parent / "pages")),
    autoescape=select_autoescape(["html"]),
)
SHIPMENT_ID = re.compile(r"^shp_[a-z2-7]{24}$")
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}
# Scans at the customer's door: their location may be the customer's street, so it is not shown.
DOORSTEP = frozenset({Milestone.out_for_delivery, Milestone.delivery_failed, Milestone.delivered})
STEPS = (
    (Milestone.created, "step_ordered"),
    (Milestone.picked_up, "step_picked_up"),
    (Milestone.in_transit, "step_in_transit"),
    (Milestone.out_for_delivery, "step_out_for_delivery"),
    (Milestone.delivered, "step_delivered"),
)
MAX_SCANS = 50


class TrackingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NDRFLOW_", env_file=".env", extra="ignore")

    # Page views per client address per minute (behind a proxy every client shares its address:
    # put the limit there, or raise this).
    tracking_rate_per_minute: int = 120
    # A shipment's view is reused this long (carriers scan every few hours; the page says when).
    tracking_cache_seconds: float = 20.0
    tracking_query_timeout_seconds: float = 3.0


@dataclass
class Scan:
    at: datetime
    milestone: Milestone
    location: str | None


@dataclass
class View:
    shipment_id: str
    merchant_id: str
    carrier: str
    tracking_number: str
    locale: str
    timezone: str
    status: Milestone
    last_event_at: datetime | None
    expected: date | None
    scans: list[Scan] = field(default_factory=list)
    ndr: str | None = None  # "waiting" | "decided" | None
    partial: bool = False  # the workflow did not answer: from the store only


class _Limiter:
    """A token bucket per client address, in memory (per API process), bounded in size."""

    def __init__(self, max_clients: int = 10_000) -> None:
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.max_clients = max_clients

    def allow(self, client: str, per_minute: int, now: float) -> float:
        """0 when allowed, else the seconds to wait."""
        if per_minute <= 0:
            return 0.0
        rate = per_minute / 60.0
        tokens, last = self.buckets.pop(client, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - last) * rate)
        if tokens < 1.0:
            self.buckets[client] = (tokens, now)
            return (1.0 - tokens) / rate
        self.buckets[client] = (tokens - 1.0, now)
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return 0.0


class _Cache:
    def __init__(self, max_items: int = 2048) -> None:
        self.items: OrderedDict[str, tuple[float, View]] = OrderedDict()
        self.max_items = max_items

    def get(self, key: str, now: float) -> View | None:
        hit = self.items.get(key)
        if hit is None or hit[0] < now:
            return None
        self.items.move_to_end(key)
        return hit[1]

    def put(self, key: str, view: View, until: float) -> None:
        self.items[key] = (until, view)
        self.items.move_to_end(key)
        while len(self.items) > self.max_items:
            self.items.popitem(last=False)


def _state(request: Request) -> tuple[TrackingSettings, _Limiter, _Cache]:
    app_state = request.app.state
    if getattr(app_state, "tracking", None) is None:
        settings = getattr(app_state, "tracking_settings", None) or TrackingSettings()
        app_state.tracking = (settings, _Limiter(), _Cache())
    return app_state.tracking


@router.get(
    "/t/{shipment_id}",
    response_class=HTMLResponse,
    summary="Public tracking page (no personal data)",
    responses={404: {"description": "unknown shipment"}, 429: {"description": "too many requests"}},
)
async def tracking_page(
    request: Request, shipment_id: str, lang: str | None = Query(None, max_length=16)
) -> HTMLResponse:
    fallback_lang = language_for(None, lang)
    try:
        settings, limiter, cache = _state(request)
        client = request.client.host if request.client else "-"
        wait = limiter.allow(client, settings.tracking_rate_per_minute, time.monotonic())
        if wait > 0:
            return _message(429, fallback_lang, "busy", {"Retry-After": str(max(1, round(wait)))})
        if not SHIPMENT_ID.match(shipment_id):
            return _message(404, fallback_lang, "not_found")
        now = time.monotonic()
        view = cache.get(shipment_id, now)
        if view is None:
            view = await _load(request, shipment_id, settings)
            if view is None:
                return _message(404, fallback_lang, "not_found")
            # A view from the store alone is kept briefly, so the page recovers quickly.
            ttl = (
                settings.tracking_cache_seconds
                if not view.partial
                else min(5.0, settings.tracking_cache_seconds)
            )
            cache.put(shipment_id, view, now + ttl)
        return _render(request, view, lang, settings)
    except Exception:  # noqa: BLE001 - a public page answers with a page, never a stack trace
        log.exception("tracking page for %s failed", shipment_id)
        return _message(503, fallback_lang, "unavailable")


# ---- loading ------------------------------------------------------------------------------


async def _load(request: Request, shipment_id: str, settings: TrackingSettings) -> View | None:
    engine = request.app.state.engine
    row = await asyncio.to_thread(_row, engine, shipment_id)
    if row is None:
        return None
    view = View(
        shipment_id=row.shipment_id,
        merchant_id=row.merchant_id,
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        locale=row.customer_locale or "en",
        timezone=row.customer_timezone or "UTC",
        status=parse_milestone(row.status),
        last_event_at=row.last_event_at,
        expected=_date(row.promised_delivery_date),
    )
    state = await _query(request, row.workflow_id or shipment_workflow_id(shipment_id), settings)
    if state is not None:
        _apply_state(view, state)
    else:
        view.partial = True
        view.scans = await asyncio.to_thread(_stored_scans, engine, shipment_id)
    return view


def _row(engine: Any, shipment_id: str) -> Shipment | None:
    with Session(engine) as s:
        return s.get(Shipment, shipment_id)


async def _query(request: Request, workflow_id: str, settings: TrackingSettings) -> ShipmentState | None:
    temporal = getattr(request.app.state, "temporal", None)
    if temporal is None:
        return None
    try:
        handle = temporal.get_workflow_handle(workflow_id)
        return await handle.query(
            "state",
            result_type=ShipmentState,
            rpc_timeout=timedelta(seconds=settings.tracking_query_timeout_seconds),
        )
    except Exception as exc:  # noqa: BLE001 - not found (retention passed), timeout, Temporal down
        log.info("tracking page: workflow %s not queryable (%s); showing the stored status", workflow_id, exc)
        return None


def _apply_state(view: View, state: ShipmentState) -> None:
    view.status = parse_milestone(state.status)
    if state.last_event_at:
        view.last_event_at = _time(state.last_event_at)
    scans = []
    for entry in state.timeline:
        if entry.kind != "carrier_event":
            continue
        scan = _scan(entry.at, entry.data.get("milestone"), entry.data.get("location"))
        if scan is not None:
            scans.append(scan)
    view.scans = _tidy(scans)
    open_cases = [c for c in state.ndr_cases if c.get("state") not in ("closed", "carrier_acted")]
    if open_cases and view.status is Milestone.delivery_failed:
        waiting = open_cases[-1].get("state") in ("asking", "awaiting_date", "awaiting_details")
        view.ndr = "waiting" if waiting else "decided"


def _stored_scans(engine: Any, shipment_id: str) -> list[Scan]:
    with Session(engine) as s:
        rows = s.exec(
            select(CarrierEventLog)
            .where(CarrierEventLog.shipment_id == shipment_id)
            .order_by(CarrierEventLog.id.desc())  # type: ignore[union-attr]
            .limit(MAX_SCANS * 2)
        ).all()
    scans = []
    for r in rows:
        ev = r.event or {}
        scan = _scan(ev.get("occurred_at"), ev.get("milestone"), ev.get("location"))
        if scan is not None:
            scans.append(scan)
    return _tidy(scans)


def _scan(at: Any, milestone: Any, location: Any) -> Scan | None:
    m = parse_milestone(str(milestone or ""))
    when = _time(at)
    if m is Milestone.unknown or when is None:
        return None  # unmapped codes carry only the carrier's own words
    place = None
    if m not in DOORSTEP and isinstance(location, str) and location.strip():
        place = " ".join(location.split())[:60]
    return Scan(when, m, place)


def _tidy(scans: list[Scan]) -> list[Scan]:
    """Newest first, duplicates (same milestone and minute) once, at most MAX_SCANS."""
    seen: set[tuple[str, str]] = set()
    out = []
    for s in sorted(scans, key=lambda s: s.at, reverse=True):
        key = (s.milestone.value, s.at.strftime("%Y%m%d%H%M"))
        if key in seen:
            continue
        seen.add(key)
        out.append(s)
    return out[:MAX_SCANS]


_time = as_utc


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


# ---- rendering ----------------------------------------------------------------------------


def _render(
    request: Request, view: View, lang_override: str | None, settings: TrackingSettings
) -> HTMLResponse:
    lang = language_for(view.locale, lang_override)
    locale = _babel_locale(view.locale if language_for(view.locale) == lang else lang)
    zone = _zone(view.timezone)
    t = TEXT[lang]
    names = MILESTONES[lang]

    def when(dt: datetime) -> str:
        local = dt.astimezone(
            zone
        )  # "Sat, 28 Nov, 9:10 AM" / "शनि, 28 नव॰, 9:10 am" / "11월 28일 (토), 오전 9:10"
        return (
            f"{format_skeleton('MMMEd', local, locale=locale)}, {format_time(local, 'short', locale=locale)}"
        )

    returning = view.status.value.startswith("rto_") or view.status in (
        Milestone.cancelled,
        Milestone.lost,
        Milestone.damaged,
    )
    steps = _steps(view, t) if not returning else []
    show_expected = view.expected is not None and view.status not in TERMINAL_MILESTONES and not returning
    html = PAGES.get_template("tracking.html").render(
        lang=lang,
        title=t["title"],
        t=t,
        headline=names[view.status.value],
        status=view.status.value,
        merchant=_merchant_name(request, view.merchant_id),
        carrier=_carrier_name(view.carrier),
        tracking_number=view.tracking_number,
        expected=t["expected"].format(date=format_date(view.expected, "full", locale=locale))
        if show_expected
        else None,
        updated=t["updated"].format(when=when(view.last_event_at)) if view.last_event_at else None,
        scans=[
            {
                "label": names[s.milestone.value],
                "when": when(s.at),
                "iso": s.at.isoformat(),
                "place": s.location,
            }
            for s in view.scans
        ],
        steps=steps,
        ndr=t["ndr_" + view.ndr] if view.ndr else None,
        partial=t["partial"] if view.partial else None,
        languages=[(code, name) for code, name in LANGUAGES if code != lang],
    )
    headers = {
        **HEADERS,
        # No personal data on the page: shared caches may keep it as long as ours does.
        "Cache-Control": f"public, max-age={max(0, int(settings.tracking_cache_seconds))}",
        "Vary": "Accept-Encoding",
        "Content-Language": lang,
    }
    return HTMLResponse(html, status_code=200, headers=headers)


def _steps(view: View, t: dict[str, str]) -> list[dict[str, Any]]:
    """The forward journey as a stepper: every step up to the furthest one the parcel reached
    (a failed attempt or a delay keeps the step it happened at)."""
    on_stepper = {m for m, _ in STEPS}
    reached = {Milestone.created} | {s.milestone for s in view.scans if s.milestone in on_stepper}
    if view.status in on_stepper:
        reached.add(view.status)
    furthest = max(MILESTONE_RANK[m] for m in reached)
    return [
        {
            "label": t[key],
            "done": MILESTONE_RANK[m] <= furthest,
            "current": MILESTONE_RANK[m] == furthest,
        }
        for m, key in STEPS
    ]


def _message(status: int, lang: str, key: str, extra_headers: dict[str, str] | None = None) -> HTMLResponse:
    t = TEXT[lang]
    html = PAGES.get_template("customer/message.html").render(
        lang=lang, title=t[f"{key}_title"], lines=[t[f"{key}_text"]], bad=status >= 500, languages=()
    )
    return HTMLResponse(
        html, status_code=status, headers={**HEADERS, "Cache-Control": "no-store", **(extra_headers or {})}
    )


def _merchant_name(request: Request, merchant_id: str) -> str:
    try:
        from api.routes.provider_webhooks import channel_settings

        return channel_settings(request).policy_book.policy_for(merchant_id).merchant_name or merchant_id
    except Exception:  # noqa: BLE001 - a broken policy file must not take the page down
        return merchant_id


def _carrier_name(code: str) -> str:
    from activities.notify import CARRIER_NAMES

    return CARRIER_NAMES.get(code, code.replace("_", " ").title()) or ""


def _babel_locale(tag: str) -> Locale:
    for candidate in (tag.replace("-", "_"), tag.split("-")[0], "en"):
        try:
            return Locale.parse(candidate)
        except Exception:  # noqa: BLE001 - unknown locale: try the next
            continue
    return Locale.parse("en")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
