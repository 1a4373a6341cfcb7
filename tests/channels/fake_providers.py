"""A loopback fake of the Twilio Messages API and SendGrid Mail Send, for what the official
specs (and so Prism) cannot do: answer with real error codes (21610, 21211, 63016, 429, 500),
accept a message and then lose the response (the crash window), list sent messages (Twilio
reconciliation), and produce signed Twilio status callbacks and signed SendGrid events.

Usage: the module-scoped `fake_providers` fixture (import it into a test module) starts one
server on a free port; `fake.reset()` runs before each test through `fake` (function scope).
    fake.twilio_settings(...) / fake.sendgrid_settings(...) -> ChannelSettings pointing at it
    fake.fail_next("twilio", status=400, code=21610)    next matching request fails like Twilio
    fake.fail_next("sendgrid", status=429, retry_after=2)
    fake.fail_next("twilio", kind="accept_then_500")     records it, answers 500
    fake.fail_next("twilio", kind="accept_then_hang", hang=2.0)  records it, answers too late
    fake.whatsapp_window_closed = True                   free-form WhatsApp -> 63016
    fake.signed_status_callback(url, sid, "undelivered", error_code="30003") -> (body, headers)
    fake.signed_sendgrid_events([...]) -> (body, headers)
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from twilio.request_validator import RequestValidator

from channels.settings import ChannelSettings

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
MESSAGING_SERVICE_SID = "MG" + "fedcba9876543210" * 2
TWILIO_FROM = "+15005550006"
SENDGRID_KEY = "SG.fake-key.0123456789"


@dataclass
class Fault:
    provider: str  # twilio | sendgrid
    kind: str = "error"  # error | accept_then_500 | accept_then_hang
    status: int = 400
    code: int | None = None
    message: str = ""
    retry_after: float | None = None
    hang: float = 2.0
    to: str | None = None  # only requests to this recipient
    times: int = 1


@dataclass
class FakeState:
    twilio_messages: list[dict[str, Any]] = field(default_factory=list)
    sendgrid_mails: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # every request, raw
    faults: list[Fault] = field(default_factory=list)
    whatsapp_window_closed: bool = False


class FakeProviders:
    def __init__(self) -> None:
        self.state = FakeState()
        self.lock = threading.Lock()
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.sendgrid_public_key = base64.b64encode(der).decode()
        self.app = self._build_app()
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # ---- control -----------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.state = FakeState()

    @property
    def whatsapp_window_closed(self) -> bool:
        return self.state.whatsapp_window_closed

    @whatsapp_window_closed.setter
    def whatsapp_window_closed(self, value: bool) -> None:
        self.state.whatsapp_window_closed = value

    def fail_next(self, provider: str, **kw: Any) -> None:
        with self.lock:
            self.state.faults.append(Fault(provider=provider, **kw))

    def twilio_settings(self, **kw: Any) -> ChannelSettings:
        values: dict[str, Any] = dict(
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_from=TWILIO_FROM,
            twilio_base_url=self.base_url,
            twilio_timeout_seconds=1.0,
            public_base_url="https://ndr.example.com",
        )
        values.update(kw)
        return ChannelSettings(**values)

    def sendgrid_settings(self, **kw: Any) -> ChannelSettings:
        values: dict[str, Any] = dict(
            sendgrid_api_key=SENDGRID_KEY,
            sendgrid_from="notify@acme.example",
            sendgrid_from_name="Acme",
            sendgrid_reply_to="replies@parse.acme.example",
            sendgrid_base_url=self.base_url,
            sendgrid_timeout_seconds=1.0,
            sendgrid_event_public_key=self.sendgrid_public_key,
            public_base_url="https://ndr.example.com",
        )
        values.update(kw)
        return ChannelSettings(**values)

    def signed_status_callback(
        self,
        url: str,
        sid: str,
        status: str,
        *,
        error_code: str | None = None,
        to: str = "+919876543210",
        token: str = AUTH_TOKEN,
        whatsapp: bool = False,
    ) -> tuple[bytes, dict[str, str]]:
        """A status callback as Twilio posts it to StatusCallback, signed with `token`."""
        prefix = "whatsapp:" if whatsapp else ""
        params = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "From": prefix + TWILIO_FROM,
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": prefix + to,
        }
        if whatsapp:
            params["ChannelPrefix"] = "whatsapp"
        if error_code:
            params["ErrorCode"] = error_code
        return self._signed_form(url, params, token)

    def signed_inbound(
        self,
        url: str,
        body: str,
        *,
        from_: str = "+919876543210",
        whatsapp: bool = False,
        token: str = AUTH_TOKEN,
        sid: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        prefix = "whatsapp:" if whatsapp else ""
        params = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "Body": body,
            "From": prefix + from_,
            "MessageSid": sid or "SM" + uuid.uuid4().hex,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "To": prefix + TWILIO_FROM,
        }
        return self._signed_form(url, params, token)

    @staticmethod
    def _signed_form(url: str, params: dict[str, str], token: str) -> tuple[bytes, dict[str, str]]:
        signature = RequestValidator(token).compute_signature(url, params)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
        return urlencode(params).encode(), headers

    def signed_sendgrid_events(
        self, events: list[dict[str, Any]], timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(events, separators=(",", ":")).encode()
        ts = str(timestamp if timestamp is not None else int(time.time()))
        sig = self._private_key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return body, {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        }

    def deliver_status_callback(
        self,
        sid: str,
        status: str,
        *,
        error_code: str | None = None,
        via: str | None = None,
        token: str = AUTH_TOKEN,
    ) -> int:
        """POST a signed status callback for a message we accepted, as Twilio would, to its
        StatusCallback URL. The signature covers that public URL; `via` (e.g. the loopback
        address of the server under test) is where it is actually sent, like a reverse proxy."""
        with self.lock:
            msg = next(m for m in self.state.twilio_messages if m["sid"] == sid)
        url = str(msg["_form"]["StatusCallback"])
        whatsapp = str(msg["to"]).startswith("whatsapp:")
        body, headers = self.signed_status_callback(
            url,
            sid,
            status,
            error_code=error_code,
            to=str(msg["to"]).removeprefix("whatsapp:"),
            token=token,
            whatsapp=whatsapp,
        )
        parts = urlsplit(url)
        target = (
            url if via is None else via.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
        )
        return httpx.post(target, content=body, headers=headers, timeout=5).status_code

    # ---- server ------------------------------------------------------------------------
    def start(self) -> None:
        self._server, self._thread, self.base_url = serve_in_thread(self.app)

    def stop(self) -> None:
        stop_server(self._server, self._thread)

    # ---- the fake APIs -----------------------------------------------------------------
    def _take_fault(self, provider: str, to: str) -> Fault | None:
        with self.lock:
            for f in self.state.faults:
                if f.provider == provider and (f.to is None or f.to == to):
                    f.times -= 1
                    if f.times <= 0:
                        self.state.faults.remove(f)
                    return f
        return None

    def _build_app(self) -> FastAPI:
        app = FastAPI()
        fake = self

        def twilio_error(
            status: int, code: int | None, message: str, retry_after: float | None = None
        ) -> JSONResponse:
            headers = {"Retry-After": str(int(retry_after))} if retry_after else {}
            body = {
                "code": code or status,
                "message": message or "error",
                "more_info": f"https://www.twilio.com/docs/errors/{code or status}",
                "status": status,
            }
            return JSONResponse(body, status_code=status, headers=headers)

        def twilio_resource(m: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in m.items() if not k.startswith("_")}

        @app.post("/2010-04-01/Accounts/{account_sid}/Messages.json")
        async def create_message(account_sid: str, request: Request) -> Response:
            form = dict((await request.form()).items())
            fake.state.requests.append(
                {
                    "provider": "twilio",
                    "path": request.url.path,
                    "form": form,
                    "auth": request.headers.get("authorization"),
                }
            )
            expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
            if account_sid != ACCOUNT_SID or request.headers.get("authorization") != expected:
                return twilio_error(401, 20003, "Authenticate")
            to = str(form.get("To", ""))
            if not to:
                return twilio_error(400, 21604, "A 'To' phone number is required.")
            fault = fake._take_fault("twilio", to.removeprefix("whatsapp:"))
            if fault and fault.kind == "error":
                return twilio_error(fault.status, fault.code, fault.message, fault.retry_after)
            if to.startswith("whatsapp:") and "ContentSid" not in form and fake.state.whatsapp_window_closed:
                return twilio_error(
                    400, 63016, "Failed to send freeform message because you are outside the allowed window."
                )
            now = datetime.now(UTC)
            message = {
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": str(form.get("Body", "")),
                "date_created": format_datetime(now),
                "date_sent": None,
                "date_updated": format_datetime(now),
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From") or None,
                "messaging_service_sid": form.get("MessagingServiceSid") or None,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": "SM" + secrets.token_hex(16),
                "status": "accepted" if form.get("MessagingServiceSid") else "queued",
                "subresource_uris": {},
                "to": to,
                "uri": "",
                "_form": form,
            }
            with fake.lock:
                fake.state.twilio_messages.append(message)
            if fault and fault.kind == "accept_then_500":
                return twilio_error(500, 20500, "Internal Server Error")
            if fault and fault.kind == "accept_then_hang":
                await asyncio.sleep(fault.hang)
            return JSONResponse(twilio_resource(message), status_code=201)

        @app.get("/2010-04-01/Accounts/{account_sid}/Messages.json")
        async def list_messages(account_sid: str, request: Request) -> Response:
            to = request.query_params.get("To")
            with fake.lock:
                found = [
                    twilio_resource(m)
                    for m in reversed(fake.state.twilio_messages)
                    if to is None or m["to"] == to
                ]
            return JSONResponse(
                {
                    "messages": found,
                    "end": max(len(found) - 1, 0),
                    "first_page_uri": str(request.url.path),
                    "next_page_uri": None,
                    "page": 0,
                    "page_size": 50,
                    "previous_page_uri": None,
                    "start": 0,
                    "uri": str(request.url.path),
                }
            )

        @app.post("/v3/mail/send")
        async def mail_send(request: Request) -> Response:
            body = await request.json()
            fake.state.requests.append(
                {
                    "provider": "sendgrid",
                    "path": request.url.path,
                    "json": body,
                    "auth": request.headers.get("authorization"),
                }
            )
            if request.headers.get("authorization") != f"Bearer {SENDGRID_KEY}":
                return JSONResponse(
                    {
                        "errors": [
                            {
                                "field": None,
                                "message": "The provided authorization grant is invalid, expired, or revoked",
                            }
                        ]
                    },
                    status_code=401,
                )
            to = body["personalizations"][0]["to"][0]["email"]
            fault = fake._take_fault("sendgrid", to)
            if fault and fault.kind == "error":
                headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after else {}
                field_name = (
                    "personalizations.0.to.0.email" if fault.status == 400 and fault.code == 1 else None
                )
                return JSONResponse(
                    {"errors": [{"field": field_name, "message": fault.message or "error"}]},
                    status_code=fault.status,
                    headers=headers,
                )
            message_id = secrets.token_urlsafe(16)
            with fake.lock:
                fake.state.sendgrid_mails.append({"message_id": message_id, "payload": body})
            if fault and fault.kind == "accept_then_500":
                return JSONResponse({"errors": [{"message": "internal error"}]}, status_code=500)
            if fault and fault.kind == "accept_then_hang":
                await asyncio.sleep(fault.hang)
            return Response(status_code=202, headers={"X-Message-Id": message_id})

        return app


def serve_in_thread(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Run an ASGI app on 127.0.0.1 and a free port in a daemon thread; returns its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="loopback-server")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("loopback server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def stop_server(server: uvicorn.Server | None, thread: threading.Thread | None) -> None:
    if server is not None:
        server.should_exit = True
    if thread is not None:
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def fake_providers() -> Iterator[FakeProviders]:
    fake = FakeProviders()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_providers: FakeProviders) -> FakeProviders:
    fake_providers.reset()
    return fake_providers
