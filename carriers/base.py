"""What every carrier adapter shares: the webhook request, errors, problems, code tables,
signature helpers, time conversion and the outbound HTTP call with our retry semantics.

Every adapter module (`carriers/<slug>.py`) has the same shape:

- ``CODE``: the slug used in ``POST /v1/carriers/{CODE}/events``;
- ``TrackingStatus`` / ``IncidentReason``: pure code tables (enum members list raw codes);
- ``verify_webhook(req, secret) -> None``: raises ``WebhookAuthError``;
- ``parse_webhook(req) -> (events, problems)``: raises ``WebhookFormatError`` on a malformed body,
  never on an unknown code (that becomes milestone ``unknown`` plus a ``Problem``);
- ``supported_actions`` and ``async send_instruction(inp, cfg, http) -> InstructionResult``;
- ``async poll_tracking(tracking_number, cfg, http) -> list[CarrierEvent]``.

Outbound semantics (all adapters): every call has a timeout; a timeout, connection error, 429 or
5xx raises ``CarrierUnavailable`` (Temporal retries the activity with backoff); any other 4xx is a
recorded rejection (``status="rejected"``), never retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import Enum
from typing import Any, Protocol

import httpx

from domain.events import CarrierEvent, normalise_time
from domain.instructions import InstructionResult, SendInstructionInput
from domain.taxonomy import NdrReason

# India has no daylight saving time, so a fixed offset is exact and needs no tz database.
IST = timezone(timedelta(hours=5, minutes=30), "IST")

# Problem codes the API counts per (carrier, raw code) in store.carriers.unknown_carrier_codes.
UNKNOWN_STATUS = "unknown_status"
UNKNOWN_REASON = "unknown_reason"
COUNTED_PROBLEMS = frozenset({UNKNOWN_STATUS, UNKNOWN_REASON})


# --- inbound ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookRequest:
    """The raw request as received. Signatures are checked against `body` exactly as sent."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased
    query: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Header names are case-insensitive on the wire; store them lower-cased once.
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})
        object.__setattr__(self, "query", dict(self.query))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class WebhookAuthError(Exception):
    """Missing, malformed or wrong signature/secret (the API answers 401 or 403)."""


class WebhookFormatError(Exception):
    """The body is not what the carrier documents (the API answers 422 with this message)."""


@dataclass
class Problem:
    """Something in an accepted payload we could not map (kept, counted, shown to agents)."""

    code: str  # UNKNOWN_STATUS | UNKNOWN_REASON | unmapped_subtag | ...
    message: str
    raw_code: str | None = None


class CarrierUnavailable(Exception):
    """Timeout, connection failure, 429 or 5xx: retryable (Temporal retries with backoff)."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class CodeTable(Enum):
    """Karrio-style code table: each member's value is the tuple of raw codes that map to it.

    Member names are our taxonomy values (a Milestone or an NdrReason); `unknown` is explicit
    and lists no codes. Lookups are exact after `normalise_code`.
    """

    @classmethod
    def find(cls, code: str | int | None) -> CodeTable | None:
        if code is None:
            return None
        key = normalise_code(code)
        for member in cls:
            if key in {normalise_code(c) for c in member.value}:
                return member
        return None

    @classmethod
    def all_codes(cls) -> list[str]:
        return [c for member in cls for c in member.value]


def normalise_code(code: str | int) -> str:
    return " ".join(str(code).split()).lower()


# --- signatures ---------------------------------------------------------------------------------


def require_secret(secret: str | None, carrier: str) -> bytes:
    """No secret configured means we cannot verify, so we refuse (never accept unverified)."""
    if not secret:
        raise WebhookAuthError(f"no webhook secret is configured for carrier {carrier!r}; refusing")
    return secret.encode()


def hmac_sha256(secret: bytes, body: bytes) -> bytes:
    return hmac.new(secret, body, hashlib.sha256).digest()


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison of two strings or byte strings."""
    ab = a.encode() if isinstance(a, str) else a
    bb = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(ab, bb)


def check_shared_secret(req: WebhookRequest, header: str, secret: str | None, carrier: str) -> None:
    """For carriers that send a static shared secret in a header instead of a signature."""
    expected = require_secret(secret, carrier)
    got = req.header(header)
    if not got:
        raise WebhookAuthError(f"missing {header} header")
    if not same(got.strip().encode(), expected):
        raise WebhookAuthError(f"wrong {header} header")


# --- parsing helpers ----------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WebhookFormatError(f"body is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise WebhookFormatError(f"body is not valid JSON: {exc.msg} at position {exc.pos}") from exc


def require_obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookFormatError(f"{where} must be a JSON object")
    return value


def require_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # AWBs are sometimes sent as numbers
    if not isinstance(value, str) or not value.strip():
        raise WebhookFormatError(f"{where}.{key} is required (non-empty string)")
    return value.strip()


def opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def hashed_event_id(carrier: str, waybill: str, code: str, timestamp: str) -> str:
    """For carriers without an event id: the same scan delivered twice gets the same id."""
    digest = hashlib.sha256(f"{carrier}\x1f{waybill}\x1f{code}\x1f{timestamp}".encode()).hexdigest()
    return f"h-{digest[:32]}"


def to_utc(
    value: str | int | float, *, local: tzinfo, formats: tuple[str, ...] = (), where: str = "time"
) -> str:
    """Parse a carrier timestamp into our UTC ISO form.

    A value with an offset keeps it; a naive value is the carrier's local time (`local`), never UTC.
    Numbers are unix seconds. `formats` are extra strptime formats tried after ISO-8601.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return normalise_time(datetime.fromtimestamp(float(value), tz=UTC))
    if not isinstance(value, str) or not value.strip():
        raise WebhookFormatError(f"{where} is required")
    text = value.strip()
    dt: datetime | None = None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        for fmt in formats:
            try:
                dt = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if dt is None:
        raise WebhookFormatError(f"{where} {text!r} is not a recognised timestamp")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=local)
    return normalise_time(dt)


# Carrier free text -> NDR reason, for carriers whose codes don't carry one (Shiprocket,
# AfterShip AttemptFail_001) and as the second key after Delhivery's NSL code (reference 1.2).
# First match wins, so the more specific phrases come first.
_REASON_PHRASES: tuple[tuple[NdrReason, tuple[str, ...]], ...] = (
    (
        NdrReason.out_of_delivery_area,
        ("out of delivery area", "non serviceable", "non-serviceable", "oda ", "(oda)"),
    ),
    (
        NdrReason.order_cancelled_by_customer,
        ("cancelled by customer", "canceled by customer", "customer cancelled", "order cancelled", "cancel"),
    ),
    (NdrReason.customer_refused, ("refused", "rejected by customer", "reject", "not accepted")),
    (NdrReason.open_delivery_requested, ("open delivery", "open box", "wants to inspect", "inspect")),
    (NdrReason.verification_failed, ("otp", "id proof", "verification")),
    (NdrReason.self_collect_requested, ("self collect", "self-collect", "will collect", "collect from")),
    (NdrReason.payment_issue, ("cash not ready", "cod amount", "payment", "no cash", "amount dispute")),
    (
        NdrReason.reschedule_requested,
        ("future delivery", "reschedul", "deliver later", "delivery on ", "requested delivery"),
    ),
    (
        NdrReason.customer_unreachable,
        (
            "not reachable",
            "unreachable",
            "not answering",
            "not responding",
            "switched off",
            "wrong number",
            "not contactable",
            "phone",
        ),
    ),
    (
        NdrReason.access_restricted,
        ("entry restricted", "entry not allowed", "no entry", "security", "gated", "restricted"),
    ),
    (
        NdrReason.premises_closed,
        ("office closed", "shop closed", "premises closed", "door locked", "holiday", "closed"),
    ),
    (NdrReason.not_attempted, ("not attempted", "no attempt", "could not attempt", "unattempted")),
    (
        NdrReason.customer_unavailable,
        ("not available", "unavailable", "not home", "not at home", "out of station", "nobody"),
    ),
    (
        NdrReason.address_issue,
        ("address", "not locatable", "location not found", "landmark", "customer moved", "shifted"),
    ),
)


def reason_from_text(text: str | None) -> NdrReason | None:
    if not text:
        return None
    lowered = " ".join(text.lower().split()) + " "
    for reason, phrases in _REASON_PHRASES:
        if any(p in lowered for p in phrases):
            return reason
    return None


def make_event(carrier: str, **kw: Any) -> CarrierEvent:
    return CarrierEvent(carrier=carrier, **kw)


# --- outbound -----------------------------------------------------------------------------------


class CarrierAdapter(Protocol):
    """The shape every `carriers/<slug>.py` module has (modules satisfy it structurally)."""

    CODE: str
    supported_actions: frozenset[str]

    def verify_webhook(self, req: WebhookRequest, secret: str) -> None: ...

    def parse_webhook(self, req: WebhookRequest) -> tuple[list[CarrierEvent], list[Problem]]: ...

    async def send_instruction(
        self, inp: SendInstructionInput, cfg: Any, http: httpx.AsyncClient
    ) -> InstructionResult: ...

    async def poll_tracking(
        self, tracking_number: str, cfg: Any, http: httpx.AsyncClient
    ) -> list[CarrierEvent]: ...


async def call(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    carrier: str,
    timeout: float,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call with our failure semantics: returns 2xx and rejecting 4xx responses; raises
    CarrierUnavailable on timeouts, connection errors, 429 and 5xx (those are worth retrying)."""
    try:
        resp = await http.request(method, url, timeout=timeout, **kwargs)
    except httpx.TimeoutException as exc:
        raise CarrierUnavailable(f"{carrier}: {method} {_path(url)} timed out after {timeout:g}s") from exc
    except httpx.TransportError as exc:
        raise CarrierUnavailable(
            f"{carrier}: {method} {_path(url)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if resp.status_code >= 500 or resp.status_code == 429:
        raise CarrierUnavailable(
            f"{carrier}: {method} {_path(url)} answered {resp.status_code}: {short(resp.text)}",
            http_status=resp.status_code,
        )
    return resp


def _path(url: str) -> str:
    # Never log query strings: ClickPost puts its licence key there.
    return httpx.URL(url).path


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rejected(resp: httpx.Response, carrier: str, detail: str = "") -> InstructionResult:
    return InstructionResult(
        status="rejected",
        detail=detail or f"{carrier} answered {resp.status_code}: {short(resp.text)}",
        http_status=resp.status_code,
    )


def unsupported(carrier: str, action: str, why: str = "") -> InstructionResult:
    return InstructionResult(
        status="unsupported",
        detail=f"{carrier} cannot {action}" + (f": {why}" if why else ""),
    )


def response_json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def national_in(phone: str | None) -> str | None:
    """E.164 Indian number -> the 10-digit national form Indian carriers expect."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    if phone.startswith("+91") and len(digits) == 12:
        return digits[2:]
    if len(digits) == 10:
        return digits
    return phone


def address_line(address: Mapping[str, Any] | None) -> str:
    if not address:
        return ""
    parts = [address.get(k) for k in ("line1", "line2", "city", "state", "postal_code")]
    return ", ".join(str(p) for p in parts if p)
