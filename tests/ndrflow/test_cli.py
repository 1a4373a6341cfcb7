"""The `ndrflow` command as users run it: a real subprocess, real stdout/stderr and exit codes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from ndrflow.devserver import free_port, process_alive
from store.db import make_engine
from store.keys import authenticate

NDRFLOW = str(Path(sys.executable).parent / "ndrflow")
KEY = r"ndr_[mca]_[A-Za-z0-9_-]{43}"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDRFLOW_")}
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1", **extra)
    return env


def ndrflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NDRFLOW, *args], capture_output=True, text=True, env=clean_env(), timeout=timeout)


def authenticate_in(home: Path, raw: str):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{home / 'ndrflow.db'}")
    try:
        with Session(engine) as s:
            return authenticate(s, raw)
    finally:
        engine.dispose()


def test_keys_create_prints_only_the_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = ndrflow(
        "keys", "create", "--home", str(home), "--scope", "merchant", "--merchant", "acme", "--name", "shop"
    )
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"ndr_m_[A-Za-z0-9_-]{43}\n", r.stdout), r.stdout
    row = authenticate_in(home, r.stdout.strip())
    assert row is not None and (row.scope, row.merchant_id, row.name) == ("merchant", "acme", "shop")

    r = ndrflow("keys", "create", "--home", str(home), "--scope", "carrier", "--carrier", "generic")
    assert r.returncode == 0 and re.fullmatch(r"ndr_c_\S{43}\n", r.stdout)

    # Listing shows prefixes, never a whole key; revoking one by prefix makes it useless.
    carrier_key = authenticate_in(home, r.stdout.strip())
    assert carrier_key is not None
    listed = ndrflow("keys", "list", "--home", str(home))
    assert listed.returncode == 0 and "acme" in listed.stdout and "generic" in listed.stdout
    assert not re.search(KEY, listed.stdout)
    revoked = ndrflow("keys", "revoke", "--home", str(home), carrier_key.prefix)
    assert revoked.returncode == 0, revoked.stderr
    assert authenticate_in(home, r.stdout.strip()) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scope", "admin"], "unknown scope 'admin'"),
        (["--scope", "merchant"], "needs a merchant id"),
        (
            ["--scope", "carrier", "--carrier", "generic", "--merchant", "acme"],
            "cannot be bound to a merchant",
        ),
    ],
)
def test_keys_create_refuses_bad_scopes_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    r = ndrflow("keys", "create", "--home", str(tmp_path / "home"), *args)
    assert r.returncode != 0
    assert r.stdout == ""
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def _temporal_processes_for(home: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "start-dev" in cmdline and str(home) in cmdline and process_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _start_up(home: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            NDRFLOW,
            "up",
            "--home",
            str(home),
            "--port",
            str(port),
            "--temporal-port",
            str(free_port()),
            "--ui-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        start_new_session=True,
    )


def _wait_healthy(proc: subprocess.Popen[str], port: int, timeout: float = 45) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, errs = proc.communicate()
            pytest.fail(f"ndrflow up exited with {proc.returncode}:\n{out}\n{errs}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            last = r
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"ndrflow up not healthy within {timeout}s (last: {last and last.text})")


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[str, str, float]:
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out, errs = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, errs = proc.communicate()
        pytest.fail(f"ndrflow up did not stop after {sig.name}:\n{errs}")
    return out, errs, time.monotonic() - t0


@pytest.mark.e2e
def test_up_serves_prints_keys_and_stops_cleanly_then_resumes_with_same_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    proc = _start_up(home, port)
    try:
        assert _wait_healthy(proc, port) == {"status": "ok", "temporal": "ok", "database": "ok"}
        temporal_pid = int((home / "temporal.pid").read_text())
        assert process_alive(temporal_pid)
    finally:
        out, errs, took = _stop(proc, signal.SIGINT)
    assert proc.returncode == 0, errs
    assert took < 10, f"stopping took {took:.1f}s"
    assert not process_alive(temporal_pid)
    assert _temporal_processes_for(home) == []
    for label in (
        "/docs",
        "/dev/outbox",
        "Temporal UI",
        "Merchant key (demo)",
        "Carrier key (generic)",
        "Agent key",
    ):
        assert label in out, out
    keys = re.findall(KEY, out)
    assert {k[:6] for k in keys} == {"ndr_m_", "ndr_c_", "ndr_a_"}
    assert all(authenticate_in(home, k) is not None for k in keys)
    assert "Traceback" not in errs

    # Same home again (SIGTERM this time): the Temporal DB and the development keys are reused.
    port = free_port()
    proc = _start_up(home, port)
    try:
        _wait_healthy(proc, port)
    finally:
        out2, errs2, _ = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, errs2
    assert set(re.findall(KEY, out2)) == set(keys)
    assert _temporal_processes_for(home) == []


def test_up_reports_a_busy_port_and_exits_nonzero(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        r = subprocess.run(
            [
                NDRFLOW,
                "up",
                "--home",
                str(tmp_path / "home"),
                "--port",
                str(free_port()),
                "--temporal-port",
                str(taken),
                "--ui-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
    assert r.returncode == 1
    assert f"127.0.0.1:{taken} is already in use" in r.stderr
    assert _temporal_processes_for(tmp_path / "home") == []


@pytest.mark.e2e
async def test_production_commands_against_an_external_cluster(tmp_path: Path) -> None:
    """`temporal setup` registers the attributes on a bare namespace; `worker` and `api` run alone."""
    from ndrflow.devserver import DevServer
    from ndrflow.temporal_setup import existing_search_attributes
    from workflows import search

    cluster = DevServer(
        home=tmp_path / "cluster", port=free_port(), namespace="prod", search_attributes=[], ui=False
    )
    client = await cluster.start()
    api_port = free_port()
    env = clean_env(
        NDRFLOW_TEMPORAL_ADDRESS=cluster.address,
        NDRFLOW_TEMPORAL_NAMESPACE="prod",
        NDRFLOW_HOME=str(tmp_path / "home"),
        NDRFLOW_API_PORT=str(api_port),
    )
    procs: list[subprocess.Popen[str]] = []
    try:
        assert not set(await existing_search_attributes(client)) & {k.name for k in search.ALL_KEYS}
        setup = subprocess.run(
            [NDRFLOW, "temporal", "setup"], capture_output=True, text=True, env=env, timeout=60
        )
        assert setup.returncode == 0, setup.stderr
        assert "added" in setup.stderr and "ShipmentStatus" in setup.stderr
        assert {k.name for k in search.ALL_KEYS} <= set(await existing_search_attributes(client))
        again = subprocess.run(
            [NDRFLOW, "temporal", "setup"], capture_output=True, text=True, env=env, timeout=60
        )
        assert again.returncode == 0 and "already present" in again.stderr

        for part in ("worker", "api"):
            procs.append(
                subprocess.Popen(
                    [NDRFLOW, part], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
                )
            )
        health = _wait_healthy(procs[1], api_port)
        assert health == {"status": "ok", "temporal": "ok", "database": "ok"}
        # The worker polls the task queue on the external namespace.
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        for _ in range(50):
            tq = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="prod",
                    task_queue=TaskQueue(name="ndrflow"),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            if tq.pollers:
                break
            await asyncio.sleep(0.1)
        assert tq.pollers, "the worker never polled"
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _, errs = proc.communicate(timeout=20)
            assert proc.returncode == 0, errs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        await cluster.stop()
    # No dev server of its own was started by `worker` or `api`.
    assert not (tmp_path / "home" / "temporal.db").exists()


def test_flags_reach_every_settings_object_in_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ndrflow.cli import load_settings
    from ndrflow.config import get_settings

    for name in ("NDRFLOW_HOME", "NDRFLOW_API_PORT", "NDRFLOW_API_HOST"):
        monkeypatch.delenv(name, raising=False)  # restored (removed) after the test
    monkeypatch.chdir(tmp_path)
    settings = load_settings(home=Path("relative-home"), api_port=18123, api_host=None)
    try:
        later = get_settings()
        assert later.api_port == settings.api_port == 18123
        assert later.home == (tmp_path / "relative-home").resolve()
        assert later.secret_key == settings.secret_key  # same home, same generated secret
        assert "NDRFLOW_API_HOST" not in os.environ  # flags not given are not exported
    finally:
        get_settings.cache_clear()
