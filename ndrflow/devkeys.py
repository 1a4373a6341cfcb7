"""Development API keys for local mode: the same keys on every `ndrflow up` with the same home.

The raw keys live in `<home>/secrets.json` (mode 0600, beside the generated secrets) so they can
be printed again; the database holds only their hashes, as for any key. If the database was
reset the stored keys are re-installed; if one was revoked a new one replaces it.
Never used against an external Temporal cluster (production): there keys come from `ndrflow keys create`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from store.keys import create_key, ensure_key

DEMO_MERCHANT = "demo"
DEMO_CARRIER = "generic"


@dataclass(frozen=True)
class DevKeys:
    merchant: str
    carrier: str
    agent: str
    merchant_id: str = DEMO_MERCHANT
    carrier_code: str = DEMO_CARRIER


_SPECS = {
    "merchant": {"scope": "merchant", "merchant_id": DEMO_MERCHANT, "name": "development (merchant demo)"},
    "carrier": {"scope": "carrier", "carrier": DEMO_CARRIER, "name": "development (carrier generic)"},
    "agent": {"scope": "agent", "name": "development (agent)"},
}


def ensure_dev_keys(home: Path, engine: Engine) -> DevKeys:
    path = home / "secrets.json"
    stored: dict = json.loads(path.read_text()) if path.exists() else {}
    held: dict[str, str] = dict(stored.get("dev_api_keys", {}))
    changed = False
    with Session(engine) as session:
        for role, spec in _SPECS.items():
            raw = held.get(role)
            if raw and ensure_key(session, raw, **spec) is not None:
                continue
            held[role] = create_key(session, **spec)
            changed = True
    if changed:
        stored["dev_api_keys"] = held
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return DevKeys(merchant=held["merchant"], carrier=held["carrier"], agent=held["agent"])
