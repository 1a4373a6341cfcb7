"""The customer's self-service page for a failed delivery: `GET /r/{token}` and `POST /r/{token}`.

The signed link (api/tokens.py) names one NDR case. The page reads the case from the shipment
workflow (query `state`), offers only what the reason allows and only the dates the carrier takes,
and hands the choice to the workflow as the Update `customer_reply` (the same path as an SMS
answer, so the workflow's validator has the last word). Every failure is a page in the customer's
language with a 4xx status (503 when Temporal cannot be reached), never a 500:

    400 invalid (tampered) link · 403 form not verified (CSRF) · 404 no such delivery
    409 with an agent · 410 expired link, already answered, or closed · 422 a field to correct

Pages are mobile-first plain HTML without JavaScript; responses carry no-store, no-referrer (the
token is in the URL) and a strict Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import phonenumbers
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.customer_text import LANGUAGES, TEXT, language_for, reason_text
from api.pages import render
from api.tokens import (
    CSRF_COOKIE,
    CaseToken,
    CsrfError,
    TokenExpired,
    TokenInvalid,
    check_csrf,
    make_csrf,
    read_case_token,
)
from domain.reply_parser import phone_region
from domain.taxonomy import NdrAction, allowed_customer_actions
from ndrflow.ndr_settings import NdrSettings, get_ndr_settings
from store import ndr as routes
from workflows.ids import shipment_workflow_id
from workflows.messages import CUSTOMER_REPLY, CustomerReplyInput, CustomerReplyResult, ShipmentState
from workflows.ndr_policy import CLOSED, ESCALATED, NdrCase, NdrPolicy, allowed_reattempt_dates, find_case

log = logging.getLogger(__name__)
router = APIRouter(tags=["customer"])

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
# Which CustomerReplyInput.kind a page choice is.
KIND_FOR_CHOICE = {
    NdrAction.reattempt: "choice",
    NdrAction.reschedule: "date",
    NdrAction.update_address: "address",
    NdrAction.update_phone: "phone",
    NdrAction.rto: "rto",
    NdrAction.hold_for_pickup: "choice",
}
POSTAL_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z \-]{1,9}$")


@dataclass
class _Loaded:
    token: CaseToken
    handle: Any
    case: NdrCase
    tz: str
    locale: str
    lang: str
    merchant: str
    tracking_number: str


# ---- routes -------------------------------------------------------------------------------------


@router.get("/r/{token}", response_class=HTMLResponse, summary="Customer self-service page for a failed delivery")
async def case_page(request: Request, token: str, lang: str | None = None) -> HTMLResponse:
    loaded = await _load(request, token, lang)
    if isinstance(loaded, HTMLResponse):
        return loaded
    if (closed := _not_open(loaded)) is not None:
        return closed
    return _form(request, token, loaded, errors=[], form={}, status=200)


@router.post("/r/{token}", response_class=HTMLResponse, summary="Submit the customer's choice")
async def case_answer(request: Request, token: str, lang: str | None = None) -> HTMLResponse:
    settings = request.app.state.settings
    ndr = _ndr_settings(request)
    try:
        raw = await request.form()
        form = {k: str(v)[:300] for k, v in raw.items() if isinstance(v, str)}
    except Exception:  # noqa: BLE001 - an unreadable body is the client's problem, not a 500
        form = {}
    guessed = _guess_lang(request, lang)
    token_ok = _read_token(settings, ndr, token, guessed)
    if isinstance(token_ok, HTMLResponse):
        return token_ok
    try:
        check_csrf(form.get("csrf"), request.cookies.get(CSRF_COOKIE), token, secret_key=settings.secret_key,
                   max_age=ndr.case_page_csrf_max_age_s)
    except CsrfError as exc:
        log.info("customer page: CSRF refused (%s)", exc)
        return _message(403, guessed, "csrf_title", ["csrf_text"], bad=True)

    loaded = await _load(request, token, lang)
    if isinstance(loaded, HTMLResponse):
        return loaded
    if (closed := _not_open(loaded)) is not None:
        return closed

    now = _now(request)
    t = TEXT[loaded.lang]
    allowed = allowed_customer_actions(loaded.case.reason)
    errors: list[str] = []
    try:
        choice = NdrAction(form.get("choice", ""))
    except ValueError:
        choice = None
    if choice is None or choice not in allowed:
        errors.append(t["err_choice"])
    inp = None
    if not errors:
        assert choice is not None
        inp, errors = _reply_from_form(choice, form, loaded, now, ndr, t)
    if errors or inp is None:
        return _form(request, token, loaded, errors=errors, form=form, status=422)

    # One message id per shown form: a double tap sends the same id, which the workflow applies once.
    inp.message_id = "web:" + hashlib.sha256(form.get("csrf", "").encode()).hexdigest()[:32]
    _log_submission(request, inp, loaded)
    try:
        result: CustomerReplyResult = await loaded.handle.execute_update(CUSTOMER_REPLY, inp, result_type=CustomerReplyResult)
    except WorkflowUpdateFailedError as exc:
        log.info("customer page: workflow refused the reply: %s", exc.cause or exc)
        return _message(410, loaded.lang, "closed_title", ["closed_text"])
    except RPCError as exc:
        return _temporal_error(exc, loaded.lang)

    if result.outcome in ("decided", "dispute_recorded", "duplicate"):
        ins = (await _current_case(loaded)) or loaded.case
        return _done(loaded.lang, loaded.locale, ins, fallback=(choice, inp.requested_date))
    # The case moved on between our read and the update (e.g. the cutoff decided it).
    return _message(410, loaded.lang, "used_title", [_decision_line(loaded.lang, loaded.locale, await _current_case(loaded) or loaded.case)])


# ---- loading ------------------------------------------------------------------------------------


async def _load(request: Request, token: str, lang: str | None) -> _Loaded | HTMLResponse:
    settings = request.app.state.settings
    ndr = _ndr_settings(request)
    guessed = _guess_lang(request, lang)
    ct = _read_token(settings, ndr, token, guessed)
    if isinstance(ct, HTMLResponse):
        return ct
    temporal = getattr(request.app.state, "temporal", None)
    if temporal is None:
        return _message(503, guessed, "unavailable_title", ["unavailable_text"], bad=True)
    handle = temporal.get_workflow_handle(shipment_workflow_id(ct.shipment_id))
    try:
        state = await handle.query("state", result_type=ShipmentState)
    except RPCError as exc:
        return _temporal_error(exc, guessed)
    except WorkflowQueryFailedError:
        return _message(503, guessed, "unavailable_title", ["unavailable_text"], bad=True)
    profile = state.profile
    tz = (profile.timezone if profile else None) or "UTC"
    locale = (profile.locale if profile else None) or "en"
    case = find_case(state.ndr_cases, ct.attempt)
    lang_final = language_for(locale, lang)
    if case is None:
        return _message(404, lang_final, "not_found_title", ["not_found_text"], bad=True)
    if case.ref and case.ref != ct.case_ref:
        return _message(400, lang_final, "invalid_title", ["invalid_text"], bad=True)
    return _Loaded(
        ct, handle, case, tz, locale, lang_final,
        merchant=(profile.merchant_id if profile else ""), tracking_number=(profile.tracking_number if profile else ""),
    )


def _read_token(settings: Any, ndr: NdrSettings, token: str, lang: str) -> CaseToken | HTMLResponse:
    if not settings.secret_key:
        log.error("customer page: NDRFLOW_SECRET_KEY is not set; links cannot be verified")
        return _message(503, lang, "unavailable_title", ["unavailable_text"], bad=True)
    try:
        return read_case_token(token, secret_key=settings.secret_key, max_age=ndr.case_link_max_age_days * 86400)
    except TokenExpired:
        return _message(410, lang, "expired_title", ["expired_text"], bad=True)
    except TokenInvalid:
        return _message(400, lang, "invalid_title", ["invalid_text"], bad=True)


async def _current_case(loaded: _Loaded) -> NdrCase | None:
    try:
        state = await loaded.handle.query("state", result_type=ShipmentState)
    except Exception:  # noqa: BLE001 - only used to show the final decision; fall back to what we know
        return None
    return find_case(state.ndr_cases, loaded.token.attempt)


def _not_open(loaded: _Loaded) -> HTMLResponse | None:
    """The link is used once the case is decided, and closed with the case."""
    case = loaded.case
    if case.waiting:
        return None
    if case.state == CLOSED:
        return _message(410, loaded.lang, "closed_title", ["closed_text"])
    if case.state == ESCALATED and not case.instructions:
        return _message(409, loaded.lang, "used_title", ["used_agent"])
    return _message(410, loaded.lang, "used_title", [_decision_line(loaded.lang, loaded.locale, case)])


# ---- the form -----------------------------------------------------------------------------------


def _reply_from_form(
    choice: NdrAction, form: dict[str, str], loaded: _Loaded, now: datetime, ndr: NdrSettings, t: dict[str, str]
) -> tuple[CustomerReplyInput | None, list[str]]:
    errors: list[str] = []
    requested_date = phone = None
    address: dict[str, str] | None = None
    summary = choice.value
    if choice == NdrAction.reschedule:
        allowed = {d.isoformat() for d in _dates(now, loaded.tz, ndr)}
        requested_date = form.get("date", "")
        if requested_date not in allowed:
            errors.append(t["err_date"])
        summary = f"reschedule {requested_date}"
    elif choice == NdrAction.update_address:
        line1 = " ".join(form.get("line1", "").split())
        landmark = " ".join(form.get("landmark", "").split())[:120]
        postal = form.get("postal_code", "").strip()
        if len(line1) < 5 or not any(c.isalnum() for c in line1) or len(line1) > 200:
            errors.append(t["err_address"])
        if postal and not POSTAL_RE.match(postal):
            errors.append(t["err_address"])
        address = {"line1": line1}
        if landmark:
            address["landmark"] = landmark
        if postal:
            address["postal_code"] = postal
        summary = "update_address"
    elif choice == NdrAction.update_phone:
        phone = _e164(form.get("phone", ""), loaded.locale, loaded.tz)
        if phone is None:
            errors.append(t["err_phone"])
        summary = "update_phone"
    elif choice == NdrAction.rto and form.get("confirm") != "yes":
        errors.append(t["err_confirm"])
    if errors:
        return None, errors
    return (
        CustomerReplyInput(
            attempt=loaded.token.attempt,
            channel="web",
            received_at=now.astimezone(UTC).isoformat(),
            kind=KIND_FOR_CHOICE[choice],
            action=choice.value,
            requested_date=requested_date,
            phone=phone,
            address=address,
            text=f"[self-service page] {summary}",
            confidence=1.0,
            case_ref=loaded.token.case_ref,
        ),
        [],
    )


def _form(request: Request, token: str, loaded: _Loaded, *, errors: list[str], form: dict[str, str], status: int) -> HTMLResponse:
    settings = request.app.state.settings
    ndr = _ndr_settings(request)
    now = _now(request)
    t = TEXT[loaded.lang]
    csrf_form, csrf_cookie = make_csrf(token, secret_key=settings.secret_key)
    dates = [(d.isoformat(), _format_day(d, loaded.lang, loaded.locale)) for d in _dates(now, loaded.tz, ndr)]
    html = render(
        "customer/case.html",
        lang=loaded.lang,
        title=t["title"],
        t=t,
        languages=LANGUAGES,
        merchant=loaded.merchant,
        tracking_number=loaded.tracking_number,
        reason_text=reason_text(loaded.lang, loaded.case.reason),
        actions=[a.value for a in allowed_customer_actions(loaded.case.reason)],
        dates=dates,
        csrf=csrf_form,
        errors=errors,
        form={k: form.get(k, "") for k in ("date", "line1", "landmark", "postal_code", "phone")},
    )
    response = _page(html, status)
    secure = str(getattr(settings, "public_base_url", "")).startswith("https://")
    response.set_cookie(CSRF_COOKIE, csrf_cookie, max_age=ndr.case_page_csrf_max_age_s, path="/r/", httponly=True,
                        samesite="lax", secure=secure)
    return response


def _done(lang: str, locale: str, case: NdrCase, *, fallback: tuple[NdrAction | None, str | None]) -> HTMLResponse:
    t = TEXT[lang]
    last = case.last_instruction
    action = last["action"] if last else (fallback[0].value if fallback[0] else None)
    day = (last or {}).get("requested_date") or fallback[1]
    line = t.get(f"done_{action}", t["done_reattempt"]).format(date=_format_day(date.fromisoformat(day), lang, locale) if day else "")
    return _page(render("customer/message.html", lang=lang, title=t["done_title"], lines=[line, t["done_next"]], bad=False,
                        languages=()), 200)


def _decision_line(lang: str, locale: str, case: NdrCase) -> str:
    t = TEXT[lang]
    last = case.last_instruction
    if not last:
        return t["used_agent"]
    day = last.get("requested_date")
    what = t.get(f"done_{last['action']}", t["done_reattempt"]).format(
        date=_format_day(date.fromisoformat(day), lang, locale) if day else ""
    )
    return t["used_text"].format(decision=what)


# ---- helpers ------------------------------------------------------------------------------------


def _message(status: int, lang: str, title_key: str, line_keys: list[str], *, bad: bool = False) -> HTMLResponse:
    t = TEXT[lang]
    lines = [t.get(k, k) for k in line_keys]
    html = render("customer/message.html", lang=lang, title=t[title_key], lines=lines, bad=bad, languages=())
    return _page(html, status)


def _page(html: str, status: int) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _temporal_error(exc: RPCError, lang: str) -> HTMLResponse:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return _message(404, lang, "not_found_title", ["not_found_text"], bad=True)
    log.warning("customer page: Temporal unavailable: %s", exc.status.name)
    return _message(503, lang, "unavailable_title", ["unavailable_text"], bad=True)


def _dates(now: datetime, tz: str, ndr: NdrSettings) -> list[date]:
    return allowed_reattempt_dates(now, tz, policy=NdrPolicy(max_days=ndr.reattempt_max_days))


def _format_day(d: date, lang: str, locale: str) -> str:
    try:
        loc = Locale.parse(locale.replace("-", "_")) if language_for(locale) == lang else Locale.parse(lang)
    except (UnknownLocaleError, ValueError):
        loc = Locale.parse(lang)
    return format_date(d, format="EEEE d MMMM", locale=loc)


def _e164(raw: str, locale: str, tz: str) -> str | None:
    raw = raw.strip()
    if not raw or len(raw) > 20:
        return None
    try:
        num = phonenumbers.parse(raw, phone_region(locale, tz))
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _guess_lang(request: Request, override: str | None) -> str:
    header = request.headers.get("accept-language", "")
    first = header.split(",")[0].split(";")[0].strip() if header else None
    return language_for(first, override)


def _ndr_settings(request: Request) -> NdrSettings:
    return getattr(request.app.state, "ndr_settings", None) or get_ndr_settings()


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] | None = getattr(request.app.state, "clock", None)
    return clock() if clock else datetime.now(UTC)


def _log_submission(request: Request, inp: CustomerReplyInput, loaded: _Loaded) -> None:
    """Audit trail in inbound_replies (same table as SMS and email); a double tap is logged once."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None or not inp.message_id:
        return
    try:
        with Session(engine) as s:
            row, created = routes.record_inbound(
                s, channel="web", provider_message_id=inp.message_id, from_address="web", body=inp.text,
            )
            if created and row.id is not None:
                routes.set_inbound_outcome(s, row.id, outcome="routed", shipment_id=loaded.token.shipment_id,
                                           attempt=loaded.token.attempt, detail=inp.kind)
    except Exception:  # noqa: BLE001 - the audit row must not stop the customer's answer
        log.exception("customer page: could not log the submission")
