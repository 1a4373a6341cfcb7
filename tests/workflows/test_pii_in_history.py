"""Personal data is not readable in workflow history: the NDR journey in which carrier scans quote
the customer's name, address and phone, and the customer's SMS replies carry a phone number and
an email (signals, an Update, activity inputs and results, the workflow result), runs on the
time-skipping server through a client with the payload codec; the raw history (as the server
stores it) is searched for them.

The same journey without the codec finds them all, so the search is shown to work.
"""

from __future__ import annotations

import uuid

from temporalio.api.history.v1 import History
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from ndrflow.codec import data_converter, format_keys, generate_key
from ndrflow.config import Settings
from tests.workflows.record_histories import (
    CUSTOMER_EMAIL,
    CUSTOMER_PHONE,
    JOURNEYS,
    PII_STRINGS,
    codec_client,
    run_journey,
)
from workflows.messages import ShipmentState


async def _raw_history(
    env: WorkflowEnvironment, converter: DataConverter, journey: str = "ndr_answered"
) -> tuple[bytes, str, ShipmentState]:
    client = codec_client(env.client, converter)
    sid = f"shp_pii_{uuid.uuid4().hex[:8]}"
    handle = await run_journey(
        env, JOURNEYS[journey], client=client, task_queue=f"tq-{uuid.uuid4()}", shipment_id=sid
    )
    history = await handle.fetch_history()  # events exactly as stored: payloads are not decoded
    raw = History(events=history.events).SerializeToString()
    state = await client.get_workflow_handle(handle.id, result_type=ShipmentState).result()
    return raw, history.to_json(), state


def _found(raw: bytes, text: str) -> set[str]:
    return {s for s in PII_STRINGS if s.encode() in raw or s in text}


async def test_no_personal_data_readable_in_history_with_the_codec(time_env: WorkflowEnvironment) -> None:
    # The production path: the converter comes from settings, as ndrflow.temporal.connect uses it.
    settings = Settings(_env_file=None, codec_keys=format_keys([generate_key("k2026")]))
    raw, text, state = await _raw_history(time_env, data_converter(settings))
    assert _found(raw, text) == set()
    # Also not as the bare digits a carrier might print, nor the mailbox alone.
    assert CUSTOMER_PHONE.lstrip("+").encode() not in raw and b"asha.rao" not in raw
    # Whoever holds the key still sees everything: the codec is transparent to the app.
    reply = [t for t in state.timeline if t.kind == "reply"][-1]
    assert CUSTOMER_PHONE in reply.data["text"] and CUSTOMER_EMAIL in reply.data["text"]


async def test_without_the_codec_the_same_search_finds_them(time_env: WorkflowEnvironment) -> None:
    raw, text, _ = await _raw_history(time_env, DataConverter.default)
    assert _found(raw, text) == set(PII_STRINGS)
