"""The project's custom search attributes and how a shipment's state maps onto them.

The names and types are registered on the dev server (`ndrflow up`), in test fixtures and must be
created on a production namespace (`ndrflow temporal setup`). Only statuses, carriers, merchant
ids and times go here: search attributes are never encrypted.
"""

from __future__ import annotations

from datetime import datetime

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from workflows.messages import ShipmentState

SHIPMENT_STATUS = SearchAttributeKey.for_keyword("ShipmentStatus")
CARRIER = SearchAttributeKey.for_keyword("Carrier")
MERCHANT_ID = SearchAttributeKey.for_keyword("MerchantId")
NDR_STATE = SearchAttributeKey.for_keyword("NdrState")
NDR_ATTEMPTS = SearchAttributeKey.for_int("NdrAttempts")
LAST_EVENT_AT = SearchAttributeKey.for_datetime("LastEventAt")
NEEDS_ATTENTION = SearchAttributeKey.for_bool("NeedsAttention")
ATTENTION_REASON = SearchAttributeKey.for_keyword("AttentionReason")

ALL_KEYS = [SHIPMENT_STATUS, CARRIER, MERCHANT_ID, NDR_STATE, NDR_ATTEMPTS, LAST_EVENT_AT, NEEDS_ATTENTION, ATTENTION_REASON]


def updates_for(st: ShipmentState) -> list[SearchAttributeUpdate]:
    ndr_state = st.ndr_cases[-1].get("state") if st.ndr_cases else None
    pairs: list[SearchAttributeUpdate] = [
        SHIPMENT_STATUS.value_set(st.status),
        NDR_ATTEMPTS.value_set(len(st.ndr_cases)),
        NEEDS_ATTENTION.value_set(st.needs_attention),
    ]
    if st.profile is not None:
        pairs.append(CARRIER.value_set(st.profile.carrier))
        pairs.append(MERCHANT_ID.value_set(st.profile.merchant_id))
    pairs.append(NDR_STATE.value_set(ndr_state) if ndr_state else NDR_STATE.value_unset())
    pairs.append(ATTENTION_REASON.value_set(st.attention_reason) if st.attention_reason else ATTENTION_REASON.value_unset())
    if st.last_event_at:
        pairs.append(LAST_EVENT_AT.value_set(datetime.fromisoformat(st.last_event_at.replace("Z", "+00:00"))))
    return pairs


def initial_attributes(merchant_id: str, carrier: str) -> TypedSearchAttributes:
    """Set at start so a shipment is findable by merchant and carrier from its first moment."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(SHIPMENT_STATUS, "created"),
            SearchAttributePair(CARRIER, carrier),
            SearchAttributePair(MERCHANT_ID, merchant_id),
            SearchAttributePair(NEEDS_ATTENTION, False),
            SearchAttributePair(NDR_ATTEMPTS, 0),
        ]
    )


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime", "BOOL": "Bool"}
    return [f"--search-attribute={k.name}={kinds[k.indexed_value_type.name]}" for k in ALL_KEYS]
