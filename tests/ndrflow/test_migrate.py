"""Several processes starting at once (worker and API, replicas) migrate one database safely."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from ndrflow.migrate import migrate_locked

PG_URL = os.environ.get("NDRFLOW_TEST_DATABASE_URL", "")


def _fresh_urls(tmp_path: Path) -> list[tuple[str, str | None]]:
    urls: list[tuple[str, str | None]] = [(f"sqlite:///{tmp_path / 'fresh.db'}", None)]
    if PG_URL:
        schema = "m_" + uuid.uuid4().hex[:12]
        sep = "&" if "?" in PG_URL else "?"
        urls.append((f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema))
    return urls


def test_concurrent_migrations_of_a_fresh_database_all_succeed(tmp_path: Path) -> None:
    for url, schema in _fresh_urls(tmp_path):
        admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT") if schema else None
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(migrate_locked, [url] * 4))
            assert results == [None] * 4
            engine = sa.create_engine(url)
            try:
                assert "api_keys" in sa.inspect(engine).get_table_names()
                with engine.connect() as conn:
                    heads = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
                assert heads, "alembic_version is empty"
            finally:
                engine.dispose()
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_needs_no_lock_file(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    migrate_locked(url)
    assert list(tmp_path.iterdir()) == []
