"""Shipment and workflow ids: opaque, deterministic, free of personal data.

Carrier webhooks know only (carrier, tracking number); merchants know (merchant, carrier,
tracking number). The shipment id hashes the merchant's triple so the same registration always
maps to the same workflow, and ids carry no customer data (ids are not encrypted by the codec).
"""

from __future__ import annotations

import base64
import hashlib

WORKFLOW_PREFIX = "shipment-"


def shipment_id_for(merchant_id: str, carrier: str, tracking_number: str) -> str:
    digest = hashlib.sha256(f"{merchant_id}\x1f{carrier}\x1f{tracking_number}".encode()).digest()
    return "shp_" + base64.b32encode(digest[:15]).decode().lower()


def shipment_workflow_id(shipment_id: str) -> str:
    return WORKFLOW_PREFIX + shipment_id


def shipment_id_from_workflow_id(workflow_id: str) -> str:
    if not workflow_id.startswith(WORKFLOW_PREFIX):
        raise ValueError(f"not a shipment workflow id: {workflow_id!r}")
    return workflow_id[len(WORKFLOW_PREFIX) :]
