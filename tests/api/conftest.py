"""API test fixtures: the real app on a migrated database, with a fake Temporal client that
records what it was asked to start, signal and query."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.main import create_app
from carriers.settings import CarrierSettings
from ndrflow.config import Settings
from store import keys
from workflows.messages import ShipmentState


@dataclass
class StartCall:
    workflow_id: str
    signal: str
    arg: Any
    search_attributes: Any


@dataclass
class FakeTemporal:
    starts: list[StartCall] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)
    states: dict[str, ShipmentState] = field(default_factory=dict)

    async def start_workflow(self, _run: Any, _inp: Any, *, id: str, start_signal: str, start_signal_args: list[Any], search_attributes: Any = None, **_: Any) -> None:
        if id in self.closed:
            raise WorkflowAlreadyStartedError(id, "ShipmentWorkflow")
        self.starts.append(StartCall(id, start_signal, start_signal_args[0], search_attributes))

    def get_workflow_handle(self, workflow_id: str) -> Any:
        return FakeHandle(self, workflow_id)


@dataclass
class FakeHandle:
    fake: FakeTemporal
    workflow_id: str

    async def query(self, _q: Any) -> ShipmentState:
        return self.fake.states[self.workflow_id]

    async def describe(self) -> Any:
        class D:
            typed_search_attributes = _EmptyAttrs()

        return D()


class _EmptyAttrs:
    def get(self, _key: Any) -> None:
        return None


@dataclass
class Api:
    client: TestClient
    temporal: FakeTemporal
    engine: Engine
    merchant_key: str
    other_merchant_key: str
    carrier_key: str
    agent_key: str

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Api:
    settings = Settings(home=tmp_path / "home", database_url=database_url, secret_key="test-secret")
    fake = FakeTemporal()
    carrier_settings = CarrierSettings(**{f"{c}_webhook_secret": f"{c}-secret" for c in ("generic", "delhivery", "shiprocket", "clickpost", "easypost", "aftership")})
    app = create_app(settings, temporal=fake, carrier_settings=carrier_settings)  # type: ignore[arg-type]
    engine = app.state.engine
    with Session(engine) as s:
        mk = keys.create_key(s, scope="merchant", merchant_id="acme")
        ok = keys.create_key(s, scope="merchant", merchant_id="globex")
        ck = keys.create_key(s, scope="carrier", carrier="generic")
        ak = keys.create_key(s, scope="agent")
    return Api(TestClient(app), fake, engine, mk, ok, ck, ak)
