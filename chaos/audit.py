"""The audit's counting, pure (no I/O): what should have happened vs what the store, the outbox
and the fake carrier recorded.

Message keys are (shipment_id, purpose, channel). A key may be expected more than once (an NDR
journey goes out for delivery twice). Only purposes whose sending does not depend on timing are
*required* (see `expected_messages`); other milestone messages may be skipped as stale when the
worker catches up after a kill (workflows/notify_policy.still_true), so they are only held to
"never more than the journey allows".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

MessageKey = tuple[str, str, str]  # (shipment_id, purpose, channel)

NDR_KINDS = frozenset({"ndr_1", "ndr_2day", "ndr_free", "ndr_none"})
DECIDING_KINDS = frozenset({"ndr_1", "ndr_2day", "ndr_free"})


@dataclass(frozen=True)
class JourneyFacts:
    shipment_id: str
    tracking_number: str
    kind: str  # bench.journeys.KINDS
    whatsapp_opt_in: bool
    milestones: tuple[str, ...] = ()  # distinct scans as the API parses them, in scan order


def first_channel(whatsapp_opt_in: bool) -> str:
    """The default policy's chain is whatsapp → sms → email; the outbox never fails, so the
    first usable channel is the one used (every journey's customer has a valid mobile)."""
    return "whatsapp" if whatsapp_opt_in else "sms"


def expected_messages(journeys: Iterable[JourneyFacts]) -> tuple[Counter[MessageKey], Counter[MessageKey]]:
    """(required, allowed): required messages must be in the outbox exactly that many times;
    allowed says how many times any message may appear at most (absent key: once)."""
    required: Counter[MessageKey] = Counter()
    allowed: Counter[MessageKey] = Counter()
    for j in journeys:
        ch = first_channel(j.whatsapp_opt_in)
        required[(j.shipment_id, "delivered", ch)] += 1
        if j.kind in DECIDING_KINDS:
            # The customer answered it, so it must have been sent. A silent customer's question
            # may go stale before a restarted worker gets to it (the carrier reattempted).
            required[(j.shipment_id, "ndr_ask", ch)] += 1
        elif j.kind in NDR_KINDS:
            allowed[(j.shipment_id, "ndr_ask", ch)] = 1
        for m, n in Counter(j.milestones).items():
            allowed[(j.shipment_id, m, ch)] = max(allowed[(j.shipment_id, m, ch)], n)
    for k, n in required.items():
        allowed[k] = max(allowed[k], n)
    return required, allowed


def count_messages(
    required: Mapping[MessageKey, int],
    allowed: Mapping[MessageKey, int],
    sent: Iterable[MessageKey],
    pending: Collection[str] = (),
) -> dict[str, int]:
    """`pending`: shipment ids whose workflow still had work in flight when the audit ran (an
    activity waiting for its retry, an unprocessed workflow task). A required message missing
    there is counted as pending, not lost: the run ended before it could be sent."""
    actual = Counter(sent)
    waiting = set(pending)
    expected_n = sum(required.values())
    delivered = sum(min(actual.get(k, 0), n) for k, n in required.items())
    missing = {k: max(0, n - actual.get(k, 0)) for k, n in required.items()}
    lost = sum(n for k, n in missing.items() if k[0] not in waiting)
    duplicated = sum(max(0, n - max(allowed.get(k, 1), required.get(k, 0), 1)) for k, n in actual.items())
    return {
        "messages_expected": expected_n,
        "messages_sent": delivered,
        "messages_duplicated": duplicated,
        "messages_lost": lost,
        "messages_pending": sum(n for k, n in missing.items() if k[0] in waiting),
        "messages_total_rows": sum(actual.values()),
    }


def count_instructions(
    expected: Iterable[str], received: Iterable[str], pending: Collection[str] = ()
) -> dict[str, int]:
    """`expected`: tracking numbers whose customer decided; `received`: the tracking number of
    every instruction the carrier accepted (one entry per accepted request); `pending`: tracking
    numbers whose workflow still had work in flight (a missing instruction there is pending)."""
    want = set(expected)
    got = Counter(received)
    waiting = set(pending)
    return {
        "instructions_expected": len(want),
        "instructions_received": sum(1 for t in want if got.get(t, 0) >= 1),
        "instructions_duplicated": sum(n - 1 for n in got.values() if n > 1),
        "instructions_lost": sum(1 for t in want if got.get(t, 0) == 0 and t not in waiting),
        "instructions_pending": sum(1 for t in want if got.get(t, 0) == 0 and t in waiting),
        "instructions_unexpected": sum(n for t, n in got.items() if t not in want),
    }


def wrong_final_states(expected: Mapping[str, str], actual: Mapping[str, str]) -> dict[str, str]:
    """Tracking number → the status found (or "missing") where it is not the expected one."""
    return {t: actual.get(t, "missing") for t, want in expected.items() if actual.get(t) != want}
