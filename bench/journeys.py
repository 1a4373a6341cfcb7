"""Realistic shipment journeys, as data (pure: no I/O, no clock; deterministic for a seed).

A journey is what one shipment sends us over its life, compressed from days into seconds:

    register → picked_up → in_transit ×k → out_for_delivery → delivered
    (20 %) … out_for_delivery → delivery_failed → customer reply (most) or silence (some)
            → the carrier's next out_for_delivery → delivered

plus what real carriers do to a webhook stream: the same push delivered twice (their retry after
a slow answer), two scans delivered in the wrong order (a late in-transit scan after the
out-for-delivery one), and now and then the first scan before the merchant registered the
tracking number. Each journey is built from its own RNG seeded by (seed, index), so journey 1234
is the same whatever else was generated, and the ramp can generate lazily.

Times are offsets in seconds from the journey's start. `Step.at` is when to send; a scan's
`scan_at` is the carrier's time of the scan (converted to wall-clock time when sent), which stays
in scan order when the sending order is shuffled.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import phonenumbers

KINDS = ("normal", "ndr_1", "ndr_2day", "ndr_free", "ndr_none")
REPLYING_KINDS = ("ndr_1", "ndr_2day", "ndr_free")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
KO_DAY_NAMES = ("월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일")


@dataclass(frozen=True)
class Country:
    code: str
    timezone: str
    locales: tuple[tuple[str, float], ...]  # (locale, weight)
    mobile_prefixes: tuple[str, ...]  # national-number prefixes of mobile ranges
    national_digits: int  # digits after the prefix
    cities: tuple[tuple[str, str], ...]  # (city, postal code)
    currency: str
    names: tuple[str, ...]


COUNTRIES: dict[str, Country] = {
    "IN": Country(
        "IN",
        "Asia/Kolkata",
        (("en-IN", 0.7), ("hi-IN", 0.3)),
        ("98", "99", "97", "94", "93", "90"),
        8,
        (
            ("Bengaluru", "560001"),
            ("Mumbai", "400001"),
            ("New Delhi", "110001"),
            ("Chennai", "600001"),
            ("Pune", "411001"),
        ),
        "INR",
        (
            "Asha Rao",
            "Rahul Sharma",
            "Priya Nair",
            "Vikram Singh",
            "Ananya Iyer",
            "Mohammed Khan",
            "Sneha Patil",
        ),
    ),
    "SG": Country(
        "SG",
        "Asia/Singapore",
        (("en-SG", 1.0),),
        ("9", "8"),
        7,
        (("Singapore", "018956"),),
        "SGD",
        ("Tan Wei Ling", "Muhammad Hafiz", "Priya Raj", "Lim Jun Jie"),
    ),
    "AE": Country(
        "AE",
        "Asia/Dubai",
        (("en-AE", 1.0),),
        ("50", "55", "56"),
        7,
        (("Dubai", "00000"), ("Abu Dhabi", "00000")),
        "AED",
        ("Fatima Al Mansoori", "Omar Haddad", "Aisha Rahman", "Ravi Menon"),
    ),
    "GB": Country(
        "GB",
        "Europe/London",
        (("en-GB", 1.0),),
        ("77", "78", "79"),
        8,
        (("London", "EC1A 1BB"), ("Manchester", "M1 1AE"), ("Leeds", "LS1 1UR")),
        "GBP",
        ("Olivia Smith", "Amelia Jones", "Harry Patel", "Jack Williams"),
    ),
    "KR": Country(
        "KR",
        "Asia/Seoul",
        (("ko-KR", 1.0),),
        ("10",),
        8,
        (("Seoul", "04524"), ("Busan", "48058")),
        "KRW",
        ("김민준", "이서연", "박지훈", "최수아"),
    ),
}


@dataclass(frozen=True)
class Mix:
    """What share of journeys do what. Defaults follow the issue: 20 % NDR, most answered."""

    ndr_share: float = 0.20
    reply_share: float = 0.85  # of NDR journeys: the customer answers
    reply_styles: tuple[tuple[str, float], ...] = (("ndr_1", 0.45), ("ndr_2day", 0.30), ("ndr_free", 0.25))
    duplicate_rate: float = 0.06  # per push: the carrier delivers it twice
    reorder_rate: float = 0.15  # per journey: two adjacent scans arrive swapped
    early_scan_rate: float = 0.03  # per journey: the first scan arrives before registration
    in_transit: tuple[int, int] = (1, 4)
    carriers: tuple[tuple[str, float], ...] = (
        ("generic", 0.4),
        ("delhivery", 0.3),
        ("shiprocket", 0.15),
        ("clickpost", 0.15),
    )
    reasons: tuple[tuple[str, float], ...] = (
        ("customer_unavailable", 0.70),
        ("customer_unreachable", 0.15),
        ("reschedule_requested", 0.15),
    )
    cod_share: float = 0.6


@dataclass(frozen=True)
class Timing:
    """Seconds, compressed: a gap of 0.5 s stands for hours between two scans."""

    gap: tuple[float, float] = (0.3, 0.8)  # between two carrier pushes
    reply_delay: tuple[float, float] = (1.0, 3.0)  # NDR message received → customer answers
    followup_delay: tuple[float, float] = (0.8, 1.6)  # "2" → the day name
    reattempt_delay: tuple[float, float] = (1.0, 2.5)  # answer (or silence) → carrier's next attempt
    dup_delay: tuple[float, float] = (0.05, 0.6)  # original push → its redelivery
    lag: tuple[float, float] = (0.0, 0.2)  # scan → push


# For the ramp: the same journeys, shorter, so a step of a few seconds sees whole journeys.
FAST = Timing(
    gap=(0.1, 0.3),
    reply_delay=(0.3, 0.8),
    followup_delay=(0.3, 0.6),
    reattempt_delay=(0.4, 0.9),
    dup_delay=(0.05, 0.3),
)
# For calibration: slow enough that every message gets a workflow task of its own.
SLOW = Timing(
    gap=(0.8, 0.8),
    reply_delay=(1.2, 1.2),
    followup_delay=(1.2, 1.2),
    reattempt_delay=(1.2, 1.2),
    dup_delay=(0.5, 0.5),
    lag=(0.0, 0.0),
)


@dataclass(frozen=True)
class Customer:
    name: str
    phone: str  # E.164
    phone_display: str  # as a merchant would type it
    email: str
    locale: str
    country: str
    timezone: str
    whatsapp_opt_in: bool
    city: str
    postal_code: str


@dataclass(frozen=True)
class ScanSpec:
    milestone: str
    ndr_reason: str | None
    scan_at: float
    event_id: str
    ordinal: int  # nth scan of this milestone in the journey (1-based), in scan order


@dataclass(frozen=True)
class Step:
    at: float
    kind: str  # register | push | reply
    scan: ScanSpec | None = None
    text: str = ""
    duplicate: bool = False  # a redelivery of an earlier push: the API answers it as a duplicate
    held: bool = False  # a push before registration: kept by the API, delivered with the registration
    decisive: bool = False  # the reply that completes the customer's decision
    wait_for_ask: bool = False  # the customer answers the NDR message, so waits until it arrives
    reply_ordinal: int = 0  # 1-based index among the journey's replies

    @property
    def reaches_temporal(self) -> bool:
        """One Temporal call (signal-with-start or update) in the pipeline and in the baseline."""
        return not (self.duplicate or self.held)

    @property
    def counts_as_event(self) -> bool:
        """Journey events (throughput unit): registration, every distinct scan, every reply."""
        return not self.duplicate


@dataclass(frozen=True)
class Journey:
    index: int
    kind: str
    merchant_id: str
    carrier: str
    tracking_number: str
    order_id: str
    customer: Customer
    payment_mode: str
    amount: str
    currency: str
    ndr_reason: str | None
    promised_delivery_date: str
    steps: tuple[Step, ...]
    reordered: bool = False

    @property
    def events(self) -> int:
        return sum(1 for s in self.steps if s.counts_as_event)

    @property
    def temporal_calls(self) -> int:
        return sum(1 for s in self.steps if s.reaches_temporal)

    @property
    def scans(self) -> list[ScanSpec]:
        """Distinct scans in scan order."""
        seen = {s.scan.event_id: s.scan for s in self.steps if s.scan is not None}
        return sorted(seen.values(), key=lambda sc: sc.scan_at)

    @property
    def duration(self) -> float:
        return max(s.at for s in self.steps)

    @property
    def final_status(self) -> str:
        return "delivered"

    @property
    def final_step(self) -> int:
        """Index of the push that completes the journey (its delivered scan, first delivery)."""
        return next(
            i
            for i, s in enumerate(self.steps)
            if s.scan is not None and s.scan.milestone == "delivered" and not s.duplicate
        )

    def registration_body(self) -> dict[str, Any]:
        c = self.customer
        return {
            "merchant_id": self.merchant_id,
            "order_id": self.order_id,
            "carrier": self.carrier,
            "tracking_number": self.tracking_number,
            "payment": {"mode": self.payment_mode, "amount": self.amount, "currency": self.currency},
            "customer": {
                "name": c.name,
                "phone": c.phone_display,
                "email": c.email,
                "locale": c.locale,
                "whatsapp_opt_in": c.whatsapp_opt_in,
            },
            "address": {
                "line1": f"{10 + self.index % 90} MG Road",
                "city": c.city,
                "postal_code": c.postal_code,
                "country": c.country,
            },
            "promised_delivery_date": self.promised_delivery_date,
        }


def _weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    names = [n for n, _ in table]
    weights = [w for _, w in table]
    return rng.choices(names, weights=weights, k=1)[0]


def _uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return lo if hi <= lo else rng.uniform(lo, hi)


def mobile_number(country: Country, n: int) -> phonenumbers.PhoneNumber:
    """A valid mobile number unique for `n` (< 10**national_digits): the digits come from `n`,
    the first mobile prefix that makes a valid number wins."""
    modulus = 10**country.national_digits
    # A multiplier coprime with 10 spreads consecutive journeys over the range (distinct n, distinct digits).
    digits = f"{(n * 7_919 + 1_234_567) % modulus:0{country.national_digits}d}"
    for prefix in country.mobile_prefixes:
        num = phonenumbers.parse(f"+{phonenumbers.country_code_for_region(country.code)}{prefix}{digits}")
        if phonenumbers.is_valid_number(num):
            return num
    raise ValueError(f"no valid {country.code} mobile number for {n}")


class JourneyFactory:
    """Builds journey `index` for one run. `today` is the customers' local date (day names in
    replies are picked 2–5 days ahead, inside the carriers' 6-day window)."""

    def __init__(
        self,
        *,
        seed: int,
        run_tag: str,
        merchant_id: str,
        country: str = "IN",
        today: date,
        mix: Mix = Mix(),
        timing: Timing = Timing(),
        replies: bool = True,
        wait_for_ask: bool = True,
        tracking_prefix: str = "",
        stream: str = "",
        phone_block: int | None = None,
    ) -> None:
        # Journeys depend on (seed, stream, index), not on the merchant: the pipeline and the
        # baseline replay the same stream under different merchant ids.
        self.stream = stream or merchant_id
        # Phone numbers are unique within a block (a million journeys); give each stream of a
        # run its own block so a reply never reaches another stream's customer.
        self.phone_block = phone_block
        self.seed = seed
        self.run_tag = run_tag
        self.merchant_id = merchant_id
        self.country = COUNTRIES[country]
        self.today = today
        self.mix = mix
        self.timing = timing
        self.replies = replies
        self.wait_for_ask = wait_for_ask
        self.tracking_prefix = (tracking_prefix or run_tag).upper()

    def rng(self, index: int) -> random.Random:
        return random.Random(f"{self.seed}:{self.stream}:{index}")

    def kind_for(self, rng: random.Random) -> str:
        if rng.random() >= self.mix.ndr_share:
            return "normal"
        if rng.random() >= self.mix.reply_share:
            return "ndr_none"
        return _weighted(rng, self.mix.reply_styles)

    def make(self, index: int, kind: str | None = None) -> Journey:
        rng = self.rng(index)
        drawn = self.kind_for(rng)  # always drawn, so a forced kind does not shift the other draws
        kind = kind or drawn
        if kind not in KINDS:
            raise ValueError(f"unknown journey kind {kind!r}")
        if not self.replies and kind in REPLYING_KINDS:
            kind = "ndr_none"
        customer = self._customer(rng, index)
        carrier = _weighted(rng, self.mix.carriers)
        tracking = f"{self.tracking_prefix}{index:07d}"
        steps, reordered = self._steps(rng, kind, tracking, customer)
        cod = rng.random() < self.mix.cod_share
        amount = f"{rng.choice([299, 499, 799, 1299, 1899, 2499, 4999])}.00"
        return Journey(
            index=index,
            kind=kind,
            merchant_id=self.merchant_id,
            carrier=carrier,
            tracking_number=tracking,
            order_id=f"{self.merchant_id.upper()}-{index:07d}",
            customer=customer,
            payment_mode="cod" if cod else "prepaid",
            amount=amount,
            currency=self.country.currency,
            ndr_reason=next((s.scan.ndr_reason for s in steps if s.scan and s.scan.ndr_reason), None),
            promised_delivery_date=(self.today + timedelta(days=3)).isoformat(),
            steps=steps,
            reordered=reordered,
        )

    def take(self, n: int, start: int = 0) -> list[Journey]:
        return [self.make(i) for i in range(start, start + n)]

    # ---- parts ----------------------------------------------------------------------------
    def _customer(self, rng: random.Random, index: int) -> Customer:
        c = self.country
        # Unique per (run, merchant, index): phone and email route customer replies to one case.
        salt = self.phone_block
        if salt is None:
            salt = sum(ord(ch) * (i + 1) for i, ch in enumerate(f"{self.run_tag}:{self.stream}")) % 90
        num = mobile_number(c, salt * 1_000_000 + index)
        city, postal = rng.choice(c.cities)
        return Customer(
            name=rng.choice(c.names),
            phone=phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164),
            phone_display=phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
            email=f"c{index}.{self.stream}.{self.run_tag}@example.com".lower(),
            locale=_weighted(rng, c.locales),
            country=c.code,
            timezone=c.timezone,
            whatsapp_opt_in=rng.random() < 0.5,
            city=city,
            postal_code=postal,
        )

    def _steps(
        self, rng: random.Random, kind: str, tracking: str, customer: Customer
    ) -> tuple[tuple[Step, ...], bool]:
        t = self.timing
        ordinals: Counter[str] = Counter()
        seq = 0

        def scan(milestone: str, at: float, reason: str | None = None) -> ScanSpec:
            nonlocal seq
            seq += 1
            ordinals[milestone] += 1
            return ScanSpec(
                milestone, reason, at - _uniform(rng, t.lag), f"{tracking}-{seq:02d}", ordinals[milestone]
            )

        steps: list[Step] = []
        clock = 0.0
        early = rng.random() < self.mix.early_scan_rate
        milestones = ["picked_up"] + ["in_transit"] * rng.randint(*self.mix.in_transit) + ["out_for_delivery"]
        if early:
            # The carrier's first scan beats the merchant's registration call.
            steps.append(Step(at=0.0, kind="push", scan=scan(milestones.pop(0), 0.0), held=True))
            clock = _uniform(rng, t.gap) / 2
        steps.append(Step(at=clock, kind="register"))
        for m in milestones:
            clock += _uniform(rng, t.gap)
            steps.append(Step(at=clock, kind="push", scan=scan(m, clock)))

        reordered = False
        if rng.random() < self.mix.reorder_rate:
            # Two adjacent pushes before the final attempt swap their arrival times, keeping
            # their scan times: the later scan arrives first and the earlier one arrives late.
            pushes = [i for i, s in enumerate(steps) if s.kind == "push" and not s.held]
            pairs = [(a, b) for a, b in zip(pushes, pushes[1:], strict=False) if b == a + 1]
            if pairs:
                a, b = rng.choice(pairs)
                steps[a], steps[b] = replace(steps[a], at=steps[b].at), replace(steps[b], at=steps[a].at)
                reordered = True

        if kind != "normal":
            clock += _uniform(rng, t.gap)
            reason = _weighted(rng, self.mix.reasons)
            steps.append(Step(at=clock, kind="push", scan=scan("delivery_failed", clock, reason)))
            replies = self._replies(rng, kind, customer)
            for n, (text, decisive) in enumerate(replies, start=1):
                clock += _uniform(rng, t.reply_delay if n == 1 else t.followup_delay)
                steps.append(
                    Step(
                        at=clock,
                        kind="reply",
                        text=text,
                        decisive=decisive,
                        wait_for_ask=self.wait_for_ask and n == 1,
                        reply_ordinal=n,
                    )
                )
            clock += _uniform(rng, t.reattempt_delay)
            steps.append(Step(at=clock, kind="push", scan=scan("out_for_delivery", clock)))
        clock += _uniform(rng, t.gap)
        steps.append(Step(at=clock, kind="push", scan=scan("delivered", clock)))

        dups = [
            Step(at=s.at + _uniform(rng, t.dup_delay), kind="push", scan=s.scan, duplicate=True)
            for s in steps
            if s.kind == "push" and not s.held and rng.random() < self.mix.duplicate_rate
        ]
        ordered = sorted(steps + dups, key=lambda s: s.at)
        return tuple(ordered), reordered

    def _replies(self, rng: random.Random, kind: str, customer: Customer) -> list[tuple[str, bool]]:
        if kind == "ndr_1":
            return [("1", True)]
        if kind == "ndr_2day":
            day = self.today + timedelta(days=rng.randint(2, 5))
            name = (
                KO_DAY_NAMES[day.weekday()] if customer.locale.startswith("ko") else DAY_NAMES[day.weekday()]
            )
            return [("2", False), (name, True)]
        if kind == "ndr_free":
            day = self.today + timedelta(days=rng.randint(2, 5))
            if customer.locale.startswith("ko"):
                options = ["내일 오후에 배달해 주세요", f"{KO_DAY_NAMES[day.weekday()]}에 배달해 주세요"]
            elif customer.locale.startswith("hi"):
                options = [
                    "kal deliver kar dena",
                    "kal shaam 5 baje ke baad aana",
                    f"{DAY_NAMES[day.weekday()]} ko deliver karo",
                ]
            else:
                options = [
                    "deliver tomorrow after 5pm",
                    "Please deliver tomorrow",
                    f"deliver on {DAY_NAMES[day.weekday()]} after 5pm",
                    "can you come tomorrow evening?",
                ]
            return [(rng.choice(options), True)]
        return []


@dataclass
class MixSummary:
    journeys: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    events: int = 0
    temporal_calls: int = 0
    pushes: int = 0
    duplicates: int = 0
    held: int = 0
    reordered: int = 0
    replies: int = 0
    carriers: Counter[str] = field(default_factory=Counter)

    @property
    def ndr_share(self) -> float:
        return sum(v for k, v in self.kinds.items() if k != "normal") / max(1, self.journeys)

    @property
    def events_per_journey(self) -> float:
        return self.events / max(1, self.journeys)


def summarize(journeys: list[Journey]) -> MixSummary:
    s = MixSummary()
    for j in journeys:
        s.journeys += 1
        s.kinds[j.kind] += 1
        s.carriers[j.carrier] += 1
        s.events += j.events
        s.temporal_calls += j.temporal_calls
        s.reordered += int(j.reordered)
        for st in j.steps:
            s.pushes += st.kind == "push"
            s.duplicates += st.duplicate
            s.held += st.held
            s.replies += st.kind == "reply"
    return s
