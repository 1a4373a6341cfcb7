"""Migrations when several processes start at once (`ndrflow worker` and `ndrflow api`, or many
replicas): one applies them while the others wait, then find nothing left to do.

PostgreSQL: a session-level advisory lock. SQLite: an flock on a file beside the database.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import sqlalchemy as sa

from store.db import migrate

ADVISORY_LOCK_ID = 7425301  # arbitrary, constant: every ndrflow process uses the same one


def migrate_locked(url: str) -> None:
    if url.startswith("postgresql"):
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
                try:
                    migrate(url)
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
        finally:
            engine.dispose()
        return
    parsed = sa.engine.make_url(url)
    path = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:" or path.startswith("file:"):
        migrate(url)
        return
    lock_path = Path(path + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        migrate(url)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
