"""Properties of the status state machine under any delivery carriers can produce.

The machine here is exactly what ShipmentWorkflow does with a batch of carrier events: drop
events whose `event_dedupe_key` was seen, apply the rest in carrier-time order through
`domain.status.decide`. Arrival is arbitrary: events split into batches in any order, with
duplicates (same event id, possibly resent with other fields).

What holds, stated precisely:

1. Monotone: along any delivery, the status's rank never decreases.
2. Terminal is absorbing: once a terminal milestone is the status, status and its time never
   change again.
3. `unknown` and already-seen events never change anything.
4. Liveness: an event ranked above a non-terminal status always moves the status to it.
5. Order independence, where it is true: if the events carry at most one distinct terminal
   milestone, and (when none is terminal) the highest-ranked events have one latest time or
   agree on the milestone at it, then every arrival order ends in the same status as the
   sorted, deduplicated sequence, namely: the terminal milestone if there is one, else the
   latest of the highest-ranked events.
   It is NOT true without those conditions, by design: the first terminal milestone to arrive
   wins (delivered then lost stays delivered, and the reverse stays lost), and two same-rank
   milestones at the same instant are ordered by arrival. The last two tests pin that down.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.events import CarrierEvent
from domain.status import decide, event_dedupe_key
from domain.taxonomy import MILESTONE_RANK, TERMINAL_MILESTONES, Milestone, parse_milestone

MILESTONES = list(Milestone)
TIMES = [f"2026-11-{d:02d}T{h:02d}:00:00.000000Z" for d in (26, 27, 28) for h in (3, 9, 15)]


@dataclass
class Machine:
    status: Milestone = Milestone.created
    status_at: str | None = None
    seen: set[str] = field(default_factory=set)
    history: list[tuple[Milestone, str | None]] = field(default_factory=list)

    def deliver(self, batch: list[CarrierEvent]) -> None:
        # As ShipmentWorkflow._apply_pending: carrier-time order within a batch, dedupe, decide.
        for ev in sorted(batch, key=lambda e: e.occurred_at):
            key = event_dedupe_key(ev.carrier, ev.event_id, ev.raw_code, ev.occurred_at, ev.milestone)
            if key in self.seen:
                self.history.append((self.status, self.status_at))
                continue
            self.seen.add(key)
            verdict = decide(self.status, self.status_at, parse_milestone(ev.milestone), ev.occurred_at)
            if verdict.applies:
                self.status, self.status_at = parse_milestone(ev.milestone), ev.occurred_at
            self.history.append((self.status, self.status_at))


def run(batches: list[list[CarrierEvent]]) -> Machine:
    m = Machine()
    for batch in batches:
        m.deliver(batch)
    return m


def event(milestone: Milestone, at: str, event_id: str | None) -> CarrierEvent:
    return CarrierEvent(
        carrier="generic",
        tracking_number="T1",
        milestone=milestone.value,
        occurred_at=at,
        event_id=event_id,
        raw_code=milestone.value.upper(),
    )


# Small id and time pools so duplicates and ties are common, not lucky.
any_event = st.builds(
    event,
    st.sampled_from(MILESTONES),
    st.sampled_from(TIMES),
    st.one_of(st.none(), st.sampled_from([f"e{i}" for i in range(6)])),
)


@st.composite
def deliveries(
    draw: st.DrawFn, events: st.SearchStrategy[list[CarrierEvent]] | None = None
) -> list[list[CarrierEvent]]:
    """An arrival: the events (each at least once), duplicated and shuffled, cut into batches."""
    evs = draw(events if events is not None else st.lists(any_event, max_size=12))
    dupes = draw(st.lists(st.sampled_from(evs), max_size=6)) if evs else []
    arrival = draw(st.permutations(evs + dupes))
    cuts = (
        sorted(draw(st.sets(st.integers(1, max(1, len(arrival) - 1)), max_size=4)))
        if len(arrival) > 1
        else []
    )
    bounds = [0, *cuts, len(arrival)]
    return [list(arrival[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if arrival[a:b]]


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_rank_never_decreases(batches: list[list[CarrierEvent]]) -> None:
    ranks = [MILESTONE_RANK[s] for s, _ in run(batches).history]
    assert ranks == sorted(ranks)


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_terminal_status_is_never_left(batches: list[list[CarrierEvent]]) -> None:
    history = run(batches).history
    for i, (status, at) in enumerate(history):
        if status in TERMINAL_MILESTONES:
            assert all(later == (status, at) for later in history[i:])
            break


@settings(max_examples=200, deadline=None)
@given(deliveries(), st.sampled_from(TIMES), st.data())
def test_unknown_and_seen_events_change_nothing(
    batches: list[list[CarrierEvent]], at: str, data: st.DataObject
) -> None:
    m = run(batches)
    before = (m.status, m.status_at)
    m.deliver([event(Milestone.unknown, at, None)])
    assert (m.status, m.status_at) == before
    delivered = [e for b in batches for e in b]
    if delivered:
        # A carrier resending an event id with other fields (a corrected time, another code) is
        # still the same event.
        again = data.draw(st.sampled_from(delivered))
        resent = replace(again, occurred_at=data.draw(st.sampled_from(TIMES))) if again.event_id else again
        m.deliver([resent])
        assert (m.status, m.status_at) == before


@settings(max_examples=300, deadline=None)
@given(
    deliveries(),
    st.sampled_from([m for m in MILESTONES if m is not Milestone.unknown]),
    st.sampled_from(TIMES),
)
def test_a_higher_ranked_event_always_moves_a_non_terminal_status(
    batches: list[list[CarrierEvent]], milestone: Milestone, at: str
) -> None:
    m = run(batches)
    if m.status in TERMINAL_MILESTONES or MILESTONE_RANK[milestone] <= MILESTONE_RANK[m.status]:
        return
    m.deliver([event(milestone, at, "fresh-id")])
    assert (m.status, m.status_at) == (milestone, at)


# ---- order independence ----------------------------------------------------------------------
def distinct(events: list[CarrierEvent]) -> list[CarrierEvent]:
    """One event per dedupe key (ids made unique), as a carrier's full feed would hold them."""
    return [replace(e, event_id=f"u{i}") for i, e in enumerate(events)]


def order_independent(events: list[CarrierEvent]) -> bool:
    known = [e for e in events if e.milestone != Milestone.unknown]
    terminals = {e.milestone for e in known if Milestone(e.milestone) in TERMINAL_MILESTONES}
    if len(terminals) > 1:
        return False
    if terminals or not known:
        return True
    top = max(MILESTONE_RANK[Milestone(e.milestone)] for e in known)
    highest = [e for e in known if MILESTONE_RANK[Milestone(e.milestone)] == top]
    latest = max(e.occurred_at for e in highest)
    return len({e.milestone for e in highest if e.occurred_at == latest}) == 1


def expected_status(events: list[CarrierEvent]) -> Milestone:
    known = [e for e in events if e.milestone != Milestone.unknown]
    if not known:
        return Milestone.created
    terminal = [e for e in known if Milestone(e.milestone) in TERMINAL_MILESTONES]
    if terminal:
        return Milestone(terminal[0].milestone)
    top = max(MILESTONE_RANK[Milestone(e.milestone)] for e in known)
    return Milestone(
        max(
            (e for e in known if MILESTONE_RANK[Milestone(e.milestone)] == top), key=lambda e: e.occurred_at
        ).milestone
    )


feeds = st.lists(any_event, max_size=10).map(distinct).filter(order_independent)


@settings(max_examples=300, deadline=None)
@given(st.data(), feeds)
def test_any_arrival_order_ends_where_the_sorted_feed_ends(
    data: st.DataObject, events: list[CarrierEvent]
) -> None:
    sorted_once = run([sorted(events, key=lambda e: e.occurred_at)])
    shuffled = run(data.draw(deliveries(st.just(events))))
    assert shuffled.status == sorted_once.status == expected_status(events)


def test_counterexample_first_terminal_to_arrive_wins() -> None:
    delivered = event(Milestone.delivered, TIMES[1], "d")
    lost = event(Milestone.lost, TIMES[2], "l")
    assert run([[delivered], [lost]]).status is Milestone.delivered
    assert run([[lost], [delivered]]).status is Milestone.lost  # a terminal status is never left


def test_counterexample_same_rank_same_instant_follows_arrival() -> None:
    ofd = event(Milestone.out_for_delivery, TIMES[3], "o")
    failed = event(Milestone.delivery_failed, TIMES[3], "f")
    assert run([[ofd], [failed]]).status is Milestone.delivery_failed
    assert run([[failed], [ofd]]).status is Milestone.out_for_delivery
