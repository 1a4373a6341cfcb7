"""Fallback: an NDR instruction report emailed to the carrier's operations address.

Used when a carrier has no NDR API (EasyPost, AfterShip, Delhivery RTO, ...), or its API rejected
the instruction or stayed down after retries. The text is plain, one instruction per email, with
everything an operations desk needs to act without logging in anywhere: waybill, action, date,
new address or phone, and our reference to quote back.

The email itself goes through the email channel (SendGrid or the local outbox), injected as
``send_email(to, subject, text)`` (sync or async), so this module does no I/O of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from carriers.settings import CarrierSettings
from domain.instructions import InstructionResult, SendInstructionInput
from domain.taxonomy import NdrAction

SendEmail = Callable[[str, str, str], Awaitable[None] | None]

ACTION_WORDS: dict[str, str] = {
    NdrAction.reattempt: "RE-ATTEMPT delivery",
    NdrAction.reschedule: "RESCHEDULE delivery to the date below",
    NdrAction.update_address: "UPDATE THE ADDRESS below and re-attempt",
    NdrAction.update_phone: "UPDATE THE PHONE NUMBER below and re-attempt",
    NdrAction.rto: "RETURN TO ORIGIN (do not re-attempt)",
    NdrAction.hold_for_pickup: "HOLD FOR CUSTOMER PICKUP",
}


def render_report(
    inp: SendInstructionInput,
    *,
    carrier_name: str | None = None,
    why: str = "",
    now: datetime | None = None,
) -> tuple[str, str]:
    """(subject, text) of the report. Pure: same input, same text."""
    ins = inp.instruction
    carrier = carrier_name or inp.carrier
    action = ACTION_WORDS.get(ins.action, ins.action.upper())
    subject = (
        f"NDR instruction: {action.split(' (')[0]} - AWB {inp.tracking_number} (ref {inp.idempotency_key})"
    )
    lines = [
        f"NDR instruction for {carrier}",
        "",
        f"AWB / tracking number : {inp.tracking_number}",
        f"Action                : {action}",
        f"NDR attempt           : {inp.attempt}",
    ]
    if ins.requested_date:
        lines.append(f"Requested date        : {ins.requested_date}")
    if ins.phone:
        lines.append(f"New phone             : {ins.phone}")
    if ins.address:
        for key, label in (
            ("line1", "Address line 1"),
            ("line2", "Address line 2"),
            ("landmark", "Landmark"),
            ("city", "City"),
            ("postal_code", "PIN / postal code"),
        ):
            if ins.address.get(key):
                lines.append(f"{label:<22}: {ins.address[key]}")
    if ins.comments:
        lines.append(f"Comments              : {ins.comments}")
    lines.append(f"Decided by            : {ins.source}")
    lines += [
        "",
        f"Our reference         : {inp.idempotency_key}",
        f"Sent                  : {(now or datetime.now(UTC)).strftime('%Y-%m-%d %H:%M UTC')}",
    ]
    if why:
        lines += ["", f"Why by email: {why}"]
    lines += [
        "",
        "Please act on this instruction and reply to this email quoting our reference",
        "if it cannot be carried out. This report is sent once per instruction.",
    ]
    return subject, "\n".join(lines) + "\n"


async def send_instruction(
    inp: SendInstructionInput,
    cfg: CarrierSettings,
    send_email: SendEmail | None,
    *,
    why: str = "",
) -> InstructionResult:
    """Email the report. status "emailed" (the carrier has not acknowledged anything yet), or
    "unsupported" when no operations address or no email sender is configured."""
    to = cfg.ops_email(inp.carrier)
    if not to:
        return InstructionResult(
            status="unsupported",
            detail=f"no operations email configured for {inp.carrier} (NDRFLOW_CARRIER_OPS_EMAIL)",
        )
    if send_email is None:
        return InstructionResult(status="unsupported", detail="no email sender configured")
    subject, text = render_report(inp, why=why)
    outcome = send_email(to, subject, text)
    if inspect.isawaitable(outcome):
        await outcome
    return InstructionResult(
        status="emailed",
        carrier_reference=f"email:{to}",
        detail=f"report emailed to {inp.carrier} operations",
    )
