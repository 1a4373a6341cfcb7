"""Our normalized shipment vocabulary: milestones, NDR reasons and canonical NDR actions.

Pure code, no I/O. Values follow `shared/reference/carriers.md` sections 1.1-1.3; every carrier
adapter maps its raw codes onto these, and the workflow, policies and API speak only these.
"""

from __future__ import annotations

from enum import StrEnum


class Milestone(StrEnum):
    created = "created"
    pickup_failed = "pickup_failed"
    picked_up = "picked_up"
    in_transit = "in_transit"
    out_for_delivery = "out_for_delivery"
    delivery_failed = "delivery_failed"
    ready_for_pickup = "ready_for_pickup"
    on_hold = "on_hold"
    delivered = "delivered"
    rto_initiated = "rto_initiated"
    rto_in_transit = "rto_in_transit"
    rto_delivered = "rto_delivered"
    cancelled = "cancelled"
    lost = "lost"
    damaged = "damaged"
    unknown = "unknown"


TERMINAL_MILESTONES: frozenset[Milestone] = frozenset(
    {Milestone.delivered, Milestone.rto_delivered, Milestone.cancelled, Milestone.lost, Milestone.damaged}
)

# Progress rank used by the state machine: an event whose milestone ranks lower than the
# current status never moves the shipment backwards. The forward leg loops between
# out_for_delivery / delivery_failed / on_hold / ready_for_pickup (a reattempt after an NDR
# goes out for delivery again), so those share one rank and move freely among themselves,
# ordered by the carrier's timestamp. Once a return starts (rto_*) the forward leg is over.
MILESTONE_RANK: dict[Milestone, int] = {
    Milestone.created: 0,
    Milestone.pickup_failed: 1,
    Milestone.picked_up: 2,
    Milestone.in_transit: 3,
    Milestone.out_for_delivery: 4,
    Milestone.delivery_failed: 4,
    Milestone.ready_for_pickup: 4,
    Milestone.on_hold: 4,
    Milestone.rto_initiated: 6,
    Milestone.rto_in_transit: 7,
    Milestone.delivered: 10,
    Milestone.rto_delivered: 10,
    Milestone.cancelled: 10,
    Milestone.lost: 10,
    Milestone.damaged: 10,
}


class NdrReason(StrEnum):
    customer_unavailable = "customer_unavailable"
    customer_unreachable = "customer_unreachable"
    address_issue = "address_issue"
    reschedule_requested = "reschedule_requested"
    payment_issue = "payment_issue"
    premises_closed = "premises_closed"
    access_restricted = "access_restricted"
    verification_failed = "verification_failed"
    self_collect_requested = "self_collect_requested"
    open_delivery_requested = "open_delivery_requested"
    customer_refused = "customer_refused"
    order_cancelled_by_customer = "order_cancelled_by_customer"
    out_of_delivery_area = "out_of_delivery_area"
    not_attempted = "not_attempted"
    other = "other"
    unknown = "unknown"


class NdrAction(StrEnum):
    """Canonical instructions we can send a carrier (reference 1.3)."""

    reattempt = "reattempt"
    reschedule = "reschedule"
    update_address = "update_address"
    update_phone = "update_phone"
    rto = "rto"
    hold_for_pickup = "hold_for_pickup"


# Which reasons a customer's answer can turn into a successful re-attempt (reference 1.2),
# and which actions we offer the customer for each. "partly" reasons are asked to confirm.
CUSTOMER_ACTIONS: dict[NdrReason, tuple[NdrAction, ...]] = {
    NdrReason.customer_unavailable: (NdrAction.reattempt, NdrAction.reschedule, NdrAction.update_address, NdrAction.update_phone, NdrAction.rto),
    NdrReason.customer_unreachable: (NdrAction.update_phone, NdrAction.reattempt, NdrAction.reschedule, NdrAction.update_address, NdrAction.rto),
    NdrReason.address_issue: (NdrAction.update_address, NdrAction.update_phone, NdrAction.reattempt, NdrAction.reschedule, NdrAction.rto),
    NdrReason.reschedule_requested: (NdrAction.reschedule, NdrAction.reattempt, NdrAction.update_address, NdrAction.update_phone, NdrAction.rto),
    NdrReason.payment_issue: (NdrAction.reschedule, NdrAction.reattempt, NdrAction.rto),
    NdrReason.premises_closed: (NdrAction.reschedule, NdrAction.reattempt, NdrAction.update_address, NdrAction.rto),
    NdrReason.access_restricted: (NdrAction.update_address, NdrAction.update_phone, NdrAction.reattempt, NdrAction.reschedule, NdrAction.rto),
    NdrReason.verification_failed: (NdrAction.reattempt, NdrAction.reschedule, NdrAction.update_phone, NdrAction.rto),
    NdrReason.self_collect_requested: (NdrAction.hold_for_pickup, NdrAction.reattempt, NdrAction.reschedule, NdrAction.rto),
    NdrReason.open_delivery_requested: (NdrAction.reattempt, NdrAction.reschedule, NdrAction.rto),
    NdrReason.customer_refused: (NdrAction.reattempt, NdrAction.reschedule, NdrAction.rto),
}


def is_customer_actionable(reason: NdrReason | str) -> bool:
    return NdrReason(reason) in CUSTOMER_ACTIONS


def allowed_customer_actions(reason: NdrReason | str) -> tuple[NdrAction, ...]:
    return CUSTOMER_ACTIONS.get(NdrReason(reason), ())


def parse_milestone(value: str | None) -> Milestone:
    """Map a string to a milestone; anything unrecognised is `unknown` (never raises)."""
    try:
        return Milestone(value or "unknown")
    except ValueError:
        return Milestone.unknown


def parse_ndr_reason(value: str | None) -> NdrReason | None:
    if value is None or value == "":
        return None
    try:
        return NdrReason(value)
    except ValueError:
        return NdrReason.unknown
