"""Fuzzing the API from its own OpenAPI document: for every operation, schemathesis generates
requests (valid and invalid bodies, parameters, headers) and checks each answer: never a 5xx,
only documented status codes, the documented content type, and a body matching the documented
schema (errors included: `ErrorResponse` / `ValidationErrorResponse`, see api/errors.py).

The app is the real one on a migrated SQLite database (PostgreSQL too when configured) with the
fake Temporal of tests/api/conftest.py. Each request carries a valid key for the operation's
audience so the authenticated code paths are exercised, not only the 401.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlmodel import Session

from api.main import create_app
from carriers.settings import CarrierSettings
from ndrflow.config import Settings
from store import keys
from tests.api.agent_fakes import FakeAgentTemporal

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every documented operation, read from the app's own OpenAPI document."""
    app = create_app(
        Settings(_env_file=None, home=".ndrflow-openapi", database_url="sqlite://", secret_key="x"),
        temporal=object(),
    )  # type: ignore[arg-type]
    doc = app.openapi()
    return [
        (m.upper(), p)
        for p, item in doc["paths"].items()
        for m in item
        if m in ("get", "post", "put", "patch", "delete")
    ]


OPERATIONS = _operations()


@dataclass
class Fuzz:
    client: TestClient
    temporal: FakeAgentTemporal
    shipment_id: str
    merchant_key: str
    carrier_key: str
    agent_key: str


@pytest.fixture
def fuzz_api(database_url: str, tmp_path: Path) -> Fuzz:
    """The real app with the agents' fake Temporal (visibility, queries, updates, starts), one
    running shipment of merchant acme, and a key per scope."""
    settings = Settings(
        _env_file=None, home=tmp_path / "home", database_url=database_url, secret_key="fuzz-secret"
    )
    fake = FakeAgentTemporal()
    carrier_settings = CarrierSettings(_env_file=None, generic_webhook_secret="generic-secret")
    app = create_app(settings, temporal=fake, carrier_settings=carrier_settings)  # type: ignore[arg-type]
    # Fuzzing must not trip the public-endpoint rate limiter (tested in tests/security).
    app.state.rate_limiter.enabled = False

    async def healthy() -> bool:
        return True

    fake.service_client = SimpleNamespace(check_health=healthy)  # type: ignore[attr-defined]
    row = fake.add(
        app.state.engine,
        merchant="acme",
        tracking="TRK1001",
        reason="no_tracking_update",
        since=datetime.now(UTC),
    )
    with Session(app.state.engine) as s:
        mk = keys.create_key(s, scope="merchant", merchant_id="acme")
        ck = keys.create_key(s, scope="carrier", carrier="generic")
        ak = keys.create_key(s, scope="agent")
    return Fuzz(TestClient(app), fake, row.shipment_id, mk, ck, ak)


def key_for(api: Fuzz, method: str, path: str) -> str:
    """The key an honest client of this operation holds."""
    if path.startswith("/v1/carriers/") and path != "/v1/carriers/unknown-codes":
        return api.carrier_key
    if (
        path.startswith(("/codec/", "/v1/cases"))
        or path == "/v1/carriers/unknown-codes"
        or path.endswith(("/timeline", "/actions"))
    ):
        return api.agent_key
    if method == "GET" and path.startswith("/v1/shipments/"):
        return api.agent_key  # reads any merchant's shipment: the widest view
    return api.merchant_key


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_answers_every_generated_request_as_documented(method: str, path: str, fuzz_api: Fuzz) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_api.client.app)
    operation = schema[path][method]
    auth = {"Authorization": f"Bearer {key_for(fuzz_api, method, path)}"}

    @given(case=operation.as_strategy(), steer=st.booleans())
    @settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case: Any, steer: bool) -> None:
        # Random ids and merchants mostly hit 403/404; steering half the cases onto what exists
        # lets the accepted paths be fuzzed too (bodies stay generated).
        if steer:
            if path == "/v1/shipments" and isinstance(case.body, dict):
                case.body["merchant_id"] = "acme"
                if isinstance(case.body.get("customer"), dict) and isinstance(case.body.get("address"), dict):
                    case.body["customer"]["phone"] = (
                        "+91 98765 43210"  # random digits are never a valid number
                    )
                    case.body["address"]["country"] = "IN"
            if "shipment_id" in (case.path_parameters or {}):
                case.path_parameters["shipment_id"] = fuzz_api.shipment_id
            if "carrier" in (case.path_parameters or {}):
                case.path_parameters["carrier"] = "generic"
        # The generated Authorization (from the security scheme) is replaced by a real key.
        case.call_and_validate(headers={**(case.headers or {}), **auth}, checks=CHECKS)

    fuzz()
