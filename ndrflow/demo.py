"""`ndrflow demo`: the whole story, scripted, against a running `make run` stack.

It is a client of the stack and uses only what a merchant, a carrier and a customer would: the
merchant registers 12 shipments (development merchant key), the carrier pushes tracking scans in
the generic JSON format (development carrier key), and three failed deliveries become NDR cases:

  * Asha answers by SMS: a Twilio-format inbound webhook, signed with the home's Twilio auth token
    over the public URL exactly as Twilio signs it: "2" (pick a date), then a weekday name;
  * Meera answers on the self-service page: the link from her email in the outbox, the page fetched
    like a browser (CSRF token from the form, its cookie kept), the form posted with a new address;
  * Ravi does not answer: his case waits for the cutoff (09:00 his time tomorrow) and reminders.

The others travel picked_up -> in_transit -> out_for_delivery -> delivered, some stopping on the
way, so the outbox and the agent dashboard have a realistic mix. Keys come from
`<home>/secrets.json` (written by `ndrflow up`); every run uses fresh tracking numbers and phone
numbers, so the demo can run any number of times against the same stack.

Meera has an email address only: email is never held back by quiet hours, so her link is there
even when the demo runs at night in India; the SMS questions then wait for 09:00 in the outbox
(Asha's replies still reach her case: replies are routed by number, not by message).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from twilio.request_validator import RequestValidator

T = TypeVar("T")

MERCHANT = "demo"  # ndrflow.devkeys.DEMO_MERCHANT: the development merchant key is bound to it
CARRIER = "generic"  # ndrflow.devkeys.DEMO_CARRIER
TWILIO_INBOUND = "/v1/webhooks/twilio/inbound"
IST = ZoneInfo("Asia/Kolkata")
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NEW_ADDRESS = {"line1": "Flat 4B, Lake View Apartments, 7th Cross", "landmark": "opposite the blue temple gate", "postal_code": "560034"}

# (name, final milestone or NDR role, reason). Journeys stop at different milestones on purpose.
ROLES_SMS, ROLES_WEB, ROLES_SILENT = "ndr_sms", "ndr_web", "ndr_unanswered"
CAST: list[tuple[str, str, str | None]] = [
    ("Asha Rao", ROLES_SMS, "customer_unavailable"),
    ("Meera Iyer", ROLES_WEB, "address_issue"),
    ("Ravi Kumar", ROLES_SILENT, "premises_closed"),
    ("Priya Nair", "delivered", None),
    ("Arjun Mehta", "delivered", None),
    ("Kavya Reddy", "delivered", None),
    ("Rohan Gupta", "delivered", None),
    ("Sneha Patil", "out_for_delivery", None),
    ("Vikram Singh", "out_for_delivery", None),
    ("Ananya Das", "in_transit", None),
    ("Farhan Sheikh", "in_transit", None),
    ("Divya Menon", "picked_up", None),
]
JOURNEY = ["picked_up", "in_transit", "out_for_delivery", "delivered"]
# What each NDR story should end as (state of the case, decided action).
EXPECTED = {ROLES_SMS: ("instructed", "reschedule"), ROLES_WEB: ("instructed", "update_address"), ROLES_SILENT: ("asking", None)}


class DemoError(RuntimeError):
    """Something the user can fix (stack not running, keys missing); the message says what."""


@dataclass
class DemoConfig:
    home: Path = Path(".ndrflow")
    api: str = "http://127.0.0.1:8000"
    # What Twilio would call: the stack's NDRFLOW_PUBLIC_BASE_URL (signatures are computed on it).
    public_url: str | None = None
    temporal_ui: str = "http://127.0.0.1:8233"
    timeout_s: float = 45.0


@dataclass
class DemoShipment:
    name: str
    role: str
    reason: str | None
    tracking_number: str
    phone: str | None
    email: str
    shipment_id: str = ""
    view: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def case(self) -> dict[str, Any] | None:
        cases = self.view.get("ndr_cases") or []
        return cases[-1] if cases else None


@dataclass
class DemoResult:
    shipments: list[DemoShipment]
    run_id: str

    @property
    def ndr(self) -> list[DemoShipment]:
        return [s for s in self.shipments if s.role.startswith("ndr")]

    def problems(self) -> list[str]:
        """Where an NDR story did not end as the script expects (empty: the demo worked)."""
        out = []
        for s in self.ndr:
            state, action = EXPECTED[s.role]
            case = s.case or {}
            got_action = (case.get("instructions") or [{}])[-1].get("action") if case.get("instructions") else None
            if case.get("state") != state or got_action != action:
                out.append(f"{s.name} ({s.role}): case {case.get('state')!r} / {got_action!r}, expected {state!r} / {action!r}")
        return out


def read_secrets(home: Path) -> tuple[dict[str, str], str]:
    """(development API keys, Twilio auth token) as `ndrflow up` stored them for this home."""
    path = home / "secrets.json"
    if not path.exists():
        raise DemoError(f"{path} not found: start the stack first with `make run` (or `ndrflow up --home {home}`)")
    data = json.loads(path.read_text())
    keys = data.get("dev_api_keys") or {}
    if not {"merchant", "carrier"} <= set(keys):
        raise DemoError(f"{path} holds no development API keys: they are written by `ndrflow up` in local mode")
    token = os.environ.get("NDRFLOW_TWILIO_AUTH_TOKEN") or data.get("twilio_auth_token") or ""
    if not token:
        raise DemoError(f"no Twilio auth token in {path} or NDRFLOW_TWILIO_AUTH_TOKEN: inbound SMS could not be signed")
    return keys, token


def reply_day(today: date) -> tuple[str, date]:
    """The weekday name Asha answers with: Saturday when it is 1-6 days ahead (the carrier's
    window), otherwise the first weekday that is; and the date it means."""
    for name in ["Saturday", *WEEKDAYS]:
        ahead = (WEEKDAYS.index(name) - today.weekday()) % 7
        if 1 <= ahead <= 6:
            return name, today + timedelta(days=ahead)
    raise AssertionError("unreachable")


def cast(run_id: str) -> list[DemoShipment]:
    rng = secrets.SystemRandom()
    out = []
    for i, (name, role, reason) in enumerate(CAST, start=1):
        first = name.split()[0].lower()
        # Fresh mobile numbers each run: replies are routed by number, and an earlier run's open
        # case on the same number would make us ask "which order?".
        phone = None if role == ROLES_WEB else f"+9198{rng.randrange(10**8):08d}"
        out.append(DemoShipment(name, role, reason, f"DEMO{run_id}{i:02d}", phone, f"{first}.{run_id.lower()}@example.com"))
    return out


class Demo:
    def __init__(self, cfg: DemoConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.keys, self.twilio_token = read_secrets(cfg.home)
        self.public = (cfg.public_url or cfg.api).rstrip("/")
        self.run_id = secrets.token_hex(3).upper()
        self.http = httpx.AsyncClient(base_url=cfg.api.rstrip("/"), timeout=20)
        self.sms_count = 0

    def merchant(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys['merchant']}"}

    def carrier(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys['carrier']}"}

    # ---- the script ----------------------------------------------------------------------------
    async def run(self) -> DemoResult:
        try:
            return await self._run()
        finally:
            await self.http.aclose()

    async def _run(self) -> DemoResult:
        await self._check_stack()
        people = cast(self.run_id)
        now = datetime.now(UTC)
        columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            reg = progress.add_task("Registering shipments", total=len(people))
            for p in people:
                p.shipment_id = await self._register(p)
                progress.advance(reg)

            scans = progress.add_task("Carrier scans", total=sum(len(self._journey(p)) for p in people))

            async def travel(n: int, p: DemoShipment) -> None:
                for i, milestone in enumerate(self._journey(p)):
                    at = now - timedelta(hours=30) + timedelta(hours=6 * i, minutes=n)
                    await self._scan(p, milestone, at, p.reason if milestone == "delivery_failed" else None)
                    progress.advance(scans)

            # Parcels travel side by side; each one's scans arrive in order, as a carrier sends them.
            await asyncio.gather(*(travel(n, p) for n, p in enumerate(people)))

            stories = progress.add_task("NDR stories", total=3)
            sms, web, silent = (next(p for p in people if p.role == r) for r in (ROLES_SMS, ROLES_WEB, ROLES_SILENT))
            progress.update(stories, description="NDR: waiting for the cases to open")
            for p in (sms, web, silent):
                await self._wait(p, lambda v: bool(v.get("ndr_cases")), "its NDR case to open")
            progress.update(stories, description=f"NDR: {sms.name} answers by SMS")
            await self._sms_story(sms)
            progress.advance(stories)
            progress.update(stories, description=f"NDR: {web.name} answers on the web page")
            await self._web_story(web)
            progress.advance(stories)
            progress.update(stories, description=f"NDR: {silent.name} does not answer")
            await self._wait(silent, lambda v: _case_state(v) == "asking", "the question to be asked")
            silent.note = "no answer: reminders, then the merchant's rule at the cutoff"
            progress.advance(stories)
            progress.update(stories, description="NDR stories")

            final = progress.add_task("Collecting the final state", total=len(people))
            for p in people:
                await self._wait(p, lambda v, p=p: self._settled(p, v), "its final state")
                progress.advance(final)
        result = DemoResult(people, self.run_id)
        self._report(result)
        return result

    @staticmethod
    def _journey(p: DemoShipment) -> list[str]:
        if p.role.startswith("ndr"):
            return ["picked_up", "in_transit", "out_for_delivery", "delivery_failed"]
        return JOURNEY[: JOURNEY.index(p.role) + 1]

    def _settled(self, p: DemoShipment, view: dict[str, Any]) -> bool:
        if p.role in EXPECTED:
            state, _ = EXPECTED[p.role]
            return _case_state(view) == state
        return view.get("status") == p.role

    # ---- stories --------------------------------------------------------------------------------
    async def _sms_story(self, p: DemoShipment) -> None:
        await self._wait(p, lambda v: _case_state(v) == "asking", "the question to be asked")
        await self._sms(p, "2")
        await self._wait(p, lambda v: _case_state(v) == "awaiting_date", "the case to wait for a date")
        name, day = reply_day(datetime.now(IST).date())
        await self._sms(p, name)
        await self._wait(p, lambda v: _case_state(v) == "instructed", "the carrier to take the reschedule")
        p.note = f'replied "2", then "{name}": reschedule to {day.isoformat()}'

    async def _web_story(self, p: DemoShipment) -> None:
        await self._wait(p, lambda v: _case_state(v) == "asking", "the question to be asked")
        link = await self._link_for(p)
        path = urlsplit(link).path  # the stack may sit behind a public URL: talk to the API itself
        async with httpx.AsyncClient(base_url=self.http.base_url, timeout=20, headers={"Accept-Language": "en-IN"}) as browser:
            page = await browser.get(path)
            if page.status_code != 200:
                raise DemoError(f"the self-service page answered {page.status_code} for {p.name}'s link")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            if csrf is None:
                raise DemoError("the self-service page has no CSRF token in its form")
            form = {"csrf": csrf.group(1), "choice": "update_address", **NEW_ADDRESS}
            done = await browser.post(path, data=form)  # the CSRF cookie rides in the client's jar
        if done.status_code != 200:
            raise DemoError(f"the self-service page refused the form: {done.status_code}")
        await self._wait(p, lambda v: _case_state(v) == "instructed", "the carrier to take the new address")
        p.note = "new address entered on the self-service page (link from her email)"

    async def _link_for(self, p: DemoShipment) -> str:
        async def probe() -> str | None:
            r = await self.http.get("/v1/dev/outbox", params={"to": p.email})
            if r.status_code == 404:
                raise DemoError("the stack does not serve the outbox: the demo needs local mode (no provider credentials)")
            for m in r.json()["messages"]:
                found = re.search(r"https?://[^\s\"'<>]+/r/[A-Za-z0-9_.~-]+", m["body"]) if m["purpose"].startswith("ndr") else None
                if found:
                    return found.group(0)
            return None

        return await _eventually(probe, f"{p.name}'s NDR email with the self-service link", self.cfg.timeout_s)

    # ---- HTTP -----------------------------------------------------------------------------------
    async def _check_stack(self) -> None:
        try:
            r = await self.http.get("/healthz")
        except httpx.HTTPError as exc:
            raise DemoError(f"no ndrflow API at {self.cfg.api}: start it with `make run` ({exc.__class__.__name__})") from None
        if r.status_code != 200:
            raise DemoError(f"the stack at {self.cfg.api} is not healthy: {r.status_code} {r.text[:200]}")

    async def _register(self, p: DemoShipment) -> str:
        customer: dict[str, Any] = {"name": p.name, "email": p.email, "locale": "en-IN", "whatsapp_opt_in": False}
        if p.phone:
            customer["phone"] = p.phone
        body = {
            "merchant_id": MERCHANT,
            "order_id": f"ORD-{p.tracking_number}",
            "carrier": CARRIER,
            "tracking_number": p.tracking_number,
            "payment": {"mode": "cod" if len(p.name) % 2 else "prepaid", "amount": "1499.00", "currency": "INR"},
            "customer": customer,
            "address": {"line1": "12 MG Road", "city": "Bengaluru", "postal_code": "560001", "country": "IN"},
        }
        r = await self.http.post("/v1/shipments", json=body, headers=self.merchant())
        if r.status_code == 401:
            raise DemoError("the development merchant key was refused: is this the home `make run` uses?")
        if r.status_code not in (200, 201):
            raise DemoError(f"registering {p.tracking_number} failed: {r.status_code} {r.text[:300]}")
        return str(r.json()["shipment_id"])

    async def _scan(self, p: DemoShipment, milestone: str, at: datetime, reason: str | None) -> None:
        event = {
            "tracking_number": p.tracking_number,
            "event_id": f"{p.tracking_number}-{milestone}",
            "status": milestone,
            "ndr_reason": reason,
            "occurred_at": at.astimezone(IST).isoformat(timespec="seconds"),
            "location": "Bengaluru",
            "raw_code": milestone.upper(),
            "raw_status": milestone.replace("_", " "),
        }
        r = await self.http.post(f"/v1/carriers/{CARRIER}/events", json={"events": [event]}, headers=self.carrier())
        if r.status_code != 202:
            raise DemoError(f"the carrier scan {milestone} for {p.tracking_number} was refused: {r.status_code} {r.text[:300]}")
        # Each scan is applied before the next one arrives, as a real journey would be.
        await self._wait(p, lambda v: any(t.get("event_id") == event["event_id"] for t in v.get("timeline", [])), f"scan {milestone}")

    async def _sms(self, p: DemoShipment, text: str) -> None:
        """What Twilio posts when the customer texts us, signed as Twilio signs it."""
        self.sms_count += 1
        params = {
            "AccountSid": "AC" + "0" * 32,
            "ApiVersion": "2010-04-01",
            "Body": text,
            "From": p.phone or "",
            "MessageSid": f"SM{self.run_id.lower()}{self.sms_count:04d}{secrets.token_hex(12)}",
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "To": "+15005550006",
        }
        signature = RequestValidator(self.twilio_token).compute_signature(self.public + TWILIO_INBOUND, params)
        r = await self.http.post(TWILIO_INBOUND, content=urlencode(params),
                                 headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
        if r.status_code == 403:
            raise DemoError("the inbound SMS webhook refused our signature: pass --public-url if NDRFLOW_PUBLIC_BASE_URL "
                            "is not the API URL, and use the stack's NDRFLOW_TWILIO_AUTH_TOKEN")
        if r.status_code != 200:
            raise DemoError(f"the inbound SMS webhook answered {r.status_code}: {r.text[:300]}")

    async def _wait(self, p: DemoShipment, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            r = await self.http.get(f"/v1/shipments/{p.shipment_id}", headers=self.merchant())
            if r.status_code != 200:
                return None
            p.view = r.json()
            return p.view if check(p.view) else None

        return await _eventually(probe, f"{p.name}: {what}", self.cfg.timeout_s)

    # ---- the report -------------------------------------------------------------------------------
    def _report(self, result: DemoResult) -> None:
        table = Table(title=f"ndrflow demo run {result.run_id}", show_lines=False)
        for col in ("Customer", "Tracking", "Status", "NDR case", "What happened"):
            table.add_column(col)
        for p in result.shipments:
            case = p.case
            state = f"{case['state']} ({case['reason']})" if case else ""
            table.add_row(p.name, p.tracking_number, str(p.view.get("status", "")), state, p.note)
        self.console.print(table)
        api = self.cfg.api.rstrip("/")
        self.console.print("[bold]Where to look[/bold]")
        self.console.print(f"  Outbox (every message sent)   {api}/dev/outbox")
        self.console.print(f"  Agent dashboard               {api}/agent   (sign in with the agent key from `make run`)")
        self.console.print(f"  Temporal UI                   {self.cfg.temporal_ui.rstrip('/')}/namespaces/default/workflows")
        self.console.print(f"  A shipment, as JSON           {api}/v1/shipments/{result.ndr[0].shipment_id}  (merchant key)")
        for line in result.problems():
            self.console.print(f"[red]not as expected:[/red] {line}")


def _case_state(view: dict[str, Any]) -> str | None:
    cases = view.get("ndr_cases") or []
    return cases[-1]["state"] if cases else None


async def _eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.25)


async def run_demo(cfg: DemoConfig, console: Console | None = None) -> DemoResult:
    return await Demo(cfg, console or Console()).run()
