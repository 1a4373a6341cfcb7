"""What we offer a customer after a failed delivery, and which dates they may pick.

Pure data and arithmetic shared by the reply parser (domain), the timing policy (workflows) and
the self-service page (api), so "option 3" and "the allowed dates" mean the same thing everywhere.

Menu numbers are fixed, not renumbered per reason: a reason that does not allow an option simply
leaves its number out ("1 deliver tomorrow, 2 pick a date, 4 cancel"). A customer answering an
older message, or typing the number they remember, then still means what they meant, and "4" can
never silently turn into a different action.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.taxonomy import NdrAction, NdrReason, allowed_customer_actions

# What a parsed customer reply can be (domain.reply_parser.ParsedReply.kind); here so the
# workflow's validator can check it without importing the parser (phonenumbers, dateparser).
REPLY_KINDS = ("choice", "date", "address", "phone", "rto", "opt_out", "opt_in", "dispute", "case_ref", "unclear")

DEFAULT_MAX_DAYS = 6  # carriers hold a parcel about a week; most accept dates up to 6 days out
DEFAULT_MIN_DAYS = 1  # an instruction sent today is carried out on the next run at the earliest


@dataclass(frozen=True)
class MenuOption:
    number: int
    key: str  # template text key: templates render "ndr.option.<key>" in the customer's language
    action: NdrAction  # what choosing it means (reschedule/update_* need a follow-up answer)
    # Actions that make the option available (any of them): "change address or phone" is offered
    # when either update is allowed for the reason.
    requires: tuple[NdrAction, ...]
    label: str = ""  # key in templates/labels.py LABELS[lang]["option"]


MENU: tuple[MenuOption, ...] = (
    MenuOption(1, "deliver_tomorrow", NdrAction.reattempt, (NdrAction.reattempt,), "reattempt"),
    MenuOption(2, "pick_a_date", NdrAction.reschedule, (NdrAction.reschedule,), "reschedule"),
    MenuOption(
        3, "change_address_or_phone", NdrAction.update_address, (NdrAction.update_address, NdrAction.update_phone), "update_contact"
    ),
    MenuOption(4, "cancel", NdrAction.rto, (NdrAction.rto,), "rto"),
    MenuOption(5, "self_collect", NdrAction.hold_for_pickup, (NdrAction.hold_for_pickup,), "hold_for_pickup"),
)


def options_for(reason: NdrReason | str, allowed: tuple[NdrAction, ...] | None = None) -> list[MenuOption]:
    """The numbered options offered for `reason` (empty for reasons the customer cannot act on)."""
    allowed = allowed_customer_actions(reason) if allowed is None else tuple(allowed)
    out = []
    for opt in MENU:
        if any(a in allowed for a in opt.requires):
            if opt.number == 3 and NdrAction.update_address not in allowed:
                # Only the phone can change: the option still reads "address or phone", but
                # choosing it means a phone update.
                opt = MenuOption(3, "change_phone", NdrAction.update_phone, opt.requires, "update_phone")
            out.append(opt)
    return out


def option_by_number(reason: NdrReason | str, number: int, allowed: tuple[NdrAction, ...] | None = None) -> MenuOption | None:
    for opt in options_for(reason, allowed):
        if opt.number == number:
            return opt
    return None


def local_today(now: datetime, tz: str) -> date:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(ZoneInfo(tz)).date()


def reattempt_window(
    now: datetime, tz: str, *, max_days: int = DEFAULT_MAX_DAYS, min_days: int = DEFAULT_MIN_DAYS
) -> tuple[date, date]:
    """First and last date (inclusive, customer's calendar) a customer may ask for."""
    today = local_today(now, tz)
    return today + timedelta(days=min_days), today + timedelta(days=max_days)


def allowed_dates(
    now: datetime, tz: str, *, max_days: int = DEFAULT_MAX_DAYS, min_days: int = DEFAULT_MIN_DAYS
) -> list[date]:
    first, last = reattempt_window(now, tz, max_days=max_days, min_days=min_days)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def check_date(
    d: date, now: datetime, tz: str, *, max_days: int = DEFAULT_MAX_DAYS, min_days: int = DEFAULT_MIN_DAYS
) -> tuple[str, str] | None:
    """None when `d` is allowed, else (problem_code, problem text for people and logs)."""
    today = local_today(now, tz)
    first, last = reattempt_window(now, tz, max_days=max_days, min_days=min_days)
    if d < today:
        return "date_in_past", f"{d.isoformat()} is in the past: no date in the past; pick {first.isoformat()} to {last.isoformat()}"
    if d < first:
        return "date_too_soon", f"{d.isoformat()} is too soon: the earliest is {first.isoformat()}"
    if d > last:
        return (
            "date_too_far",
            f"{d.isoformat()} is too far ahead: at most {max_days} days ahead (latest {last.isoformat()})",
        )
    return None
