"""Connecting to Temporal from settings: the embedded dev server or a production cluster
(address, namespace, TLS client certificate or Temporal Cloud API key). Every client carries the
payload-encrypting data converter (ndrflow/codec.py); a worker built on the client inherits it."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.service import TLSConfig

from ndrflow.codec import data_converter
from ndrflow.config import Settings


async def connect(settings: Settings, address: str | None = None) -> Client:
    tls: bool | TLSConfig = False
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    elif settings.temporal_tls or settings.temporal_api_key:
        tls = True
    return await Client.connect(
        address or settings.temporal_address or "127.0.0.1:7233",
        namespace=settings.temporal_namespace,
        tls=tls,
        api_key=settings.temporal_api_key or None,
        data_converter=data_converter(settings),
    )
