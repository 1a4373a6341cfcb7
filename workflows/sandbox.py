"""The workflow sandbox settings every worker (and the replayer) uses.

Passed through (imported once, shared with the host) rather than re-imported per workflow run:
- `zoneinfo`: the sandbox otherwise hands workflow code a restricted ZoneInfo proxy that
  `datetime.astimezone` refuses; zone data is read-only, so sharing it is deterministic.
- our pure modules (domain/, workflows/*_policy, messages): deterministic, no I/O, and
  re-importing them for every new workflow costs worker CPU (DESIGN.md: "Known cost").
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH = (
    "zoneinfo",
    "domain",
    "workflows.messages",
    "workflows.ids",
    "workflows.search",
    "workflows.notify_policy",
    "workflows.ndr_policy",
    "workflows.shipment_policy",
    "dateparser",
    "babel",
)


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))
