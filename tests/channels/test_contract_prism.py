"""Contract tests: the real twilio and sendgrid SDKs, driven by our channel modules, send to
Prism mocks built from the official OpenAPI specs, and the mocks accept the requests.

Specs are read where they live, never copied into the repository: `../shared/specs/` beside the
repository (CI and the main checkout), or NDRFLOW_SPECS_DIR. Prism 5.14.2 comes from the
project's own package.json/package-lock.json (node >= 18; later Prism versions need node 24);
this fixture installs it into ./node_modules when it is missing. Without the specs, npm or a
working Prism the tests skip and say why.

Prism validates each request against the spec: a violation is a 422 (Twilio) or 400 (SendGrid),
which our modules raise as ChannelError, so "accepted" here means "valid per the spec".
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels import sendgrid_email, twilio_sms, twilio_whatsapp
from channels.base import ChannelError, OutboundMessage
from channels.settings import ChannelSettings
from templates import render

pytestmark = pytest.mark.contract

REPO = Path(__file__).resolve().parents[2]
PRISM_VERSION = "5.14.2"
TWILIO_SPEC = "twilio_api_v2010.json"
SENDGRID_SPEC = "tsg_mail_v3.json"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


def specs_dir() -> Path:
    override = os.environ.get("NDRFLOW_SPECS_DIR")
    return Path(override) if override else REPO.parent / "shared" / "specs"


def prism_binary() -> Path:
    return REPO / "node_modules" / ".bin" / "prism"


def ensure_prism() -> Path:
    binary = prism_binary()
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("contract tests need Prism: npm is not installed (Debian: apt-get install npm)")
    env = {**os.environ, "SCARF_ANALYTICS": "false", "ADBLOCK": "1", "DISABLE_OPENCOLLECTIVE": "1"}
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("contract tests need Prism: `npm install` did not finish in 5 minutes")
    if done.returncode != 0 or not binary.exists():
        pytest.skip(
            f"contract tests need Prism {PRISM_VERSION}: `npm install` failed: {done.stderr.strip()[-400:]}"
        )
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prism:
    def __init__(self, binary: Path, spec: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [str(binary), "mock", "-h", "127.0.0.1", "-p", str(self.port), str(spec)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            env={**os.environ, "SCARF_ANALYTICS": "false"},
        )

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Prism exited with {self.proc.returncode}: {self.log.read_text()[-600:]}")
            if "Prism is listening" in self.log.read_text():
                return
            time.sleep(0.1)
        raise TimeoutError(f"Prism did not start in time: {self.log.read_text()[-600:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group only
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._out.close()


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    specs = specs_dir()
    if not (specs / TWILIO_SPEC).is_file() or not (specs / SENDGRID_SPEC).is_file():
        pytest.skip(
            f"contract tests need the official specs: {specs} has no {TWILIO_SPEC} / {SENDGRID_SPEC} (set NDRFLOW_SPECS_DIR)"
        )
    binary = ensure_prism()
    logs = tmp_path_factory.mktemp("prism")
    mocks = {
        "twilio": Prism(binary, specs / TWILIO_SPEC, logs / "twilio.log"),
        "sendgrid": Prism(binary, specs / SENDGRID_SPEC, logs / "sendgrid.log"),
    }
    try:
        deadline = time.monotonic() + 60
        for mock in mocks.values():
            mock.wait_ready(deadline)
    except (RuntimeError, TimeoutError) as exc:
        for mock in mocks.values():
            mock.stop()
        pytest.skip(f"Prism could not serve the specs: {exc}")
    yield {name: mock.url for name, mock in mocks.items()} | {
        f"{name}_log": str(m.log) for name, m in mocks.items()
    }
    for mock in mocks.values():
        mock.stop()


CONTEXT = {
    "merchant_name": "Acme Fashions & Lifestyle",
    "customer_name": "Asha Rao",
    "order_id": "ACME-2026-004871",
    "tracking_number": "DLV1234567890123",
    "tracking_url": "https://track.acmefashions.in/t/DLV1234567890123",
    "carrier_name": "Delhivery",
    "payment_mode": "cod",
    "cod_amount": "1299.00",
    "reason": "customer_unavailable",
    "options": ["reattempt", "reschedule", "update_contact", "rto"],
    "link": "https://track.acmefashions.in/r/q9ZtK2mXv8LpR4sW7yB1nC6dF3hJ5gA0",
}


def message(channel: str, purpose: str, to: str, locale: str = "hi-IN") -> OutboundMessage:
    r = render(channel, purpose, locale, CONTEXT, tz="Asia/Kolkata")
    return OutboundMessage(
        key=f"shp_contract:{purpose}:e1:{channel}",
        shipment_id="shp_contract",
        channel=channel,
        purpose=purpose,
        locale=r.locale,
        template_locale=r.template_locale,
        to=to,
        body=r.body,
        subject=r.subject,
        html=r.html,
        variables=r.variables,
        sender_name="Acme Fashions",
    )


def twilio_settings(prism: dict[str, str], **kw: object) -> ChannelSettings:
    values: dict[str, object] = dict(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token="contract-token",
        twilio_from="+15005550006",
        twilio_base_url=prism["twilio"],
        twilio_timeout_seconds=10,
        public_base_url="https://ndr.example.com",
    )
    values.update(kw)
    return ChannelSettings(**values)


def test_sms_is_accepted_by_the_twilio_spec(prism: dict[str, str]) -> None:
    msg = message("sms", "ndr_ask", "+919876543210")
    result = twilio_sms.send(msg, twilio_settings(prism))
    assert result.provider_message_id and result.provider_message_id.startswith("SM")
    via_service = twilio_sms.send(msg, twilio_settings(prism, twilio_messaging_service_sid="MG" + "0" * 32))
    assert via_service.provider_message_id.startswith("SM")


def test_whatsapp_template_message_is_accepted_by_the_twilio_spec(prism: dict[str, str]) -> None:
    templates = {
        "ndr_ask": {
            "hi": {
                "content_sid": "HX" + "a" * 32,
                "variables": ["merchant_name", "order_id", "reason_text", "options_text", "link"],
            }
        }
    }
    settings = twilio_settings(prism, whatsapp_templates=templates, twilio_whatsapp_from="+14155238886")
    result = twilio_whatsapp.send(message("whatsapp", "ndr_ask", "+919876543210"), settings)
    assert result.provider_message_id.startswith("SM") and "template" in result.detail


def test_mail_send_is_accepted_by_the_sendgrid_spec(prism: dict[str, str]) -> None:
    settings = ChannelSettings(
        sendgrid_api_key="SG.contract",
        sendgrid_from="notify@acme.example",
        sendgrid_reply_to="replies@parse.acme.example",
        sendgrid_base_url=prism["sendgrid"],
        sendgrid_timeout_seconds=10,
    )
    result = sendgrid_email.send(message("email", "ndr_ask", "asha@example.com"), settings)
    assert result.status == "accepted"
    dynamic = ChannelSettings(
        **{**settings.model_dump(), "sendgrid_templates": {"delivered": "d-" + "0" * 32}}
    )
    assert (
        sendgrid_email.send(message("email", "delivered", "asha@example.com", "en"), dynamic).status
        == "accepted"
    )


def test_the_mocks_do_refuse_invalid_requests(prism: dict[str, str]) -> None:
    """Controls: the mocks validate, so the acceptances above mean something."""
    bad_account = twilio_settings(prism, twilio_account_sid="AC-not-a-valid-sid")
    with pytest.raises(ChannelError) as info:
        twilio_sms.send(message("sms", "delivered", "+919876543210"), bad_account)
    assert info.value.http_status == 422 and info.value.permanent
    with pytest.raises(ChannelError) as info:
        sendgrid_email.send(
            message("email", "delivered", "asha@example.com", "en"),
            ChannelSettings(
                sendgrid_api_key="SG.contract",
                sendgrid_from="not-an-email",
                sendgrid_base_url=prism["sendgrid"],
            ),
        )
    assert info.value.http_status == 400
    # The spec quirk our payload avoids: top-level custom_args as an object is refused.
    from python_http_client.exceptions import HTTPError
    from sendgrid import SendGridAPIClient

    payload = sendgrid_email.build_payload(
        message("email", "delivered", "asha@example.com", "en"),
        ChannelSettings(sendgrid_from="notify@acme.example"),
    )
    sg = SendGridAPIClient(api_key="SG.contract", host=prism["sendgrid"])
    with pytest.raises(HTTPError) as refused:
        sg.send({**payload, "custom_args": {"ndrflow_key": "x"}})
    assert refused.value.status_code == 400
    assert sg.send(payload).status_code == 202
