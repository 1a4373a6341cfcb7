"""The system under test, started the way users start it: `ndrflow up` in its own process with a
temporary home and free loopback ports, the fake carrier (in this process, on a thread), and the
engine baseline's worker in a third process against the same dev server.

Everything binds 127.0.0.1; the home is deleted at the end unless `keep` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from carriers.fake.server import FakeCarrierServer
from carriers.settings import CarrierSettings
from ndrflow.devserver import free_port

ROOT = Path(__file__).resolve().parent.parent
CARRIER_CODES = ("generic", "delhivery", "shiprocket", "clickpost")


@dataclass
class Capabilities:
    """Which parts of the journey the running stack can take (colleagues' work lands over time)."""

    paths: set[str] = field(default_factory=set)

    @property
    def outbox(self) -> bool:
        return "/v1/dev/outbox" in self.paths

    @property
    def twilio_inbound(self) -> bool:
        return "/v1/webhooks/twilio/inbound" in self.paths

    @property
    def cases(self) -> bool:
        return "/v1/cases" in self.paths


@dataclass
class StackProcess:
    home: Path
    api_port: int
    temporal_port: int
    ui_port: int
    secrets: dict[str, str]
    fake_carrier_port: int = 0
    database_url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    keys: dict[str, str] = field(default_factory=dict)
    caps: Capabilities = field(default_factory=Capabilities)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def fake_carrier_url(self) -> str:
        """Where `ndrflow up` serves its own fake carrier in local mode (every carrier API points there)."""
        return f"http://127.0.0.1:{self.fake_carrier_port}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'ndrflow.db').resolve()}"

    @property
    def twilio_auth_token(self) -> str:
        return self.secrets["twilio_auth_token"]

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.home / "ndrflow-up.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def stack_env(
    home: Path,
    api_port: int,
    fake_url: str,
    secrets_: dict[str, str],
    database_url: str = "",
    fake_port: int = 0,
    notify_per_second: float | None = None,
) -> dict[str, str]:
    """The environment of `ndrflow up`: local mode, our secrets, every carrier API at the fake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDRFLOW_")}
    pointed = CarrierSettings().pointing_at(fake_url)
    for name in (
        "delhivery_base_url",
        "shiprocket_base_url",
        "clickpost_base_url",
        "generic_base_url",
        "generic_instruction_url",
        "delhivery_api_token",
        "shiprocket_email",
        "shiprocket_password",
        "clickpost_username",
        "clickpost_api_key",
        "clickpost_cp_id",
        "clickpost_account_code",
    ):
        env[f"NDRFLOW_{name.upper()}"] = str(getattr(pointed, name))
    for code in CARRIER_CODES:
        env[f"NDRFLOW_{code.upper()}_WEBHOOK_SECRET"] = secrets_["carrier_webhook_secret"]
    env["NDRFLOW_HOME"] = str(home)
    env["NDRFLOW_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{api_port}"
    env["NDRFLOW_TWILIO_AUTH_TOKEN"] = secrets_["twilio_auth_token"]
    # The fake answers Delhivery's UPL follow-up at once; keep the adapter's polling short too.
    env["NDRFLOW_DELHIVERY_UPL_POLL_INTERVAL_S"] = "0.5"
    if database_url:
        env["NDRFLOW_DATABASE_URL"] = database_url
    if fake_port:
        # Local mode serves a fake carrier inside `ndrflow up` and points every carrier API at it
        # (overriding the base URLs above): pin its port so we can read what it received.
        env["NDRFLOW_FAKE_CARRIER_PORT"] = str(fake_port)
    env["PYTHONUNBUFFERED"] = "1"
    # Loopback load is the point here; the public endpoints' per-IP limits would refuse it.
    env["NDRFLOW_RATE_LIMIT_ENABLED"] = "false"
    if notify_per_second is not None:
        # The provider queue's rate limit (a Twilio/SendGrid account's): the outbox has none,
        # and at the default the limit, not the engine, would be the knee of both ramps.
        env["NDRFLOW_NOTIFY_MAX_PER_SECOND"] = str(notify_per_second)
    return env


async def start_stack(
    fake_url: str,
    *,
    secrets_: dict[str, str] | None = None,
    database_url: str = "",
    timeout: float = 90,
    notify_per_second: float | None = None,
) -> StackProcess:
    home = Path(tempfile.mkdtemp(prefix="ndrflow-bench-"))
    secrets_ = secrets_ or {
        "carrier_webhook_secret": secrets.token_hex(16),
        "twilio_auth_token": secrets.token_hex(16),
    }
    st = StackProcess(
        home=home,
        api_port=free_port(),
        temporal_port=free_port(),
        ui_port=free_port(),
        secrets=secrets_,
        fake_carrier_port=free_port(),
        database_url=database_url,
    )
    log = (home / "ndrflow-up.log").open("wb")
    binary = Path(sys.executable).parent / "ndrflow"
    cmd = [
        str(binary),
        "up",
        "--home",
        str(home),
        "--port",
        str(st.api_port),
        "--temporal-port",
        str(st.temporal_port),
        "--ui-port",
        str(st.ui_port),
        # Access logs for thousands of requests would be part of what we measure; production
        # runs behind a proxy that logs them.
        "--log-level",
        "warning",
    ]
    st.proc = subprocess.Popen(
        cmd,
        cwd=home,
        env=stack_env(
            home, st.api_port, fake_url, secrets_, database_url, st.fake_carrier_port, notify_per_second
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            if st.proc.poll() is not None:
                raise RuntimeError(f"`ndrflow up` exited with {st.proc.returncode}:\n{st.log_tail()}")
            if time.monotonic() > deadline:
                await stop_stack(st)
                raise RuntimeError(f"`ndrflow up` did not become healthy in {timeout:.0f}s:\n{st.log_tail()}")
            try:
                r = await http.get(f"{st.api_url}/healthz")
                if r.status_code == 200 and (home / "secrets.json").exists():
                    stored = json.loads((home / "secrets.json").read_text())
                    if "dev_api_keys" in stored:
                        st.keys = dict(stored["dev_api_keys"])
                        break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        spec = (await http.get(f"{st.api_url}/openapi.json")).json()
        st.caps = Capabilities(paths=set(spec.get("paths", {})))
    return st


async def stop_stack(st: StackProcess, *, keep_home: bool = False) -> None:
    if st.proc is not None and st.proc.poll() is None:
        st.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.to_thread(st.proc.wait), 30)
        except TimeoutError:
            st.proc.kill()
            await asyncio.to_thread(st.proc.wait)
    if not keep_home:
        shutil.rmtree(st.home, ignore_errors=True)


def stack_codec(home: Path) -> Any:
    """The payload codec the stack seals Temporal payloads with (ndrflow/codec.py), from the
    keys `ndrflow up` generated into the home's secrets.json; None when it runs without one."""
    try:
        keys = json.loads((home / "secrets.json").read_text()).get("codec_keys")
    except (OSError, ValueError):
        return None
    if not keys:
        return None
    from ndrflow.codec import EncryptionCodec, parse_keys

    return EncryptionCodec(parse_keys(keys))


def create_merchant_key(st: StackProcess, merchant_id: str) -> str:
    """A merchant key for one benchmark phase (phases are told apart by MerchantId)."""
    from sqlmodel import Session

    from store.db import engine_for
    from store.keys import create_key

    with Session(engine_for(st.effective_database_url)) as session:
        return create_key(session, scope="merchant", merchant_id=merchant_id, name=f"bench {merchant_id}")


def start_fake_carrier(secret: str) -> FakeCarrierServer:
    # The fake checks generic instructions' signatures with the same secret the stack signs with.
    return FakeCarrierServer(generic_secret=secret).start()


@dataclass
class BaselineProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    task_queue: str

    @property
    def pid(self) -> int:
        return self.proc.pid


async def start_baseline_worker(
    address: str, workdir: Path, plans: dict[str, Any], task_queue: str, notify_per_second: float
) -> BaselineProcess:
    plans_path = workdir / "baseline-plans.json"
    plans_path.write_text(json.dumps(plans))
    log_path = workdir / "baseline-activities.jsonl"
    log_path.unlink(missing_ok=True)
    env = dict(
        os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.baseline",
            "--address",
            address,
            "--task-queue",
            task_queue,
            "--plans",
            str(plans_path),
            "--log",
            str(log_path),
            "--notify-per-second",
            str(notify_per_second),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(workdir / "baseline-worker.log").open("wb"),
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(
            f"baseline worker did not start: {(workdir / 'baseline-worker.log').read_text()[-2000:]}"
        )
    return BaselineProcess(proc=proc, log_path=log_path, task_queue=task_queue)


async def stop_baseline_worker(bp: BaselineProcess) -> None:
    if bp.proc.poll() is None:
        bp.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(bp.proc.wait), 20)
        except TimeoutError:
            bp.proc.kill()
    with contextlib.suppress(Exception):
        if bp.proc.stdout:
            bp.proc.stdout.close()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (for per-phase CPU budgets)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return None


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
