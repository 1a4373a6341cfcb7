"""Customer message templates: one Jinja2 file per (channel, purpose, locale) and one render().

Layout (files beside this module):
    sms/<purpose>.<locale>.j2
    whatsapp/<purpose>.<locale>.j2            optional: without it WhatsApp uses the SMS text
    email/<purpose>.<locale>.subject.j2
    email/<purpose>.<locale>.html.j2          extends email/_layout.<locale>.html.j2
    email/<purpose>.<locale>.txt.j2

One shared Environment: StrictUndefined (a missing variable is a bug, not an empty string) and
autoescape for `.html.j2` only (SMS and plain text must not contain `&amp;`). Locale fallback
`ko-KR` -> `ko` -> `en`, per file. Dates, times and money are formatted with Babel in the
customer's full locale (`en-IN` groups lakhs) and time zone.

Context: every purpose needs COMMON_REQUIRED plus PURPOSE_REQUIRED[purpose]; optional keys are
filled from the *_OPTIONAL defaults so templates can test them with `{% if %}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_skeleton, format_time
from babel.numbers import format_currency, parse_pattern
from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, pass_context
from jinja2.runtime import Context

from templates.labels import label as _label

TEMPLATE_DIR = Path(__file__).parent
CHANNELS = ("sms", "whatsapp", "email")
MILESTONE_PURPOSES = (
    "picked_up",
    "out_for_delivery",
    "delivered",
    "delivery_failed",
    "on_hold",
    "rto_initiated",
)
# Every message of the NDR conversation (workflows/ndr_policy.py NOTIFY_* and the API's answers
# in api/reply_routing.py). Each has its own files in every channel and locale.
NDR_PURPOSES = (
    "ndr_ask",  # the failed attempt, the numbered options and the self-service link
    "ndr_reminder",  # no answer yet
    "ndr_ask_date",  # the customer chose "2 pick a date" (or gave a date we cannot use)
    "ndr_ask_details",  # the customer chose "3 change address or phone"
    "ndr_confirm",  # decided: the action and the date, in the customer's language
    "ndr_clarify",  # one clarification after a reply we did not understand
    "ndr_escalated",  # the second miss: a person will contact the customer
    "ndr_dispute_ack",  # "nobody came": recorded, and what happens next
    "ndr_already_decided",  # a reply after the decision: repeats it
    "ndr_which_case",  # two open cases: answer with the order's code (sent by the API)
    "ndr_no_open_case",  # a reply from someone with no open question (sent by the API)
    "ndr_case_closed",  # a reply to a settled case (sent by the API)
)
PURPOSES = MILESTONE_PURPOSES + NDR_PURPOSES
# Answers the API sends before it knows the shipment (the sender has several or none): the
# shipment fields are optional for these, and their templates do without them.
WITHOUT_SHIPMENT = frozenset({"ndr_which_case", "ndr_no_open_case"})
# NDR messages that ask the customer something carry the signed self-service link.
ASKING_PURPOSES = frozenset({"ndr_ask", "ndr_reminder", "ndr_ask_date", "ndr_ask_details", "ndr_clarify"})
DEFAULT_LOCALE = "en"
# Languages whose SMS fit the GSM-7 alphabet: their SMS avoid non-GSM currency signs.
GSM_LANGUAGES = frozenset(
    {"en", "es", "fr", "de", "it", "nl", "pt", "sv", "da", "no", "fi", "id", "ms", "sw"}
)

COMMON_REQUIRED = ("merchant_name", "order_id", "tracking_number", "tracking_url")
COMMON_OPTIONAL: dict[str, Any] = {
    "customer_name": "",
    "carrier_name": "",
    "payment_mode": "prepaid",  # prepaid | cod
    "cod_amount": None,  # decimal string, shown when payment_mode == "cod"
    "currency": "INR",
    "expected_date": None,  # ISO date
}
PURPOSE_REQUIRED: dict[str, tuple[str, ...]] = {
    "delivery_failed": ("reason",),
    # options: the menu of workflows.ndr_policy.menu_context(reason), [{"number", "key", "action",
    # "label"}], with FIXED numbers (1 deliver tomorrow, 2 pick a date, 3 change address or phone,
    # 4 cancel, 5 collect myself; a number the reason does not allow is left out). Plain codes
    # ("reattempt", "update_contact", ...) are accepted and numbered the same way.
    # link: the signed self-service URL (.../r/{token}); activities/notify.py adds it.
    "ndr_ask": ("options", "link", "reason"),
    "ndr_reminder": ("options", "link"),
    "ndr_ask_date": ("link",),
    "ndr_ask_details": ("link",),
    "ndr_confirm": (
        "action",
    ),  # reattempt | reschedule | update_address | update_phone | rto | hold_for_pickup
    "ndr_clarify": ("link",),
    "ndr_already_decided": ("action",),
    "ndr_which_case": ("cases",),  # [{"ref", "merchant_name", "order_id"}]
}
PURPOSE_OPTIONAL: dict[str, dict[str, Any]] = {
    "delivered": {"delivered_at": None},
    "delivery_failed": {"attempt": None},
    "on_hold": {"reason": None},
    "rto_initiated": {"reason": None},
    "ndr_ask": {"reply_by": None, "attempt": 1},
    "ndr_reminder": {"reply_by": None, "reason": None},
    "ndr_ask_date": {"max_date": None, "reason": None},
    "ndr_ask_details": {"options": [], "reason": None},
    "ndr_confirm": {"date": None, "link": None},
    # question: option | date | address | phone (default: the numbered options again)
    "ndr_clarify": {"question": "option", "options": [], "max_date": None},
    "ndr_escalated": {},
    "ndr_dispute_ack": {"action": None, "date": None},
    "ndr_already_decided": {"date": None},
    "ndr_no_open_case": {},
    "ndr_case_closed": {},
}
# What the workflow's NDR context (workflows/shipment.py ndr_context) calls what templates call:
# {"ndr_attempt": 2, "agreed_date": "2026-12-05", ...} renders as attempt 2 and date 5 Dec.
CONTEXT_ALIASES = {"ndr_attempt": "attempt", "agreed_date": "date"}

# Typographic characters that silently turn an SMS into UCS-2 (a third of the capacity).
_GSM_FRIENDLY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\u2026": "...",
    }
)


class TemplateContextError(ValueError):
    """The context lacks a variable the purpose needs (names them)."""


@dataclass(frozen=True)
class Rendered:
    channel: str
    purpose: str
    locale: str  # the customer's locale as asked
    template_locale: str  # the file actually used after fallback
    body: str  # SMS / WhatsApp text, or the email's plain-text part
    subject: str | None = None
    html: str | None = None
    # Formatted values for provider-side templates (WhatsApp ContentVariables, SendGrid dynamic data).
    variables: dict[str, str] = field(default_factory=dict)


def locale_chain(locale: str | None) -> list[str]:
    """`ko_KR` / `ko-KR` -> ["ko-KR", "ko", "en"]; always ends with the default."""
    chain: list[str] = []
    loc = (locale or "").replace("_", "-").strip()
    if loc:
        parts = loc.split("-")
        tag = parts[0].lower() + "".join("-" + p.upper() if len(p) == 2 else "-" + p for p in parts[1:])
        chain.append(tag)
        chain.append(parts[0].lower())
    chain.append(DEFAULT_LOCALE)
    return list(dict.fromkeys(chain))


def _babel_locale(chain: list[str], used: str) -> Locale:
    """The customer's full locale (`en-IN` groups lakhs) when the text is in its language;
    otherwise the language of the file we fell back to (no French digits in English text)."""
    lang = used.split("-")[0]
    for loc in [c for c in chain if c.split("-")[0] == lang] + [used]:
        try:
            return Locale.parse(loc.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(DEFAULT_LOCALE)


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _as_datetime(value: Any) -> datetime | date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime | date):
        return value
    text = str(value).strip()
    if len(text) == 10:
        return date.fromisoformat(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=ZoneInfo("UTC"))


def _local(ctx: Context, value: Any) -> datetime | date | None:
    v = _as_datetime(value)
    if isinstance(v, datetime):
        return v.astimezone(_zone(ctx.get("tz")))
    return v


@pass_context
def _f_date(ctx: Context, value: Any, fmt: str = "medium") -> str:
    v = _local(ctx, value)
    if v is None:
        return ""
    d = v.date() if isinstance(v, datetime) else v
    return format_date(d, fmt, locale=ctx["_babel_locale"])


@pass_context
def _f_day(ctx: Context, value: Any) -> str:
    """Short weekday + day + month: "Sat, Nov 28" / "शनि, 28 नव॰" / "11월 28일 (토)"."""
    v = _local(ctx, value)
    if v is None:
        return ""
    d = v.date() if isinstance(v, datetime) else v
    return format_skeleton("MMMEd", d, locale=ctx["_babel_locale"])


@pass_context
def _f_datetime(ctx: Context, value: Any, fmt: str = "short") -> str:
    v = _local(ctx, value)
    if v is None:
        return ""
    if not isinstance(v, datetime):
        return format_date(v, "medium", locale=ctx["_babel_locale"])
    return format_datetime(v, fmt, locale=ctx["_babel_locale"])


@pass_context
def _f_time(ctx: Context, value: Any, fmt: str = "short") -> str:
    v = _local(ctx, value)
    if not isinstance(v, datetime):
        return ""
    return format_time(v, fmt, locale=ctx["_babel_locale"])


@pass_context
def _f_money(ctx: Context, amount: Any, currency: str | None = None) -> str:
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return str(amount)
    cur = currency or ctx.get("currency") or "INR"
    loc: Locale = ctx["_babel_locale"]
    if ctx.get("_gsm_only"):
        # ₹, ₩ and most currency signs are not GSM-7: one would turn the whole SMS into
        # UCS-2 (70 instead of 160 characters per part). "Rs." is how Indian SMS write rupees.
        sign = {"INR": "Rs.", "USD": "$", "GBP": "£", "EUR": "€"}.get(cur, cur + " ")
        pattern = parse_pattern(loc.decimal_formats[None].pattern)
        pattern.frac_prec = (0, 0) if value == value.to_integral_value() else (2, 2)
        return sign + pattern.apply(value, loc)
    if value == value.to_integral_value():
        # Whole amounts without ".00" (shorter SMS, how people write rupees and won), keeping
        # the locale's own grouping (en-IN: 1,29,999).
        pattern = parse_pattern(loc.currency_formats["standard"].pattern)
        pattern.frac_prec = (0, 0)
        return pattern.apply(value, loc, currency=cur, currency_digits=False)
    return format_currency(value, cur, locale=loc)


@pass_context
def _g_label(ctx: Context, kind: str, code: str | None) -> str:
    return _label(ctx["_locales"], kind, code)


def _f_with_query(url: str, **params: Any) -> str:
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query and extra else (parts.query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _autoescape(name: str | None) -> bool:
    return bool(name) and name.endswith(".html.j2")


ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    undefined=StrictUndefined,
    autoescape=_autoescape,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    auto_reload=False,
)
ENV.filters.update(
    date=_f_date, day=_f_day, datetime=_f_datetime, time=_f_time, money=_f_money, with_query=_f_with_query
)
ENV.globals["label"] = _g_label


def _first_existing(channel: str, purpose: str, chain: list[str], suffix: str) -> tuple[str, str]:
    dirs = [channel, "sms"] if channel == "whatsapp" else [channel]
    tried = []
    for loc in chain:
        for d in dirs:
            name = f"{d}/{purpose}.{loc}{suffix}"
            tried.append(name)
            if (TEMPLATE_DIR / name).is_file():
                return name, loc
    raise TemplateNotFound(f"no template for {channel}/{purpose} (tried {', '.join(tried)})")


def menu_options(options: Any) -> list[dict[str, Any]]:
    """The options as [{"number", "key", "action", "label"}] with the menu's FIXED numbers.

    Accepts workflows.ndr_policy.menu_context() dicts (checked against domain.ndr_options.MENU, so
    a template can never print a number the reply parser reads differently) and plain codes
    ("reattempt", "update_contact", "cancel", "deliver_tomorrow", ...). Sorted by number."""
    from domain.ndr_options import MENU

    by_code: dict[str, Any] = {}
    for m in MENU:
        for code in (m.label, m.key, m.action.value):
            by_code.setdefault(code, m)
    by_code.update({"update_phone": MENU[2], "change_phone": MENU[2], "cancel": MENU[3]})
    out: dict[int, dict[str, Any]] = {}
    for o in options or []:
        if isinstance(o, Mapping):
            number = o.get("number")
            known = next((m for m in MENU if m.number == number), None)
            if not isinstance(number, int) or known is None:
                raise TemplateContextError(
                    f"option {dict(o)!r}: number must be one of the menu's 1-{len(MENU)}"
                )
            entry = {
                "number": number,
                "key": str(o.get("key") or known.key),
                "action": str(o.get("action") or known.action.value),
                "label": str(o.get("label") or known.label),
            }
        else:
            known = by_code.get(str(o))
            if known is None:
                raise TemplateContextError(f"option {o!r} is not on the NDR menu")
            phone_only = str(o) in ("update_phone", "change_phone")
            entry = {
                "number": known.number,
                "key": "change_phone" if phone_only else known.key,
                "action": "update_phone" if phone_only else known.action.value,
                "label": "update_phone" if phone_only else known.label,
            }
        out[entry["number"]] = entry
    return [out[n] for n in sorted(out)]


def build_context(purpose: str, context: Mapping[str, Any]) -> dict[str, Any]:
    context = dict(context)
    for src, dst in CONTEXT_ALIASES.items():
        if context.get(dst) in (None, "") and context.get(src) not in (None, ""):
            context[dst] = context[src]
    common = () if purpose in WITHOUT_SHIPMENT else COMMON_REQUIRED
    missing = [k for k in (*common, *PURPOSE_REQUIRED.get(purpose, ())) if context.get(k) in (None, "", [])]
    if missing:
        raise TemplateContextError(f"template context for {purpose!r} lacks {', '.join(missing)}")
    ctx = {**COMMON_OPTIONAL, **PURPOSE_OPTIONAL.get(purpose, {})}
    if purpose in WITHOUT_SHIPMENT:
        ctx.update({k: "" for k in COMMON_REQUIRED})
    ctx.update({k: v for k, v in context.items() if v is not None or k not in ctx})
    if "options" in ctx:
        ctx["options"] = menu_options(ctx["options"])
    return ctx


def _clean_text(text: str) -> str:
    # Templates are written for readability; messages should not carry stray blank lines.
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def render(
    channel: str, purpose: str, locale: str | None, context: Mapping[str, Any], tz: str | None = None
) -> Rendered:
    """Render one message. `tz` (IANA) is the recipient's zone for dates and times; it may also
    come as context["tz"]. Raises TemplateContextError or jinja2.TemplateNotFound."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    chain = locale_chain(locale)
    ctx = build_context(purpose, context)
    ctx["tz"] = tz or ctx.get("tz") or "UTC"
    ctx["locale"] = chain[0]

    if channel == "email":
        html_name, used = _first_existing("email", purpose, chain, ".html.j2")
        sub_chain = _prepare(ctx, chain, used, channel)
        html = ENV.get_template(html_name).render(ctx)
        txt_name, _ = _first_existing("email", purpose, sub_chain, ".txt.j2")
        subj_name, _ = _first_existing("email", purpose, sub_chain, ".subject.j2")
        body = _clean_text(ENV.get_template(txt_name).render(ctx))
        subject = " ".join(ENV.get_template(subj_name).render(ctx).split())
        return Rendered(channel, purpose, chain[0], used, body, subject, html, _variables(ctx))

    name, used = _first_existing(channel, purpose, chain, ".j2")
    _prepare(ctx, chain, used, channel)
    body = _clean_text(ENV.get_template(name).render(ctx))
    if channel == "sms":
        body = body.translate(_GSM_FRIENDLY)
    return Rendered(channel, purpose, chain[0], used, body, None, None, _variables(ctx))


def _prepare(ctx: dict[str, Any], chain: list[str], used: str, channel: str) -> list[str]:
    # Labels and number formats in the language of the file we found, not of the request.
    sub_chain = [c for c in chain if c.split("-")[0] == used.split("-")[0]] + [used, DEFAULT_LOCALE]
    sub_chain = list(dict.fromkeys(sub_chain))
    ctx["_locales"] = sub_chain
    ctx["_babel_locale"] = _babel_locale(chain, used)
    ctx["_gsm_only"] = channel == "sms" and used.split("-")[0] in GSM_LANGUAGES
    return sub_chain


def _variables(ctx: dict[str, Any]) -> dict[str, str]:
    """Flat, formatted values for provider-side templates (named, so config maps them to 1, 2, ...)."""
    out: dict[str, str] = {}
    env_ctx = ENV.from_string("").new_context(ctx)
    for key, value in ctx.items():
        if key.startswith("_") or value is None or isinstance(value, dict | list):
            continue
        out[key] = str(value)
    for key in ("expected_date", "date", "max_date"):
        if ctx.get(key):
            out[f"{key}_text"] = _f_date(env_ctx, ctx[key])
    for key in ("delivered_at", "reply_by"):
        if ctx.get(key):
            out[f"{key}_text"] = _f_datetime(env_ctx, ctx[key])
    if ctx.get("cod_amount") not in (None, ""):
        out["cod_amount_text"] = _f_money(env_ctx, ctx["cod_amount"], ctx.get("currency"))
    if ctx.get("reason"):
        out["reason_text"] = _label(ctx["_locales"], "reason", ctx["reason"])
    if ctx.get("action"):
        out["action_text"] = _label(ctx["_locales"], "option", ctx["action"])
    if ctx.get("options"):
        # Fixed menu numbers, as in the text templates; `menu` ("1234") picks the WhatsApp
        # quick-reply template made for exactly these buttons (channels/twilio_whatsapp.py).
        out["options_text"] = ", ".join(
            f"{o['number']} {_label(ctx['_locales'], 'option', o['label'])}" for o in ctx["options"]
        )
        out["menu"] = "".join(str(o["number"]) for o in ctx["options"])
        for o in ctx["options"]:
            out[f"option_{o['number']}_text"] = _label(ctx["_locales"], "button", o["label"])
    return out


def template_files() -> list[Path]:
    """Every template file (tests parametrize over these)."""
    return sorted(p for p in TEMPLATE_DIR.rglob("*.j2") if not p.name.startswith("_"))
