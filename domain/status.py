"""The shipment status state machine (pure).

Carriers deliver at least once and out of order. The rules:
- a duplicate (same carrier event id, or same raw code and time) is ignored entirely;
- `unknown` is kept in the timeline but never changes status;
- an event that ranks below the current status, or is older than the event that set it, is kept
  in the timeline but does not change status (late scans never move a shipment backwards);
- a terminal status is never left.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.taxonomy import MILESTONE_RANK, TERMINAL_MILESTONES, Milestone


@dataclass(frozen=True)
class Transition:
    duplicate: bool
    applies: bool  # True when the event changes the shipment's status
    why: str


def event_dedupe_key(carrier: str, event_id: str | None, raw_code: str | None, occurred_at: str, milestone: str) -> str:
    """Carrier event ids are the primary key; without one, (code, time) identifies the scan."""
    if event_id:
        return f"{carrier}:id:{event_id}"
    return f"{carrier}:at:{raw_code or milestone}@{occurred_at}"


def decide(
    current: Milestone,
    current_at: str | None,
    new: Milestone,
    new_at: str,
) -> Transition:
    """Whether an event moves the status. Timestamps are ISO-8601 strings normalised to UTC."""
    if new is Milestone.unknown:
        return Transition(False, False, "unknown code: kept, status unchanged")
    if current in TERMINAL_MILESTONES:
        return Transition(False, False, f"status {current} is terminal")
    if MILESTONE_RANK[new] < MILESTONE_RANK[current]:
        return Transition(False, False, f"{new} is behind {current}")
    if MILESTONE_RANK[new] == MILESTONE_RANK[current] and current_at is not None and new_at < current_at:
        return Transition(False, False, f"older than the scan that set {current}")
    return Transition(False, True, "advances")
