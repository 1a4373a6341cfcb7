"""The system under test as separate processes on one home, split the way a production
deployment splits it: the Temporal dev server (`temporal server start-dev --db-filename`),
`ndrflow api` and any number of `ndrflow worker` processes, each of which can be killed alone.
Used by the chaos run (kills them) and by `bench --scale` (1, 2, 4 workers). Everything binds
127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.stack import stack_env
from ndrflow.config import _generate_secret
from ndrflow.devserver import DevServer, free_port


@dataclass
class Procs:
    home: Path
    fake_url: str
    carrier_secret: str
    twilio_token: str = field(default_factory=lambda: _generate_secret("twilio_auth_token"))
    # The provider queue's rate limit (bench/stack.py stack_env); None keeps ndrflow's default.
    notify_per_second: float | None = None
    # Quiet hours would measure the policy, not exactly-once: the chaos run turns them off.
    quiet_hours: bool = True
    api_port: int = field(default_factory=free_port)
    temporal_port: int = field(default_factory=free_port)
    devserver: DevServer | None = None
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _secrets: dict[str, str] = field(default_factory=dict)
    _spawned: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.home / 'ndrflow.db').resolve()}"

    @property
    def secrets(self) -> dict[str, str]:
        """The webhook secrets the load generator signs with (bench/stack.py StackProcess)."""
        return {"carrier_webhook_secret": self.carrier_secret, "twilio_auth_token": self.twilio_token}

    def env(self) -> dict[str, str]:
        env = stack_env(self.home, self.api_port, self.fake_url, self.secrets, notify_per_second=self.notify_per_second)
        env["NDRFLOW_TEMPORAL_ADDRESS"] = f"127.0.0.1:{self.temporal_port}"
        if not self.quiet_hours:
            env["NDRFLOW_QUIET_HOURS"] = ""
        # Fixed here so the processes never race to generate them in secrets.json.
        for name in ("secret_key", "codec_keys", "sendgrid_inbound_token"):
            env[f"NDRFLOW_{name.upper()}"] = self._secret(name)
        return env

    def _secret(self, name: str) -> str:
        if name not in self._secrets:
            self._secrets[name] = _generate_secret(name)
        return self._secrets[name]

    async def start_temporal(self) -> None:
        self.devserver = DevServer(home=self.home, port=self.temporal_port, ui=False)
        await self.devserver.start()

    def kill_temporal(self) -> None:
        assert self.devserver is not None and self.devserver.process is not None
        os.killpg(self.devserver.process.pid, signal.SIGKILL)  # its own session: the whole group
        self.devserver.process.wait()
        self.devserver = None

    def _spawn(self, what: str, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.home / f"{log_name}.log").open("ab") as log:
            return subprocess.Popen(
                [str(Path(sys.executable).parent / "ndrflow"), what, "--log-level", "warning", *args],
                cwd=self.home,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start_worker(self) -> None:
        """One more `ndrflow worker` (the chaos run: one at a time, into worker.log)."""
        self.workers.append(self._spawn("worker", [], "worker"))

    def kill_worker(self) -> None:
        """SIGKILL every worker: what a lost host does to the work it held."""
        for p in self.workers:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.workers = []

    async def start_workers(self, n: int, timeout: float = 60) -> None:
        """n more workers, each with its own log; returns once every one of them polls."""
        names = []
        for _ in range(n):
            self._spawned += 1
            names.append(f"worker-{self._spawned}")
            self.workers.append(self._spawn("worker", ["--no-migrate"], names[-1]))
        # `ndrflow worker` says when it polls (stderr, its log); at --log-level warning too.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if any(p.poll() is not None for p in self.workers):
                raise RuntimeError(f"`ndrflow worker` exited:\n{self.tail(names[0])}")
            texts = [(self.home / f"{name}.log").read_text(errors="replace") if (self.home / f"{name}.log").exists() else "" for name in names]
            if all("polling" in t for t in texts):
                return
            if loop.time() > deadline:
                raise RuntimeError(f"workers not polling in {timeout:.0f}s:\n{texts}")
            await asyncio.sleep(0.3)

    async def start_api(self, timeout: float = 60) -> None:
        self.api = self._spawn("api", ["--port", str(self.api_port), "--no-migrate"], "api")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=3) as http:
            while loop.time() < deadline:
                if self.api.poll() is not None:
                    raise RuntimeError(f"`ndrflow api` exited:\n{self.tail('api')}")
                try:
                    if (await http.get(f"{self.api_url}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)
        raise RuntimeError(f"`ndrflow api` not healthy in {timeout}s:\n{self.tail('api')}")

    def tail(self, what: str, n: int = 30) -> str:
        try:
            return "\n".join((self.home / f"{what}.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def stop_workers(self) -> None:
        await _interrupt(self.workers, 25)
        self.workers = []

    async def stop(self) -> None:
        await _interrupt([self.api] if self.api is not None else [], 20)
        await self.stop_workers()
        if self.devserver is not None:
            await self.devserver.stop()


async def _interrupt(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGINT (a clean stop: in-flight tasks finish), SIGKILL after `grace_s`."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.send_signal(signal.SIGINT)
    for p in running:
        try:
            await asyncio.wait_for(asyncio.to_thread(p.wait), grace_s)
        except TimeoutError:
            p.kill()
            await asyncio.to_thread(p.wait)
