"""How workflow code runs: the strict sandbox in tests, a light runner in production.

Temporal's Python sandbox re-imports a workflow's module for every new run and proxies the
stdlib so a non-deterministic call (`datetime.now()`, `random`, I/O) fails the workflow task.
That protection is worth having where code changes: every workflow test, the replay tests and
the history recorder use `strict_workflow_runner()`, so a non-deterministic call in
workflows/ fails `make test`. At run time it costs what the benchmark measured (bench/,
README "Performance"): the per-run re-import of workflows/shipment.py and its sandbox made
new workflows ~3x slower to start and held ~0.2 MB per cached workflow, so
`ndrflow worker` uses `workflow_runner()`: no sandbox, unless NDRFLOW_WORKFLOW_SANDBOX=strict
(ndrflow.config.Settings.workflow_sandbox).

Passed through even in the strict sandbox (imported once, shared with the host):
- `zoneinfo`: the sandbox otherwise hands workflow code a restricted ZoneInfo proxy that
  `datetime.astimezone` refuses; zone data is read-only, so sharing it is deterministic.
- our pure modules (domain/, workflows/*_policy, messages): deterministic, no I/O, and
  re-importing them for every new workflow costs worker CPU (DESIGN.md: "Known cost").
"""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
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


def strict_workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox: tests and replay run workflow code under it."""
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))


def workflow_runner(*, strict: bool = False) -> WorkflowRunner:
    """What workers run with (ndrflow.worker.worker_tuning passes the setting). The workflow
    module has no mutable module state (constants only), so running it unsandboxed shares
    nothing between runs; determinism is the tests' job."""
    return strict_workflow_runner() if strict else UnsandboxedWorkflowRunner()
