"""Registering the project's custom search attributes on a namespace (operator service).

Used after the embedded dev server starts (its `--search-attribute` flags are ignored when the DB
file already exists, so attributes added in a later release would otherwise be missing) and by
`ndrflow temporal setup` for a production namespace. Idempotent: only missing ones are added.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from workflows import search


class SearchAttributeError(RuntimeError):
    """A search attribute exists with another type, or cannot be registered; says what to do."""


async def existing_search_attributes(client: Client) -> dict[str, int]:
    resp = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return dict(resp.custom_attributes)


async def ensure_search_attributes(
    client: Client, keys: Sequence[SearchAttributeKey] = tuple(search.ALL_KEYS)
) -> list[str]:
    """Add whichever of `keys` the client's namespace lacks; returns the names added."""
    have = await existing_search_attributes(client)
    missing: dict[str, IndexedValueType.ValueType] = {}
    for key in keys:
        want = IndexedValueType.ValueType(int(key.indexed_value_type))
        if key.name not in have:
            missing[key.name] = want
        elif have[key.name] != want:
            raise SearchAttributeError(
                f"search attribute {key.name} exists on namespace {client.namespace!r} as "
                f"{IndexedValueType.Name(have[key.name])}, ndrflow needs {IndexedValueType.Name(want)}"
            )
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=client.namespace)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.ALREADY_EXISTS:
            # Another process registered them between our list and add: fine if now complete.
            have = await existing_search_attributes(client)
            if all(name in have for name in missing):
                return []
        if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            raise SearchAttributeError(
                f"cannot register search attributes on {client.namespace!r} ({exc.message}). On Temporal Cloud "
                f"add them with `tcld namespace search-attributes add`: "
                + ", ".join(
                    f"{n}={IndexedValueType.Name(t).removeprefix('INDEXED_VALUE_TYPE_')}"
                    for n, t in missing.items()
                )
            ) from exc
        raise
    return sorted(missing)
