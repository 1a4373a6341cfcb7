"""Pieces of the stack that need no server: one process per home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ndrflow.stack import HomeLock, StackError


def test_a_home_is_used_by_one_process_at_a_time(tmp_path: Path) -> None:
    first = HomeLock(tmp_path / "ndrflow.lock")
    first.acquire()
    second = HomeLock(tmp_path / "ndrflow.lock")
    with pytest.raises(StackError, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()  # free again once the first let go
    second.release()
