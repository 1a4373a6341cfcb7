"""Plans the baseline workflow replays, loaded once per worker process.

Passed through the workflow sandbox on purpose: the baseline worker fills `PLANS` before it starts
polling and every workflow run reads the same dict (workflows cannot read files themselves).
Keeping the plans out of the workflow input also keeps the baseline's start payload as small as
the pipeline's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# kind -> {"triggers": {key: [command, ...]}, ...} (see bench/shape.py)
PLANS: dict[str, dict[str, Any]] = {}


def load(path: str | Path) -> None:
    PLANS.clear()
    PLANS.update(json.loads(Path(path).read_text())["kinds"])
