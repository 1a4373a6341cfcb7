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


async def test_a_busy_api_port_fails_before_anything_starts(tmp_path: Path) -> None:
    import socket

    from ndrflow.config import Settings
    from ndrflow.stack import Stack

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = Stack(Settings(home=tmp_path / "home", api_port=port))
        with pytest.raises(StackError, match=f"API port 127.0.0.1:{port} is already in use"):
            await stack.start()
    assert stack.devserver is None and stack.worker is None
    assert not (tmp_path / "home").exists()
