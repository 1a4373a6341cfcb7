"""Payload encryption for Temporal: personal data is never readable in workflow history.

Every payload the API, the worker and `ndrflow up` send to Temporal (workflow inputs, signals,
updates, activity inputs and results, query answers, failure messages) is sealed with AES-256-GCM
before it leaves the process. Temporal stores only ciphertext; the Web UI shows plain values only
through the codec server (`api/routes/codec.py`) to an operator who is allowed to see them.

Keys come from `NDRFLOW_CODEC_KEYS`: a JSON list or a comma-separated list of `kid:base64key`
(32-byte keys), the first being the one new payloads are sealed with. The key id travels in the
payload metadata (`encryption-key-id`), so rotation is: put a new key first, keep the old ones
after it until no open workflow or retained history needs them. When the variable is unset, one
key is generated per home into `secrets.json` (zero-config local mode); every process that talks
to the same Temporal namespace must hold the same keys.

Sealed payload: metadata `encoding: binary/encrypted`, `encryption-key-id: <kid>`; data is
`nonce(12) || AES-GCM(key, nonce, Payload.SerializeToString(), aad=b"ndrflow:" + kid)`. The key id
is bound into the authenticated data, so relabelling a payload with another key id fails.
Payloads without the encrypted encoding pass through decode untouched (histories written before
encryption was switched on stay readable).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

if TYPE_CHECKING:
    from ndrflow.config import Settings

log = logging.getLogger("ndrflow.codec")

ENCODING = b"binary/encrypted"
KEY_ID_FIELD = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
KID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CodecError(ValueError):
    """A payload could not be decrypted, or the key configuration is unusable; says which."""


class UnknownKeyError(CodecError):
    """The payload names a key id this process does not hold."""


@dataclass(frozen=True)
class CodecKey:
    kid: str
    key: bytes = b""

    def __repr__(self) -> str:  # never print key material, even in tracebacks
        return f"CodecKey(kid={self.kid!r})"


def parse_keys(value: str) -> list[CodecKey]:
    """`NDRFLOW_CODEC_KEYS` -> keys, active first. Accepts a JSON list of strings or
    comma/whitespace separated `kid:base64key` items. Raises CodecError naming the bad item
    (by position and key id only: the message never contains key material)."""
    text = (value or "").strip()
    if not text:
        raise CodecError("NDRFLOW_CODEC_KEYS is empty: give at least one kid:base64key")
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CodecError(f"NDRFLOW_CODEC_KEYS is not a valid JSON list: {exc.msg}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise CodecError('NDRFLOW_CODEC_KEYS as JSON must be a list of "kid:base64key" strings')
    else:
        items = [i for i in re.split(r"[,\s]+", text) if i]
    keys: list[CodecKey] = []
    for n, item in enumerate(items, 1):
        kid, sep, encoded = item.strip().partition(":")
        if not sep or not KID_RE.match(kid):
            raise CodecError(
                f"NDRFLOW_CODEC_KEYS item {n} must look like kid:base64key with a key id of "
                "1-64 letters, digits, '.', '_' or '-'"
            )
        try:
            raw = _b64(encoded)
        except (binascii.Error, ValueError):
            raise CodecError(f"NDRFLOW_CODEC_KEYS key {kid!r} is not valid base64") from None
        if len(raw) != KEY_BYTES:
            raise CodecError(f"NDRFLOW_CODEC_KEYS key {kid!r} is {len(raw)} bytes; AES-256 needs {KEY_BYTES}")
        if any(k.kid == kid for k in keys):
            raise CodecError(f"NDRFLOW_CODEC_KEYS lists key id {kid!r} twice")
        keys.append(CodecKey(kid, raw))
    return keys


def _b64(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    text = text.strip().translate(str.maketrans("-_", "+/"))
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def format_keys(keys: Sequence[CodecKey]) -> str:
    """The `NDRFLOW_CODEC_KEYS` value for `keys` (comma-separated, active first)."""
    return ",".join(f"{k.kid}:{base64.b64encode(k.key).decode()}" for k in keys)


def generate_key(kid: str | None = None) -> CodecKey:
    return CodecKey(kid or f"k{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=256))


def generate_keys_value() -> str:
    """A fresh one-key `NDRFLOW_CODEC_KEYS` value (what a new home gets in secrets.json)."""
    return format_keys([generate_key()])


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec with key rotation by key id (see the module docstring)."""

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise CodecError("the payload codec needs at least one key")
        self.active = keys[0]
        self._ciphers = {k.kid: AESGCM(k.key) for k in keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        kid = self.active.kid
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, payload.SerializeToString(), _aad(kid))
        return Payload(metadata={"encoding": ENCODING, KEY_ID_FIELD: kid.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours (written before encryption was on): leave it as it is
        raw_kid = payload.metadata.get(KEY_ID_FIELD)
        if raw_kid is None:
            raise CodecError(f"encrypted payload has no {KEY_ID_FIELD} metadata")
        kid = raw_kid.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyError(
                f"payload was encrypted with key id {kid!r}, which this process does not hold "
                f"(NDRFLOW_CODEC_KEYS has {', '.join(repr(k) for k in self._ciphers)}); every API and "
                "worker process must share the same keys, and retired keys stay listed after the active one"
            )
        data = payload.data
        if len(data) < NONCE_BYTES + 16:
            raise CodecError(f"encrypted payload (key id {kid!r}) is truncated")
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(kid))
        except InvalidTag:
            raise CodecError(
                f"encrypted payload (key id {kid!r}) failed authentication: it was altered, or the key "
                "with this id is not the one it was sealed with"
            ) from None
        out = Payload()
        out.ParseFromString(plain)
        return out


def _aad(kid: str) -> bytes:
    return b"ndrflow:" + kid.encode()


def converter_for(codec: PayloadCodec | None) -> DataConverter:
    """The data converter around `codec`. Failure messages and stack traces are moved into an
    encoded attribute so an activity error quoting a phone number is sealed too."""
    if codec is None:
        return DataConverter.default
    return DataConverter(
        payload_codec=codec, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
    )


def codec_for(settings: Settings) -> EncryptionCodec:
    """The codec from `settings.codec_keys`, filling it from the home's secrets.json when unset."""
    if not settings.codec_keys:
        settings.with_home_secrets()
    if not settings.embedded_temporal and _generated_for_home(settings):
        log.warning(
            "NDRFLOW_CODEC_KEYS is not set: payloads are encrypted with the key generated in %s. Every "
            "API and worker process of namespace %r must hold the same keys: set NDRFLOW_CODEC_KEYS",
            settings.home / "secrets.json",
            settings.temporal_namespace,
        )
    return EncryptionCodec(parse_keys(settings.codec_keys))


def _generated_for_home(settings: Settings) -> bool:
    try:
        stored = json.loads((settings.home / "secrets.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stored, dict) and stored.get("codec_keys") == settings.codec_keys


def data_converter(settings: Settings) -> DataConverter:
    """What every Temporal client of ndrflow uses (`ndrflow.temporal.connect` passes it)."""
    return converter_for(codec_for(settings))
