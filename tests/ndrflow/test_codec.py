"""The payload codec: round trip, key rotation, tampering, unknown keys, configuration."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter

from ndrflow.codec import (
    ENCODING,
    KEY_ID_FIELD,
    CodecError,
    CodecKey,
    EncryptionCodec,
    UnknownKeyError,
    data_converter,
    format_keys,
    generate_key,
    parse_keys,
)
from ndrflow.config import Settings

PHONE = "+919876543210"


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"phone": text}).encode())


def key(kid: str, fill: int) -> CodecKey:
    return CodecKey(kid, bytes([fill]) * 32)


async def test_round_trip_hides_data_and_names_the_key() -> None:
    codec = EncryptionCodec([key("k1", 1)])
    original = plain(PHONE)
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_FIELD] == b"k1"
    assert PHONE.encode() not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString()  # the inner metadata is sealed too
    [back] = await codec.decode([sealed])
    assert back == original


async def test_same_payload_seals_differently_each_time() -> None:
    codec = EncryptionCodec([key("k1", 1)])
    a, b = await codec.encode([plain(PHONE), plain(PHONE)])
    assert a.data != b.data  # fresh nonce per payload: equal values are not linkable


async def test_rotation_new_key_first_old_payloads_still_decode() -> None:
    old = EncryptionCodec([key("2025", 1)])
    [sealed_old] = await old.encode([plain(PHONE)])
    rotated = EncryptionCodec([key("2026", 2), key("2025", 1)])
    [sealed_new] = await rotated.encode([plain("+14155550100")])
    assert sealed_new.metadata[KEY_ID_FIELD] == b"2026"
    assert await rotated.decode([sealed_old, sealed_new]) == [plain(PHONE), plain("+14155550100")]
    # A process that dropped the old key cannot read old payloads, and says why.
    with pytest.raises(UnknownKeyError, match="'2025'.*does not hold"):
        await EncryptionCodec([key("2026", 2)]).decode([sealed_old])


async def test_tampered_ciphertext_fails_authentication() -> None:
    codec = EncryptionCodec([key("k1", 1)])
    [sealed] = await codec.encode([plain(PHONE)])
    flipped = bytearray(sealed.data)
    flipped[-1] ^= 0x01
    bad = Payload(metadata=dict(sealed.metadata), data=bytes(flipped))
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([bad])
    with pytest.raises(CodecError, match="truncated"):
        await codec.decode([Payload(metadata=dict(sealed.metadata), data=sealed.data[:10])])


async def test_relabelled_key_id_fails_even_when_both_keys_are_held() -> None:
    # The key id is authenticated: pointing a payload at another key is detected, not mis-decoded.
    codec = EncryptionCodec([key("k1", 1), key("k2", 1)])  # same bytes, different ids
    [sealed] = await codec.encode([plain(PHONE)])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_FIELD: b"k2"}, data=sealed.data)
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([relabelled])


async def test_wrong_key_with_same_id_fails_clearly() -> None:
    [sealed] = await EncryptionCodec([key("k1", 1)]).encode([plain(PHONE)])
    with pytest.raises(CodecError, match="failed authentication"):
        await EncryptionCodec([key("k1", 9)]).decode([sealed])


async def test_unknown_key_id_and_missing_key_id() -> None:
    codec = EncryptionCodec([key("k1", 1)])
    [sealed] = await codec.encode([plain(PHONE)])
    foreign = Payload(metadata={**sealed.metadata, KEY_ID_FIELD: b"nope"}, data=sealed.data)
    with pytest.raises(UnknownKeyError, match="'nope'"):
        await codec.decode([foreign])
    no_kid = Payload(metadata={"encoding": ENCODING}, data=sealed.data)
    with pytest.raises(CodecError, match=KEY_ID_FIELD):
        await codec.decode([no_kid])


async def test_unencrypted_payloads_pass_through_decode() -> None:
    # Histories written before encryption was switched on must stay readable.
    codec = EncryptionCodec([key("k1", 1)])
    assert await codec.decode([plain(PHONE)]) == [plain(PHONE)]


async def test_data_converter_round_trips_values_and_seals_failures() -> None:
    from temporalio.exceptions import ApplicationError

    dc = data_converter(Settings(_env_file=None, codec_keys=format_keys([key("k1", 1)])))
    payloads = await dc.encode(["call +919876543210", {"email": "asha@example.com"}])
    assert all(p.metadata["encoding"] == ENCODING for p in payloads)
    assert await dc.decode(payloads, [str, dict]) == ["call +919876543210", {"email": "asha@example.com"}]
    # A failure message quoting personal data is sealed too (encoded attributes).
    failure = Failure()
    await dc.encode_failure(ApplicationError("number +919876543210 is unreachable", type="Invalid"), failure)
    assert b"+919876543210" not in failure.SerializeToString()
    assert "+919876543210" in str(await dc.decode_failure(failure))
    # The default converter, for contrast, leaves it readable: the assertion above can fail.
    open_failure = Failure()
    await DataConverter.default.encode_failure(
        ApplicationError("number +919876543210", type="Invalid"), open_failure
    )
    assert b"+919876543210" in open_failure.SerializeToString()


# ---- configuration --------------------------------------------------------------------------


def test_parse_keys_json_and_csv_active_first() -> None:
    a, b = generate_key("a"), generate_key("b")
    csv = format_keys([a, b])
    js = json.dumps(csv.split(","))
    assert parse_keys(csv) == parse_keys(js) == [a, b]
    # URL-safe alphabet and missing padding are accepted too.
    urlsafe = "c:" + base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
    assert parse_keys(urlsafe)[0].key == bytes(range(32))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("k1", "kid:base64key"),
        ("bad kid:" + base64.b64encode(b"x" * 32).decode(), "kid:base64key"),
        ("k1:!!!", "not valid base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "5 bytes"),
        ("[1, 2]", "list of"),
        ("[oops", "JSON"),
        ("k1:{0},k1:{0}".format(base64.b64encode(b"x" * 32).decode()), "twice"),
    ],
    ids=[
        "empty",
        "no-colon",
        "bad-kid",
        "bad-base64",
        "short-key",
        "json-not-strings",
        "bad-json",
        "duplicate-kid",
    ],
)
def test_parse_keys_refuses_bad_configuration_without_echoing_keys(value: str, message: str) -> None:
    with pytest.raises(CodecError, match=message) as info:
        parse_keys(value)
    secret = base64.b64encode(b"x" * 32).decode()
    assert secret not in str(info.value)


def test_key_repr_never_shows_key_material() -> None:
    k = generate_key("k1")
    assert base64.b64encode(k.key).decode() not in repr(k) and repr(k) == "CodecKey(kid='k1')"


def test_home_generates_one_key_once_and_every_process_of_the_home_shares_it(tmp_path: Path) -> None:
    first = Settings(_env_file=None, home=tmp_path / "h").with_home_secrets()
    again = Settings(_env_file=None, home=tmp_path / "h").with_home_secrets()
    assert first.codec_keys and first.codec_keys == again.codec_keys
    assert len(parse_keys(first.codec_keys)) == 1
    stored = json.loads((tmp_path / "h" / "secrets.json").read_text())
    assert stored["codec_keys"] == first.codec_keys
    assert (tmp_path / "h" / "secrets.json").stat().st_mode & 0o077 == 0


def test_configured_keys_win_over_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = format_keys([generate_key("prod1")])
    monkeypatch.setenv("NDRFLOW_CODEC_KEYS", value)
    s = Settings(_env_file=None, home=tmp_path / "h").with_home_secrets()
    assert s.codec_keys == value
    assert "codec_keys" not in json.loads((tmp_path / "h" / "secrets.json").read_text())


async def test_data_converter_without_configured_keys_uses_the_home(tmp_path: Path) -> None:
    s = Settings(_env_file=None, home=tmp_path / "h")
    [sealed] = await data_converter(s).encode(["x"])
    kid = sealed.metadata[KEY_ID_FIELD].decode()
    assert parse_keys(json.loads((tmp_path / "h" / "secrets.json").read_text())["codec_keys"])[0].kid == kid


def test_dev_server_gives_its_ui_the_codec_endpoint(tmp_path: Path) -> None:
    from ndrflow.devserver import DevServer

    cmd = DevServer(
        home=tmp_path, binary=Path("temporal"), ui_codec_endpoint="http://127.0.0.1:8000/codec/ui/t"
    ).command()
    assert cmd[cmd.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8000/codec/ui/t"
    assert "--ui-codec-endpoint" not in DevServer(home=tmp_path, binary=Path("temporal")).command()
    assert (
        "--ui-codec-endpoint"
        not in DevServer(home=tmp_path, binary=Path("temporal"), ui=False, ui_codec_endpoint="x").command()
    )


def test_a_cluster_deployment_on_generated_keys_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Separate API and worker machines would each generate their own key: say so at start.
    cluster = Settings(
        _env_file=None, home=tmp_path / "h", temporal_address="temporal.prod:7233"
    ).with_home_secrets()
    data_converter(cluster)
    assert "NDRFLOW_CODEC_KEYS is not set" in caplog.text
    caplog.clear()
    data_converter(
        Settings(
            _env_file=None,
            home=tmp_path / "h2",
            temporal_address="temporal.prod:7233",
            codec_keys=format_keys([generate_key()]),
        )
    )
    data_converter(Settings(_env_file=None, home=tmp_path / "h3"))  # local mode: generated keys are the point
    assert "NDRFLOW_CODEC_KEYS" not in caplog.text
