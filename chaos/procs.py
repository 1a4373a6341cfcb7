"""The system under test as separate processes on one home, so each can be killed alone:
the Temporal dev server (`temporal server start-dev --db-filename`), `ndrflow worker` and
`ndrflow api`. Everything binds 127.0.0.1."""

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
    api_port: int = field(default_factory=free_port)
    temporal_port: int = field(default_factory=free_port)
    twilio_token: str = field(default_factory=lambda: _generate_secret("twilio_auth_token"))
    devserver: DevServer | None = None
    worker: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.home / 'ndrflow.db').resolve()}"

    def env(self) -> dict[str, str]:
        secrets_ = {"carrier_webhook_secret": self.carrier_secret, "twilio_auth_token": self.twilio_token}
        env = stack_env(self.home, self.api_port, self.fake_url, secrets_)
        env["NDRFLOW_TEMPORAL_ADDRESS"] = f"127.0.0.1:{self.temporal_port}"
        # Quiet hours would measure the policy, not exactly-once: off for this run.
        env["NDRFLOW_QUIET_HOURS"] = ""
        # Fixed here so the worker and the API never race to generate them in secrets.json.
        for name in ("secret_key", "codec_keys", "sendgrid_inbound_token"):
            env[f"NDRFLOW_{name.upper()}"] = self._secret(name)
        return env

    _secrets: dict[str, str] = field(default_factory=dict)

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

    def _spawn(self, what: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.home / f"{what}.log").open("ab")
        try:
            return subprocess.Popen(
                [str(Path(sys.executable).parent / "ndrflow"), what, "--log-level", "warning", *args],
                cwd=self.home,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def start_worker(self) -> None:
        self.worker = self._spawn("worker", [])

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait()

    async def start_api(self, timeout: float = 60) -> None:
        self.api = self._spawn("api", ["--port", str(self.api_port), "--no-migrate"])
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

    async def stop(self) -> None:
        for p in (self.api, self.worker):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(asyncio.to_thread(p.wait), 20)
                except TimeoutError:
                    p.kill()
                    p.wait()
        if self.devserver is not None:
            await self.devserver.stop()
