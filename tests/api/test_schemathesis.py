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
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Api
from tests.api.routes.test_merchants import BODY
from workflows.messages import ShipmentState

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every documented operation, read from the app's own OpenAPI document."""
    from api.main import create_app
    from ndrflow.config import Settings

    app = create_app(Settings(_env_file=None, home=".ndrflow-openapi", database_url="sqlite://", secret_key="x"), temporal=object())  # type: ignore[arg-type]
    doc = app.openapi()
    return [(m.upper(), p) for p, item in doc["paths"].items() for m in item if m in ("get", "post", "put", "patch", "delete")]


OPERATIONS = _operations()


@pytest.fixture
def fuzz_api(api: Api) -> Api:
    # A registered shipment so reads can find something (and merchant isolation is in play).
    r = api.client.post("/v1/shipments", json=BODY, headers=api.auth(api.merchant_key))
    assert r.status_code == 201, r.text
    api.shipment_id = r.json()["shipment_id"]  # type: ignore[attr-defined]
    api.temporal.states[r.json()["workflow_id"]] = ShipmentState(shipment_id=r.json()["shipment_id"])
    # Fuzzing must not trip the public-endpoint rate limiter (tested in tests/security).
    api.client.app.state.rate_limiter.enabled = False  # type: ignore[attr-defined]

    async def healthy() -> bool:
        return True

    api.temporal.service_client = SimpleNamespace(check_health=healthy)  # type: ignore[attr-defined]
    return api


def key_for(api: Api, method: str, path: str) -> str:
    """The key an honest client of this operation holds."""
    if path.startswith("/v1/carriers/"):
        return api.carrier_key
    if path.startswith("/codec/"):
        return api.agent_key
    if method == "GET" and path.startswith("/v1/shipments/"):
        return api.agent_key  # reads any merchant's shipment: the widest view
    return api.merchant_key


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_answers_every_generated_request_as_documented(method: str, path: str, fuzz_api: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_api.client.app)
    operation = schema[path][method]
    auth = {"Authorization": f"Bearer {key_for(fuzz_api, method, path)}"}

    @given(case=operation.as_strategy(), steer=st.booleans())
    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")), deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: Any, steer: bool) -> None:
        # Random ids and merchants mostly hit 403/404; steering half the cases onto what exists
        # lets the accepted paths be fuzzed too (bodies stay generated).
        if steer:
            if path == "/v1/shipments" and isinstance(case.body, dict):
                case.body["merchant_id"] = "acme"
                if isinstance(case.body.get("customer"), dict) and isinstance(case.body.get("address"), dict):
                    case.body["customer"]["phone"] = "+91 98765 43210"  # random digits are never a valid number
                    case.body["address"]["country"] = "IN"
            if "shipment_id" in (case.path_parameters or {}):
                case.path_parameters["shipment_id"] = fuzz_api.shipment_id
            if "carrier" in (case.path_parameters or {}):
                case.path_parameters["carrier"] = "generic"
        # The generated Authorization (from the security scheme) is replaced by a real key.
        case.call_and_validate(headers={**(case.headers or {}), **auth}, checks=CHECKS)

    fuzz()
