"""Sampling the worker under load with py-spy, and saying where the time goes.

`py-spy record --format raw` writes collapsed stacks ("outer;...;inner count"); we keep that
file (bench/results/profile-<phase>.txt, loadable in speedscope or flamegraph.pl) and summarise
it two ways: self time per function, and inclusive time per *area* (the sandbox's importer,
HTTP serving, the store, our workflow code, ...), which is what the recommendations are about.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# (area, substring of the frame's file or function); the first match wins, so order matters.
AREAS: tuple[tuple[str, str], ...] = (
    ("sandbox: module import/restore", "workflow_sandbox/_importer"),
    ("sandbox: restrictions proxy", "workflow_sandbox/_restrictions"),
    ("sandbox: runner", "workflow_sandbox/"),
    ("workflow code (workflows/, domain/)", "/workflows/"),
    ("workflow code (workflows/, domain/)", "/domain/"),
    ("temporal: workflow instance", "worker/_workflow_instance"),
    ("temporal: workflow worker", "worker/_workflow.py"),
    ("temporal: activity worker", "worker/_activity"),
    ("temporal: payload conversion", "temporalio/converter"),
    ("temporal: client calls", "temporalio/client"),
    ("temporal: other", "temporalio/"),
    ("store (SQLAlchemy/SQLite)", "sqlalchemy/"),
    ("store (SQLAlchemy/SQLite)", "sqlmodel/"),
    ("store (our code)", "/store/"),
    ("activities (our code)", "/activities/"),
    ("channels/templates (our code)", "/channels/"),
    ("channels/templates (our code)", "/templates/"),
    ("channels/templates (our code)", "jinja2/"),
    ("channels/templates (our code)", "babel/"),
    ("carrier adapters (our code)", "/carriers/"),
    ("API routes (our code)", "/api/"),
    ("HTTP server (uvicorn/h11)", "uvicorn/"),
    ("HTTP server (uvicorn/h11)", "h11/"),
    ("FastAPI/Starlette", "fastapi/"),
    ("FastAPI/Starlette", "starlette/"),
    ("pydantic", "pydantic"),
    ("phonenumbers", "phonenumbers/"),
    ("twilio SDK", "twilio/"),
    ("httpx/httpcore", "httpx/"),
    ("httpx/httpcore", "httpcore/"),
    ("asyncio event loop", "asyncio/"),
    ("threads/executor", "concurrent/futures"),
    ("threads/executor", "threading.py"),
    ("importlib (real imports)", "<frozen importlib"),
    ("json", "json/"),
)


def area_of(frame: str) -> str:
    m = FRAME.match(frame)
    where = f"{m.group('file')} {m.group('func')}" if m else frame
    for area, needle in AREAS:
        if needle in where:
            return area
    return "other"


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/work/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{m.group('func')} ({file})"


@dataclass
class Profile:
    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    areas_inclusive: Counter[str] = field(default_factory=Counter)
    areas_self: Counter[str] = field(default_factory=Counter)

    def top(self, n: int = 15) -> dict[str, Any]:
        total = max(1, self.samples)
        pct = lambda c: [(k, round(100 * v / total, 1)) for k, v in c.most_common(n)]  # noqa: E731
        return {
            "samples": self.samples,
            "self_pct": pct(self.self_time),
            "inclusive_pct": pct(self.inclusive),
            "areas_inclusive_pct": pct(self.areas_inclusive),
            "areas_self_pct": pct(self.areas_self),
        }


def summarise(collapsed: str) -> Profile:
    prof = Profile()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        prof.samples += n
        prof.self_time[short(frames[-1])] += n
        prof.areas_self[area_of(frames[-1])] += n
        for f in {short(f) for f in frames}:
            prof.inclusive[f] += n
        for a in {area_of(f) for f in frames}:
            prof.areas_inclusive[a] += n
    return prof


SANDBOX_RUN = "workflow_sandbox/_runner.py"


def breakdown(collapsed: str) -> dict[str, float]:
    """Where a worker process's Python time goes, in the buckets the recommendations are about
    (percent of samples). Outside the sandbox a sample goes to the first bucket whose marker is
    in its stack; inside it, to imports, our workflow code, or the SDK's plumbing."""
    outside = (
        ("API request handling (uvicorn, FastAPI, routes, store)", ("uvicorn/", "starlette/", "fastapi/")),
        ("notify activity (thread)", ("activities/notify",)),
        ("read-model local activity (thread)", ("activities/readmodel",)),
        ("carrier instruction activity (thread)", ("activities/instruct",)),
        ("other activities (thread)", ("/activities/", "bl_activity", "bl_local")),
        ("workflow worker outside the sandbox", ("temporalio/worker/_workflow", "workflow_sandbox")),
        ("activity worker plumbing", ("temporalio/worker/_activity",)),
        ("fake carrier (local mode)", ("carriers/fake",)),
    )
    total = 0
    out: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        idx = next((k for k, f in enumerate(frames) if "_run_code" in f and SANDBOX_RUN in f), None)
        if idx is None:
            bucket = next(
                (name for name, marks in outside if any(m in f for f in frames for m in marks)), None
            )
            out[bucket or "other (event loop, thread hand-offs)"] += n
            continue
        rest = frames[idx + 1 :]
        if any("importlib" in f or "_importer" in f for f in rest):
            out["sandbox: module imports for a new run"] += n
        elif any("/workflows/" in f or "/domain/" in f for f in rest):
            out["sandbox: our workflow code (workflows/, domain/)"] += n
        elif any("converter" in f for f in rest):
            out["sandbox: payload conversion"] += n
        else:
            out["sandbox: workflow instance plumbing"] += n
    return {k: round(100 * v / max(1, total), 1) for k, v in out.most_common()}


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


class Recorder:
    """`async with Recorder(pid, out)`: samples `pid` until the block ends."""

    def __init__(self, pid: int, out: Path, rate: int = 67) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: asyncio.subprocess.Process | None = None
        self.error = ""

    async def __aenter__(self) -> Recorder:
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not installed (pip install -e '.[bench]')"
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # --nonblocking: never pause the worker (sampling costs it nothing but a little accuracy);
        # --gil: only the thread holding the GIL, i.e. where Python CPU goes.
        self.proc = await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw", "--nonblocking", "--gil",
            "--output", str(self.out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), 30)
        except TimeoutError:
            self.proc.kill()
            err = b""
        if not self.out.exists():
            self.error = (err or b"").decode(errors="replace")[-500:] or "py-spy wrote nothing"

    def summary(self) -> Profile | None:
        if not self.out.exists():
            return None
        return summarise(self.out.read_text(errors="replace"))
