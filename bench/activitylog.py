"""Tailing the baseline worker's activity log (see bench/baseline.py ACTIVITY_LOG)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.shape import classify_activity


class ActivityLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self.done: dict[str, float] = {}  # workflow id → when its shipment reached `delivered`
        self.first: dict[tuple[str, str], float] = {}  # (workflow id, trigger) → first activity start
        self.by_class: dict[tuple[str, str, str], float] = {}  # (wid, trigger, class) → first start

    def refresh(self) -> None:
        try:
            with self.path.open() as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except OSError:
            return
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next read
        for line in lines:
            if not line:
                continue
            t, wid, key, name, _kind, status = json.loads(line)
            k = (wid, key)
            if t < self.first.get(k, float("inf")):
                self.first[k] = t
            ck = (wid, key, classify_activity(name))
            if t < self.by_class.get(ck, float("inf")):
                self.by_class[ck] = t
            if status == "delivered" and wid not in self.done:
                self.done[wid] = t

    def done_for(self, merchants: list[str]) -> dict[tuple[str, str], float]:
        self.refresh()
        wanted = set(merchants)
        out = {}
        for wid, t in self.done.items():
            key = split_workflow_id(wid)
            if key[0] in wanted:
                out[key] = t
        return out


def split_workflow_id(workflow_id: str) -> tuple[str, str]:
    """Baseline workflow ids are `bl-{merchant}-{tracking number}` (tracking numbers have no dash)."""
    merchant, _, tracking = workflow_id.removeprefix("bl-").rpartition("-")
    return merchant, tracking
