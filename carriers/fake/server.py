"""A fake carrier on loopback: every carrier API our adapters call, on one port.

Carrier endpoints (same paths as the real APIs, so `CarrierSettings.pointing_at(url)` is all an
adapter needs):

- Shiprocket: ``POST /v1/external/auth/login``, ``POST /v1/external/ndr/{awb}/action`` (bearer)
- Delhivery: ``POST /api/p/update``, ``GET /api/cmu/get_bulk_upl/{upl}``,
  ``GET /api/v1/packages/json/?waybill=`` (``Authorization: Token ...``)
- ClickPost: ``POST /api/v2/ndr/update/?username=&key=``
- generic: ``POST /generic/instructions`` (signature checked when the fake knows the secret),
  ``GET /generic/tracking/{tracking_number}``

Control endpoints:

- ``GET /_received[?carrier=&all=true]``: instructions received, oldest first. By default only the
  ones that reached the carrier's logic (``outcome`` accepted or rejected); ``all=true`` adds the
  ones a fault swallowed (``outcome`` timeout or 5xx). ``DELETE /_received`` clears.
- ``POST /_faults`` ``{"carrier": "delhivery", "mode": "timeout"|"5xx"|"reject"|"reject_async"|
  "slow"|"expire_token", "count": 2, "delay_s": 30, "status": 503, "kind": "instruction"}``;
  ``GET``/``DELETE /_faults``. A fault applies to the next `count` requests of that kind
  ("instruction", "status", "tracking", "login") for that carrier ("*" = any carrier).
- ``POST /_emit`` ``{"carrier", "target_url", "tracking_number", "milestone", "ndr_reason",
  "secret", "occurred_at"?, "event_id"?, "deliver"?: true}``: builds the carrier-format push
  (carriers/fake/payloads.py), signs it per that carrier's scheme and posts it; the scan is also
  kept for the tracking endpoints (``deliver: false`` keeps it without posting: a dropped push).
- ``POST /_tracking`` same fields without target: add a scan to the tracking endpoints only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from carriers.fake import payloads
from carriers.fake.payloads import Scan

INSTRUCTION = "instruction"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
HEADERS_OF_INTEREST = (
    "authorization",
    "content-type",
    "idempotency-key",
    "x-ndrflow-signature",
    "user-agent",
)


@dataclass
class Fault:
    carrier: str
    mode: str
    count: int = 1
    delay_s: float = 30.0
    status: int = 503
    kind: str = INSTRUCTION


@dataclass
class FakeState:
    received: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    upls: dict[str, dict[str, Any]] = field(default_factory=dict)
    scans: dict[tuple[str, str], list[Scan]] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, carrier: str, kind: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.kind == kind and fault.carrier in (carrier, "*") and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def record(
        self, request: Request, carrier: str, body: Any, outcome: str, fault: str | None = None
    ) -> dict[str, Any]:
        entry = {
            "id": next(self.ids),
            "carrier": carrier,
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": {h: request.headers[h] for h in HEADERS_OF_INTEREST if h in request.headers},
            "body": body,
            "received_at": datetime.now(UTC).isoformat(),
            "outcome": outcome,
            "fault": fault,
        }
        with self.lock:
            self.received.append(entry)
        return entry

    def add_scan(self, carrier: str, scan: Scan) -> None:
        with self.lock:
            self.scans.setdefault((carrier, scan.tracking_number), []).append(scan)
            self.scans[(carrier, scan.tracking_number)].sort(key=lambda s: s.occurred_at)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def create_app(
    *,
    generic_secret: str = "",
    upl_pending_polls: int = 1,
    allow_remote_emit: bool = False,
    emit_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`generic_secret`: when set, generic instructions with a bad signature get 401.
    `upl_pending_polls`: how many get_bulk_upl checks answer "pending" before the result.
    `emit_transport`: tests can catch what `/_emit` posts without a second server."""
    app = FastAPI(title="ndrflow fake carrier", docs_url="/_docs", openapi_url="/_openapi.json")
    state = FakeState()
    app.state.fake = state

    async def fault_response(fault: Fault, request: Request, carrier: str, body: Any) -> JSONResponse | None:
        """Apply a pre-processing fault. None means: go on and process the request."""
        if fault.mode == "timeout":
            state.record(request, carrier, body, "timeout", "timeout")
            await asyncio.sleep(fault.delay_s)  # the client gives up long before this
            return JSONResponse({"error": "gateway timeout (injected)"}, status_code=504)
        if fault.mode == "5xx":
            state.record(request, carrier, body, "5xx", "5xx")
            return JSONResponse({"error": "service unavailable (injected)"}, status_code=fault.status)
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay_s)
            return None
        if fault.mode == "expire_token":
            state.tokens.clear()
            return None
        return None

    async def instruction_fault(
        request: Request, carrier: str, body: Any
    ) -> tuple[JSONResponse | None, Fault | None]:
        fault = state.take_fault(carrier, INSTRUCTION)
        if fault is None:
            return None, None
        return await fault_response(fault, request, carrier, body), fault

    async def other_fault(request: Request, carrier: str, kind: str) -> JSONResponse | None:
        fault = state.take_fault(carrier, kind)
        if fault is None or fault.mode in ("reject", "reject_async"):
            return None
        if fault.mode == "timeout":
            await asyncio.sleep(fault.delay_s)
            return JSONResponse({"error": "gateway timeout (injected)"}, status_code=504)
        if fault.mode == "5xx":
            return JSONResponse({"error": "service unavailable (injected)"}, status_code=fault.status)
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay_s)
        return None

    # --- Shiprocket -----------------------------------------------------------------------------

    @app.post("/v1/external/auth/login")
    async def shiprocket_login(request: Request) -> JSONResponse:
        if (resp := await other_fault(request, "shiprocket", "login")) is not None:
            return resp
        body = _json_or_none(await request.body()) or {}
        if not body.get("email") or not body.get("password"):
            return JSONResponse(
                {"message": "Invalid email and password combination", "status_code": 401}, status_code=401
            )
        token = "sr-" + secrets.token_hex(16)
        state.tokens.add(token)
        return JSONResponse({"id": 1, "email": body["email"], "company_id": 1, "token": token})

    @app.post("/v1/external/ndr/{awb}/action")
    async def shiprocket_action(awb: str, request: Request) -> JSONResponse:
        body = _json_or_none(await request.body())
        resp, fault = await instruction_fault(request, "shiprocket", body)
        if resp is not None:
            return resp
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in state.tokens:
            state.record(request, "shiprocket", body, "rejected", "unauthorized")
            return JSONResponse({"message": "Token has expired", "status_code": 401}, status_code=401)
        errors = {}
        if not isinstance(body, dict):
            errors["body"] = ["must be a JSON object"]
        else:
            if body.get("action") not in ("re-attempt", "return", "fake-attempt"):
                errors["action"] = ["The selected action is invalid."]
            if not body.get("comments"):
                errors["comments"] = ["The comments field is required."]
        if fault is not None and fault.mode == "reject":
            errors["awb"] = ["NDR action not allowed for this AWB (injected)"]
        if errors:
            state.record(request, "shiprocket", body, "rejected", fault.mode if fault else None)
            return JSONResponse(
                {"message": "The given data was invalid.", "errors": errors, "status_code": 422},
                status_code=422,
            )
        state.record(request, "shiprocket", body, "accepted")
        return JSONResponse({"status": "Data Updated Sucessfully"}, status_code=202)

    # --- Delhivery ------------------------------------------------------------------------------

    def delhivery_authorised(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.startswith("Token ") and len(auth) > 6

    @app.post("/api/p/update")
    async def delhivery_update(request: Request) -> JSONResponse:
        body = _json_or_none(await request.body())
        resp, fault = await instruction_fault(request, "delhivery", body)
        if resp is not None:
            return resp
        if not delhivery_authorised(request):
            state.record(request, "delhivery", body, "rejected", "unauthorized")
            return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)
        items = body.get("data") if isinstance(body, dict) else None
        valid_acts = {"RE-ATTEMPT", "PICKUP_RESCHEDULE", "DEFER_DLV", "EDIT_DETAILS"}
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(i, dict) and i.get("waybill") and i.get("act") in valid_acts for i in items)
        ):
            state.record(request, "delhivery", body, "rejected")
            return JSONResponse(
                {"status": False, "error": "data must list {waybill, act} with a valid act"}, status_code=400
            )
        if fault is not None and fault.mode == "reject":
            state.record(request, "delhivery", body, "rejected", "reject")
            return JSONResponse(
                {"status": False, "error": "NDR action not allowed (injected)"}, status_code=400
            )
        upl = "UPL" + "".join(str(secrets.randbelow(10)) for _ in range(20))
        fail = fault is not None and fault.mode == "reject_async"
        state.upls[upl] = {
            "waybills": [i["waybill"] for i in items],
            "polls": 0,
            "result": "Failure" if fail else "Success",
            "remarks": "Package not in pending state / NSL not eligible (injected)"
            if fail
            else "Request processed",
        }
        state.record(request, "delhivery", body, "accepted", "reject_async" if fail else None)
        return JSONResponse({"status": True, "request_id": upl, "remark": "Request accepted for processing"})

    @app.get("/api/cmu/get_bulk_upl/{upl}")
    async def delhivery_upl(upl: str, request: Request) -> JSONResponse:
        if (resp := await other_fault(request, "delhivery", "status")) is not None:
            return resp
        if not delhivery_authorised(request):
            return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)
        job = state.upls.get(upl)
        if job is None:
            return JSONResponse({"status": False, "error": f"unknown request id {upl}"}, status_code=404)
        job["polls"] += 1
        if job["polls"] <= upl_pending_polls:
            return JSONResponse({"request_id": upl, "status": "Pending", "results": []})
        results = [
            {"waybill": w, "status": job["result"], "remarks": job["remarks"]} for w in job["waybills"]
        ]
        return JSONResponse({"request_id": upl, "status": "Complete", "results": results})

    @app.get("/api/v1/packages/json/")
    async def delhivery_tracking(request: Request) -> JSONResponse:
        if (resp := await other_fault(request, "delhivery", "tracking")) is not None:
            return resp
        if not delhivery_authorised(request):
            return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)
        waybills = [w for w in request.query_params.get("waybill", "").split(",") if w][:50]
        rows: list[dict[str, Any]] = []
        for w in waybills:
            rows.extend(payloads.delhivery_tracking(w, state.scans.get(("delhivery", w), []))["ShipmentData"])
        return JSONResponse({"ShipmentData": rows})

    # --- ClickPost ------------------------------------------------------------------------------

    @app.post("/api/v2/ndr/update/")
    async def clickpost_ndr(request: Request) -> JSONResponse:
        body = _json_or_none(await request.body())
        resp, fault = await instruction_fault(request, "clickpost", body)
        if resp is not None:
            return resp
        q = request.query_params
        if not q.get("username") or not q.get("key"):
            state.record(request, "clickpost", body, "rejected", "unauthorized")
            return JSONResponse(
                {"meta": {"success": False, "status": 401, "message": "Invalid username or key"}},
                status_code=401,
            )
        missing = []
        if not isinstance(body, dict):
            missing = ["body"]
        else:
            required = ["action", "waybill", "cp_id", "account_code"]
            if body.get("action") == "REATTEMPT":
                required += ["address", "landmark", "drop_pincode", "phone_number", "preferred_date"]
            missing = [k for k in required if body.get(k) in (None, "")]
            if body.get("action") not in ("REATTEMPT", "INITIATE_RTO"):
                missing.append("action (REATTEMPT | INITIATE_RTO)")
        if fault is not None and fault.mode == "reject":
            missing.append("waybill not eligible for NDR action (injected)")
        if missing:
            state.record(request, "clickpost", body, "rejected", fault.mode if fault else None)
            message = "Missing or invalid: " + ", ".join(missing)
            return JSONResponse(
                {"meta": {"success": False, "status": 400, "message": message}}, status_code=400
            )
        state.record(request, "clickpost", body, "accepted")
        return JSONResponse({"meta": {"success": True, "status": 200, "message": "SUCCESS"}, "result": {}})

    # --- generic --------------------------------------------------------------------------------

    @app.post("/generic/instructions")
    async def generic_instruction(request: Request) -> JSONResponse:
        raw = await request.body()
        body = _json_or_none(raw)
        resp, fault = await instruction_fault(request, "generic", body)
        if resp is not None:
            return resp
        if generic_secret:
            expected = "sha256=" + hmac.new(generic_secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(
                request.headers.get("x-ndrflow-signature", "").encode(), expected.encode()
            ):
                state.record(request, "generic", body, "rejected", "bad_signature")
                return JSONResponse({"error": "bad signature"}, status_code=401)
        if not isinstance(body, dict) or not body.get("tracking_number") or not body.get("action"):
            state.record(request, "generic", body, "rejected")
            return JSONResponse({"error": "tracking_number and action are required"}, status_code=422)
        if fault is not None and fault.mode == "reject":
            state.record(request, "generic", body, "rejected", "reject")
            return JSONResponse({"error": "instruction refused (injected)"}, status_code=409)
        entry = state.record(request, "generic", body, "accepted")
        return JSONResponse({"reference": f"GEN-{entry['id']}", "status": "accepted"})

    @app.get("/generic/tracking/{tracking_number}")
    async def generic_tracking(tracking_number: str, request: Request) -> JSONResponse:
        if (resp := await other_fault(request, "generic", "tracking")) is not None:
            return resp
        scans = state.scans.get(("generic", tracking_number), [])
        if not scans:
            return JSONResponse({"events": []}, status_code=404)
        events = [payloads.build_generic(s)["events"][0] for s in scans]
        return JSONResponse({"events": events})

    # --- control --------------------------------------------------------------------------------

    @app.get("/_received")
    async def get_received(carrier: str | None = None, all: bool = False) -> list[dict[str, Any]]:
        with state.lock:
            items = list(state.received)
        return [
            r
            for r in items
            if (carrier is None or r["carrier"] == carrier)
            and (all or r["outcome"] in ("accepted", "rejected"))
        ]

    @app.delete("/_received")
    async def clear_received() -> dict[str, int]:
        with state.lock:
            n = len(state.received)
            state.received.clear()
        return {"cleared": n}

    @app.post("/_faults")
    async def add_fault(request: Request) -> JSONResponse:
        body = _json_or_none(await request.body())
        modes = {"timeout", "5xx", "reject", "reject_async", "slow", "expire_token"}
        if not isinstance(body, dict) or not body.get("carrier") or body.get("mode") not in modes:
            return JSONResponse({"error": f"need carrier and mode in {sorted(modes)}"}, status_code=422)
        fault = Fault(
            carrier=str(body["carrier"]),
            mode=str(body["mode"]),
            count=int(body.get("count", 1)),
            delay_s=float(body.get("delay_s", 30.0 if body["mode"] == "timeout" else 1.0)),
            status=int(body.get("status", 503)),
            kind=str(body.get("kind", INSTRUCTION)),
        )
        with state.lock:
            state.faults.append(fault)
        return JSONResponse(fault.__dict__, status_code=201)

    @app.get("/_faults")
    async def list_faults() -> list[dict[str, Any]]:
        return [f.__dict__ for f in state.faults]

    @app.delete("/_faults")
    async def clear_faults() -> dict[str, int]:
        with state.lock:
            n = len(state.faults)
            state.faults.clear()
        return {"cleared": n}

    def scan_from(body: dict[str, Any]) -> Scan:
        when = body.get("occurred_at")
        occurred = (
            datetime.fromisoformat(when.replace("Z", "+00:00"))
            if isinstance(when, str)
            else datetime.now(UTC)
        )
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        return Scan(
            tracking_number=str(body["tracking_number"]),
            milestone=str(body["milestone"]),
            ndr_reason=body.get("ndr_reason"),
            occurred_at=occurred,
            location=str(body.get("location") or "Bengaluru"),
            event_id=body.get("event_id"),
        )

    @app.post("/_tracking")
    async def add_tracking(request: Request) -> JSONResponse:
        body = _json_or_none(await request.body())
        if not isinstance(body, dict) or not all(
            body.get(k) for k in ("carrier", "tracking_number", "milestone")
        ):
            return JSONResponse({"error": "need carrier, tracking_number, milestone"}, status_code=422)
        state.add_scan(str(body["carrier"]), scan_from(body))
        return JSONResponse({"ok": True}, status_code=201)

    @app.post("/_emit")
    async def emit(request: Request) -> JSONResponse:
        body = _json_or_none(await request.body())
        needed = ("carrier", "tracking_number", "milestone")
        if not isinstance(body, dict) or not all(body.get(k) for k in needed):
            return JSONResponse(
                {"error": "need carrier, tracking_number, milestone (+ target_url, secret)"}, status_code=422
            )
        carrier = str(body["carrier"])
        try:
            scan = scan_from(body)
            if carrier == "clickpost":
                # ClickPost's push carries the shipment's newest status besides the scan itself,
                # so a late (out-of-order) push still tells the truth in additional.latest_status.
                known = state.scans.get((carrier, scan.tracking_number), [])
                latest = max([*known, scan], key=lambda s: s.occurred_at)
                payload = payloads.build_clickpost(scan, latest=latest)
            else:
                payload = payloads.build(carrier, scan)
        except (payloads.NoSuchCode, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        state.add_scan(carrier, scan)
        if body.get("deliver", True) is False:
            return JSONResponse({"delivered": False, "payload": payload})
        target = body.get("target_url")
        if not isinstance(target, str) or not target.startswith(("http://", "https://")):
            return JSONResponse({"error": "target_url is required to deliver"}, status_code=422)
        if not allow_remote_emit and (urlsplit(target).hostname or "") not in LOOPBACK:
            return JSONResponse(
                {"error": "the fake carrier only emits to loopback addresses"}, status_code=422
            )
        raw = payloads.encode(payload)
        headers = payloads.sign_headers(carrier, raw, str(body.get("secret") or ""))
        headers.update({str(k): str(v) for k, v in (body.get("headers") or {}).items()})
        started = time.perf_counter()
        try:
            timeout = float(body.get("timeout_s", 10))
            async with httpx.AsyncClient(timeout=timeout, transport=emit_transport) as client:
                resp = await client.post(target, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"delivered": False, "error": f"{type(exc).__name__}: {exc}", "payload": payload},
                status_code=502,
            )
        return JSONResponse(
            {
                "delivered": True,
                "status_code": resp.status_code,
                "response": resp.text[:2000],
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
                "payload": payload,
            }
        )

    @app.get("/_healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(host: str = "127.0.0.1", port: int = 8089, **app_kwargs: Any) -> None:
    """Run the fake carrier in the foreground (``ndrflow fake-carrier --port N``)."""
    uvicorn.run(create_app(**app_kwargs), host=host, port=port, log_level="warning")


class FakeCarrierServer:
    """The fake carrier on a free loopback port in a background thread (tests, e2e, demo)::

    with FakeCarrierServer() as fake:
        settings = CarrierSettings().pointing_at(fake.url)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **app_kwargs: Any) -> None:
        self.app = create_app(**app_kwargs)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="fake-carrier", daemon=True)
        self.url = ""

    @property
    def state(self) -> FakeState:
        return self.app.state.fake

    def start(self) -> FakeCarrierServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake carrier did not start")
            time.sleep(0.01)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeCarrierServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
