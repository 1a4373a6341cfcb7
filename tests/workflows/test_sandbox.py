"""Production workers run workflow code without the sandbox (workflows/sandbox.py); that is safe
only while the workflow module shares nothing mutable between runs, which these tests hold."""

from __future__ import annotations

import types

import pytest
from pydantic import ValidationError
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import workflows.shipment as shipment
from ndrflow.worker import worker_tuning
from workflows.sandbox import strict_workflow_runner

IMMUTABLE = (str, bytes, int, float, bool, type(None), frozenset, tuple, types.ModuleType, type, types.FunctionType)


def _mutable_globals(module: types.ModuleType) -> dict[str, str]:
    found = {}
    for name, value in vars(module).items():
        if name.startswith("__") or isinstance(value, IMMUTABLE):
            continue
        if type(value).__module__.startswith(("__future__", "typing", "datetime", "temporalio.common")):
            continue  # `annotations`, type aliases, timedelta constants, RetryPolicy (the SDK only reads it)
        if value is getattr(module, "_UNSET", None):
            continue  # a sentinel: identity only
        found[name] = type(value).__name__
    return found


def test_workflow_module_holds_no_mutable_state_between_runs() -> None:
    assert _mutable_globals(shipment) == {}


def test_the_check_sees_a_mutable_global() -> None:
    fake = types.ModuleType("fake")
    fake.SEEN = set()  # type: ignore[attr-defined]
    fake.LIMIT = 3  # type: ignore[attr-defined]
    assert _mutable_globals(fake) == {"SEEN": "set"}


def test_workers_run_light_unless_strict_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NDRFLOW_WORKFLOW_SANDBOX", raising=False)
    assert isinstance(worker_tuning()["workflow_runner"], UnsandboxedWorkflowRunner)
    monkeypatch.setenv("NDRFLOW_WORKFLOW_SANDBOX", "strict")
    assert isinstance(worker_tuning()["workflow_runner"], SandboxedWorkflowRunner)
    assert isinstance(strict_workflow_runner(), SandboxedWorkflowRunner)


def test_the_workflow_cache_size_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NDRFLOW_MAX_CACHED_WORKFLOWS", raising=False)
    assert worker_tuning()["max_cached_workflows"] == 500
    monkeypatch.setenv("NDRFLOW_MAX_CACHED_WORKFLOWS", "120")
    assert worker_tuning()["max_cached_workflows"] == 120


@pytest.mark.parametrize(("name", "value"), [("NDRFLOW_WORKFLOW_SANDBOX", "loose"), ("NDRFLOW_MAX_CACHED_WORKFLOWS", "0")])
def test_a_bad_value_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("NDRFLOW_").lower()):
        worker_tuning()
