"""The whole local stack in one asyncio loop: migrations, the embedded Temporal dev server (or an
external cluster), the worker and the API under uvicorn. `ndrflow up` and the end-to-end test
harness both drive this class, so what the tests start is what users run.

Order matters both ways: the server before the worker and the API; on stop the API first (no new
requests), then the worker (finishes its in-flight tasks), then the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from ndrflow.config import Settings
from ndrflow.devserver import DevServer, port_is_free
from ndrflow.migrate import migrate_locked
from ndrflow.temporal import connect
from ndrflow.worker import ACTIVITY_THREADS, build_notify_worker, build_worker
from store.db import engine_for

log = logging.getLogger("ndrflow")


class StackError(RuntimeError):
    """A part of the stack failed to start or stopped on its own; the message names it."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the stack owner decides when everything stops
    (uvicorn would otherwise re-raise the captured SIGINT after its shutdown)."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class HomeLock:
    """One `ndrflow up` per home: two dev servers on one SQLite file would corrupt it."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StackError(
                f"another ndrflow process (pid {holder}) is running with this home ({self.path}); "
                "stop it first or use another --home"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass
class Stack:
    settings: Settings
    # Embedded dev server ports (ignored when settings.temporal_address names a cluster).
    temporal_port: int = 7233
    ui_port: int = 8233
    # A socket already bound for the API (tests bind port 0 first so the URL is known early);
    # otherwise uvicorn binds settings.api_host:settings.api_port.
    api_socket: socket.socket | None = None
    run_api: bool = True
    migrate: bool = True
    run_worker: bool = True
    run_notify_worker: bool = True
    extra_activities: Sequence[Callable[..., Any]] = ()
    worker_options: dict[str, Any] = field(default_factory=dict)
    api_log_level: str = "info"
    access_log: bool = True

    devserver: DevServer | None = field(default=None, init=False)
    client: Client | None = field(default=None, init=False)
    engine: Engine | None = field(default=None, init=False)
    worker: Worker | None = field(default=None, init=False)
    notify_worker: Worker | None = field(default=None, init=False)
    server: uvicorn.Server | None = field(default=None, init=False)
    # Local mode serves the fake carrier too and points every carrier API at it, so the whole
    # NDR story works offline; production uses the carriers configured in the environment.
    fake_carrier: Any = field(default=None, init=False)
    carrier_settings: Any = field(default=None, init=False)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _lock: HomeLock | None = field(default=None, init=False)
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)

    @property
    def api_url(self) -> str:
        if self.api_socket is not None:
            host, port = self.api_socket.getsockname()[:2]
        else:
            host, port = self.settings.api_host, self.settings.api_port
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    @property
    def temporal_ui_url(self) -> str:
        if self.devserver is not None:
            return f"{self.devserver.ui_url}/namespaces/{self.settings.temporal_namespace}/workflows"
        return self.settings.temporal_ui_url

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        if self.run_api and self.api_socket is None and not port_is_free(s.api_host, s.api_port):
            # Checked first so a busy port fails in a second, not after the dev server started.
            raise StackError(
                f"the API port {s.api_host}:{s.api_port} is already in use: choose another with --port"
            )
        s.home.mkdir(parents=True, exist_ok=True)
        if s.embedded_temporal:
            self._lock = HomeLock(s.home / "ndrflow.lock")
            self._lock.acquire()
        url = s.effective_database_url
        if self.migrate:
            await asyncio.to_thread(migrate_locked, url)
        self.engine = engine_for(url)

        if s.embedded_temporal:
            from api.routes.codec import codec_ui_endpoint

            if "temporal_ui_url" not in s.model_fields_set:
                # The codec server's CORS allows exactly this origin.
                s.temporal_ui_url = f"http://127.0.0.1:{self.ui_port}"
            self.devserver = DevServer(
                home=s.home,
                port=self.temporal_port,
                ui_port=self.ui_port,
                namespace=s.temporal_namespace,
                # The embedded Web UI decodes sealed payloads through our codec endpoint.
                ui_codec_endpoint=codec_ui_endpoint(s, self.api_url) if self.run_api else None,
            )
            await self.devserver.start()
            self.client = await connect(s, address=self.devserver.address)
        else:
            self.client = await connect(s)
            await self._check_search_attributes()

        from carriers.settings import CarrierSettings

        self.carrier_settings = CarrierSettings()
        if s.embedded_temporal:
            from carriers.fake.server import FakeCarrierServer

            self.fake_carrier = FakeCarrierServer(port=s.fake_carrier_port)
            await asyncio.to_thread(self.fake_carrier.start)
            self.carrier_settings = self.carrier_settings.pointing_at(self.fake_carrier.url)

        if self.run_worker:
            options = dict(self.worker_options)
            threads = options.get("max_concurrent_activities", ACTIVITY_THREADS) + options.get(
                "max_concurrent_local_activities", ACTIVITY_THREADS
            )
            self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity")
            self.worker = build_worker(
                self.client,
                s,
                self.engine,
                extra_activities=self.extra_activities,
                activity_executor=self._executor,
                carrier_settings=self.carrier_settings,
                **options,
            )
            self._tasks["worker"] = asyncio.create_task(self._run_worker(), name="ndrflow-worker")
            if self.run_notify_worker:
                self.notify_worker = build_notify_worker(self.client, s, self.engine)
                self._tasks["notify-worker"] = asyncio.create_task(self._run_notify_worker(), name="ndrflow-notify-worker")

        if self.run_api:
            from api.main import create_app

            app = create_app(s, temporal=self.client, carrier_settings=self.carrier_settings)
            config = uvicorn.Config(
                app,
                host=s.api_host,
                port=s.api_port,
                log_level=self.api_log_level,
                access_log=self.access_log,
                log_config=None,  # log through the root logger the CLI configured
                lifespan="on",
                timeout_graceful_shutdown=5,
                proxy_headers=False,
            )
            self.server = _EmbeddedServer(config)
            self._tasks["api"] = asyncio.create_task(self._run_api(), name="ndrflow-api")
            while not self.server.started:
                if self._tasks["api"].done():
                    self._tasks["api"].result()  # raises the reason
                    raise StackError("the API server stopped while starting")
                if "worker" in self._tasks and self._tasks["worker"].done():
                    self._tasks["worker"].result()
                await asyncio.sleep(0.02)

    async def _check_search_attributes(self) -> None:
        """On an external cluster we do not register anything ourselves; say what is missing
        (workflows would fail every task upserting an unknown attribute)."""
        from ndrflow.temporal_setup import existing_search_attributes
        from workflows.search import ALL_KEYS

        assert self.client is not None
        try:
            have = await existing_search_attributes(self.client)
        except Exception as exc:  # noqa: BLE001 - e.g. Temporal Cloud refuses the operator API
            log.debug("cannot list search attributes: %s", exc)
            return
        missing = [k.name for k in ALL_KEYS if k.name not in have]
        if missing:
            log.warning(
                "namespace %r lacks search attributes %s: run `ndrflow temporal setup`",
                self.settings.temporal_namespace,
                ", ".join(missing),
            )

    async def _run_worker(self) -> None:
        assert self.worker is not None
        try:
            await self.worker.run()
        except Exception as exc:
            raise StackError(f"the worker stopped: {exc}") from exc

    async def _run_notify_worker(self) -> None:
        assert self.notify_worker is not None
        try:
            await self.notify_worker.run()
        except Exception as exc:
            raise StackError(f"the notify worker stopped: {exc}") from exc

    async def _run_api(self) -> None:
        assert self.server is not None
        try:
            await self.server.serve(sockets=[self.api_socket] if self.api_socket is not None else None)
        except SystemExit:
            # uvicorn exits the process when it cannot bind or the app's startup fails; here it
            # must not: the worker and the dev server still have to stop cleanly.
            raise StackError(
                f"the API server could not start on {self.api_url} (port in use? see the log above)"
            ) from None

    async def wait(self) -> None:
        """Return when any part stops on its own (raising its error), i.e. never in normal runs."""
        if not self._tasks:
            return
        done, _ = await asyncio.wait(self._tasks.values(), return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        name = next(n for n, t in self._tasks.items() if t in done)
        raise StackError(f"the {name} stopped unexpectedly")

    async def stop(self) -> None:
        """Stop the API, then the worker, then the dev server. Safe to call more than once."""
        errors: list[BaseException] = []
        api = self._tasks.pop("api", None)
        if self.server is not None:
            self.server.should_exit = True
        if api is not None:
            errors += await _finish(api, timeout=10)
        worker = self._tasks.pop("worker", None)
        if self.worker is not None and worker is not None and not worker.done():
            try:
                await asyncio.wait_for(self.worker.shutdown(), timeout=15)
            except Exception as exc:  # noqa: BLE001 - still stop the server below
                errors.append(exc)
        if worker is not None:
            errors += await _finish(worker, timeout=5)
        notify = self._tasks.pop("notify-worker", None)
        if self.notify_worker is not None and notify is not None and not notify.done():
            try:
                await asyncio.wait_for(self.notify_worker.shutdown(), timeout=15)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if notify is not None:
            errors += await _finish(notify, timeout=5)
        if self.fake_carrier is not None:
            await asyncio.to_thread(self.fake_carrier.stop)
            self.fake_carrier = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self.devserver is not None:
            await self.devserver.stop()
            self.devserver = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        for err in errors:
            log.warning("while stopping: %s", err)


async def _finish(task: asyncio.Task[None], timeout: float) -> list[BaseException]:
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return [StackError(f"{task.get_name()} did not stop within {timeout}s; cancelled")]
    except asyncio.CancelledError:
        return []
    except StackError:
        return []  # already reported by wait()
    except Exception as exc:  # noqa: BLE001
        return [exc]
    return []
