"""The agents' queue: Temporal visibility (which workflows need a person, by search attributes)
joined with the store (what the shipment is, and since when it has needed attention).

Visibility is the source of truth for *which* workflows are stuck: the workflow sets
`NeedsAttention` and `AttentionReason` (workflows/search.py) when it raises or clears its flag.
The store adds what visibility cannot hold (tracking number, order id: not personal data, but not
search attributes either) and the attention record (raised_at = "since", detail).

Filter values are validated before they reach a query (unknown reason, malformed carrier or
merchant id -> 422) and then quoted with `visibility_literal`, so a value can never change the
query's shape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from store import agents as agent_store
from store.models import Shipment, as_utc
from workflows import search
from workflows.ids import WORKFLOW_PREFIX, shipment_id_from_workflow_id
from workflows.messages import ATTENTION_REASONS

# Same alphabets as registration (api/schemas.py ID_PATTERN, carrier pattern): ids never hold quotes.
MERCHANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
CARRIER_RE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50

REASON_LABELS = {
    "no_tracking_update": "No tracking update",
    "reply_window_passed": "Reply window passed",
    "carrier_rejected": "Carrier rejected instruction",
    "carrier_unreachable": "Carrier unreachable",
    "carrier_did_not_act": "Carrier did not act",
    "channels_failed": "All channels failed",
    "unparsed_replies": "Replies not understood",
    "suspected_fake_attempt": "Suspected fake attempt",
    "customer_disputes_attempt": "Customer disputes attempt",
    "ndr_rule_review": "Rule asks for review",
    "activity_failing": "Activity failing",
}


class FilterError(ValueError):
    """A filter value we refuse; the message names the parameter."""


def reason_label(reason: str | None) -> str:
    if not reason:
        return "—"
    return REASON_LABELS.get(reason, reason.replace("_", " "))


def visibility_literal(value: str) -> str:
    """A single-quoted string literal for a visibility query.

    Temporal's parser takes a doubled quote as a quote on every visibility store; backslashes are
    interpreted differently by the SQL and Elasticsearch stores, so they (and control characters)
    are refused rather than guessed at. Callers validate values first; this is the last line."""
    if "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise FilterError(f"value {value!r} holds a backslash or control character")
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class CaseFilters:
    needs_attention: bool = True
    reason: str | None = None
    carrier: str | None = None
    merchant: str | None = None

    @classmethod
    def parse(
        cls,
        *,
        needs_attention: bool = True,
        reason: str | None = None,
        carrier: str | None = None,
        merchant: str | None = None,
    ) -> CaseFilters:
        reason, carrier, merchant = (v.strip() if v else None for v in (reason, carrier, merchant))
        if reason and reason not in ATTENTION_REASONS:
            raise FilterError(
                f"reason: unknown attention reason {reason!r}; expected one of {', '.join(ATTENTION_REASONS)}"
            )
        if carrier and not CARRIER_RE.match(carrier):
            raise FilterError(f"carrier: {carrier!r} is not a carrier code (lowercase letters, digits, '_')")
        if merchant and not MERCHANT_RE.match(merchant):
            raise FilterError(
                f"merchant: {merchant!r} is not a merchant id (letters, digits, '.', '_', ':', '/', '-')"
            )
        return cls(
            needs_attention=needs_attention,
            reason=reason or None,
            carrier=carrier or None,
            merchant=merchant or None,
        )

    def query(self, *, with_reason: bool = True) -> str:
        parts = [f"{search.NEEDS_ATTENTION.name} = {'true' if self.needs_attention else 'false'}"]
        if with_reason and self.reason:
            parts.append(f"{search.ATTENTION_REASON.name} = {visibility_literal(self.reason)}")
        if self.carrier:
            parts.append(f"{search.CARRIER.name} = {visibility_literal(self.carrier)}")
        if self.merchant:
            parts.append(f"{search.MERCHANT_ID.name} = {visibility_literal(self.merchant)}")
        parts.append("ExecutionStatus = 'Running'")
        return " AND ".join(parts)


def encode_page_token(token: bytes | None) -> str | None:
    return base64.urlsafe_b64encode(token).decode().rstrip("=") if token else None


def decode_page_token(token: str | None) -> bytes | None:
    if not token:
        return None
    if len(token) > 4096 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise FilterError("page_token: not a token from a previous page")
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise FilterError("page_token: not a token from a previous page") from None


@dataclass
class CaseItem:
    shipment_id: str
    workflow_id: str
    reason: str | None
    since: str | None  # when attention was raised (the open attention record), ISO UTC
    detail: str = ""
    merchant_id: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    order_id: str | None = None
    status: str | None = None  # ShipmentStatus
    ndr_state: str | None = None
    ndr_attempts: int | None = None
    last_event_at: str | None = None
    started_at: str | None = None

    @property
    def reason_label(self) -> str:
        return reason_label(self.reason)


@dataclass
class CasesPage:
    items: list[CaseItem] = field(default_factory=list)
    next_page_token: str | None = None
    query: str = ""


async def list_cases(
    client: Client,
    session: Session,
    filters: CaseFilters,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    page_token: str | None = None,
) -> CasesPage:
    query = filters.query()
    token = decode_page_token(page_token)
    it = client.list_workflows(query=query, page_size=page_size, next_page_token=token)
    try:
        await it.fetch_next_page()
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT and token is not None:
            raise FilterError("page_token: not a token from a previous page (or it expired)") from None
        raise
    executions = [w for w in (it.current_page or []) if w.id.startswith(WORKFLOW_PREFIX)]
    items = join_store(session, executions)
    return CasesPage(items=items, next_page_token=encode_page_token(it.next_page_token), query=query)


def join_store(session: Session, executions: list[Any]) -> list[CaseItem]:
    """Visibility rows + shipments (by workflow id) + open attention records (by shipment id)."""
    wf_ids = [w.id for w in executions]
    rows = (
        {
            r.workflow_id: r
            for r in session.exec(select(Shipment).where(col(Shipment.workflow_id).in_(wf_ids))).all()
        }
        if wf_ids
        else {}
    )
    sids = [rows[w].shipment_id if w in rows else shipment_id_from_workflow_id(w) for w in wf_ids]
    records = {r.shipment_id: r for r in agent_store.open_attention(session, shipment_ids=sids)}
    items = []
    for w, sid in zip(executions, sids, strict=True):
        attrs = w.typed_search_attributes
        row = rows.get(w.id)
        reason = attrs.get(search.ATTENTION_REASON)
        rec = records.get(sid)
        # Visibility's LastEventAt may lag by scans that changed nothing else (the workflow does
        # not spend a history event on those); the API keeps the store's copy at the newest scan.
        last = max((as_utc(t) for t in (attrs.get(search.LAST_EVENT_AT), row.last_event_at if row else None) if t), default=None)
        items.append(
            CaseItem(
                shipment_id=sid,
                workflow_id=w.id,
                reason=reason,
                # The record is the "since" only when it is about the reason visibility shows.
                since=_iso(rec.raised_at)
                if rec is not None and (reason is None or rec.reason == reason)
                else None,
                detail=rec.detail if rec is not None and (reason is None or rec.reason == reason) else "",
                merchant_id=attrs.get(search.MERCHANT_ID) or (row.merchant_id if row else None),
                carrier=attrs.get(search.CARRIER) or (row.carrier if row else None),
                tracking_number=row.tracking_number if row else None,
                order_id=row.order_id if row else None,
                status=attrs.get(search.SHIPMENT_STATUS) or (row.status if row else None),
                ndr_state=attrs.get(search.NDR_STATE) or (row.ndr_state if row else None),
                ndr_attempts=attrs.get(search.NDR_ATTEMPTS),
                last_event_at=_iso(last) if last else None,
                started_at=_iso(w.start_time) if getattr(w, "start_time", None) else None,
            )
        )
    return items


@dataclass
class CaseCounts:
    total: int
    by_reason: dict[str, int]
    other: int  # flagged with a reason outside ATTENTION_REASONS (or none)


async def count_cases(client: Client, filters: CaseFilters) -> CaseCounts:
    """One count per reason: visibility's GROUP BY only takes ExecutionStatus (refused for
    AttentionReason on the dev server's SQL store), and the reasons are a short fixed list."""
    base = CaseFilters(needs_attention=True, carrier=filters.carrier, merchant=filters.merchant)
    queries = [base.query()] + [
        CaseFilters(True, r, filters.carrier, filters.merchant).query() for r in ATTENTION_REASONS
    ]
    counts = await asyncio.gather(*(client.count_workflows(q) for q in queries))
    total = counts[0].count
    by_reason = {r: c.count for r, c in zip(ATTENTION_REASONS, counts[1:], strict=True)}
    return CaseCounts(total=total, by_reason=by_reason, other=max(0, total - sum(by_reason.values())))


def _iso(value: datetime | str) -> str:
    return value if isinstance(value, str) else value.isoformat()
