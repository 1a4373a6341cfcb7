"""API keys on SQLite and PostgreSQL: hashed at rest, scoped, bound, revocable."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from store.keys import (
    InvalidKeyRequest,
    authenticate,
    create_key,
    ensure_key,
    hash_key,
    list_keys,
    revoke_key,
)
from store.models import ApiKey


def test_created_key_authenticates_with_its_scope_and_binding(engine: Engine) -> None:
    with Session(engine) as s:
        m = create_key(s, scope="merchant", merchant_id="acme", name="shop backend")
        c = create_key(s, scope="carrier", carrier="generic")
        a = create_key(s, scope="agent", name="support")
    assert m.startswith("ndr_m_") and c.startswith("ndr_c_") and a.startswith("ndr_a_")
    assert len({m, c, a}) == 3
    with Session(engine) as s:
        row = authenticate(s, m)
        assert row is not None
        assert (row.scope, row.merchant_id, row.carrier, row.name) == (
            "merchant",
            "acme",
            None,
            "shop backend",
        )
        row = authenticate(s, c)
        assert row is not None and (row.scope, row.merchant_id, row.carrier) == ("carrier", None, "generic")
        row = authenticate(s, a)
        assert row is not None and (row.scope, row.merchant_id, row.carrier) == ("agent", None, None)


def test_raw_key_is_never_stored(engine: Engine) -> None:
    with Session(engine) as s:
        raw = create_key(s, scope="merchant", merchant_id="acme")
        row = s.exec(select(ApiKey)).one()
    assert row.key_hash == hash_key(raw) and len(row.key_hash) == 64
    assert raw not in (row.prefix, row.key_hash, row.name)
    # The prefix is only a lookup aid: the random part beyond it stays secret.
    assert raw.startswith(row.prefix) and len(row.prefix) < len(raw) - 30


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "Bearer xyz",
        "ndr_m_short",
        "ndr_x_" + "A" * 43,
    ],
)
def test_malformed_keys_are_refused(engine: Engine, presented: str) -> None:
    with Session(engine) as s:
        create_key(s, scope="agent")
        assert authenticate(s, presented) is None


def test_a_key_differing_after_the_prefix_is_refused(engine: Engine) -> None:
    with Session(engine) as s:
        raw = create_key(s, scope="merchant", merchant_id="acme")
        last = raw[-1]
        forged = raw[:-1] + ("A" if last != "A" else "B")
        assert authenticate(s, forged) is None
        # Same random part, other scope letter: a different key altogether.
        assert authenticate(s, raw.replace("ndr_m_", "ndr_a_", 1)) is None
        assert authenticate(s, raw) is not None


def test_revoked_key_is_refused_and_others_keep_working(engine: Engine) -> None:
    with Session(engine) as s:
        k1 = create_key(s, scope="merchant", merchant_id="acme")
        k2 = create_key(s, scope="merchant", merchant_id="acme")
        row = authenticate(s, k1)
        assert row is not None
        revoked = revoke_key(s, key_id=row.id)
        assert [r.id for r in revoked] == [row.id] and revoked[0].revoked_at is not None
    with Session(engine) as s:
        assert authenticate(s, k1) is None
        assert authenticate(s, k2) is not None
        # Revoking again changes nothing and says so.
        assert revoke_key(s, key_id=row.id) == []


def test_revoke_by_listed_prefix(engine: Engine) -> None:
    with Session(engine) as s:
        raw = create_key(s, scope="carrier", carrier="delhivery")
        (listed,) = list_keys(s)
        assert revoke_key(s, prefix=listed.prefix)[0].id == listed.id
        assert authenticate(s, raw) is None
        with pytest.raises(InvalidKeyRequest, match="exactly one"):
            revoke_key(s)
        with pytest.raises(InvalidKeyRequest, match="at least 8"):
            revoke_key(s, prefix="ndr_")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scope": "admin"}, "unknown scope 'admin'"),
        ({"scope": "merchant"}, "needs a merchant id"),
        ({"scope": "merchant", "merchant_id": "acme", "carrier": "generic"}, "cannot be bound to a carrier"),
        ({"scope": "merchant", "merchant_id": "ac me/../x"}, "invalid merchant id"),
        ({"scope": "carrier"}, "needs a carrier code"),
        ({"scope": "carrier", "carrier": "generic", "merchant_id": "acme"}, "cannot be bound to a merchant"),
        ({"scope": "carrier", "carrier": "Blue Dart"}, "invalid carrier code"),
        ({"scope": "agent", "merchant_id": "acme"}, "not bound"),
        ({"scope": "agent", "name": "x" * 129}, "longer than 128"),
    ],
)
def test_invalid_scope_or_binding_is_refused_and_nothing_stored(
    engine: Engine, kwargs: dict, message: str
) -> None:
    with Session(engine) as s:
        with pytest.raises(InvalidKeyRequest, match=message):
            create_key(s, **kwargs)
        assert list_keys(s, include_revoked=True) == []


def test_list_filters_and_hides_revoked_by_default(engine: Engine) -> None:
    with Session(engine) as s:
        create_key(s, scope="merchant", merchant_id="acme")
        create_key(s, scope="merchant", merchant_id="globex")
        create_key(s, scope="carrier", carrier="generic")
        gone = create_key(s, scope="agent")
        row = authenticate(s, gone)
        assert row is not None
        revoke_key(s, key_id=row.id)

        assert [k.scope for k in list_keys(s)] == ["merchant", "merchant", "carrier"]
        assert [k.merchant_id for k in list_keys(s, merchant_id="globex")] == ["globex"]
        assert [k.carrier for k in list_keys(s, scope="carrier")] == ["generic"]
        assert len(list_keys(s, include_revoked=True)) == 4


def test_ensure_key_installs_a_held_key_once_and_refuses_revoked_ones(engine: Engine) -> None:
    with Session(engine) as s:
        raw = create_key(s, scope="merchant", merchant_id="demo")
    # A fresh database (e.g. the SQLite file was deleted) but the raw key is still in the home.
    with Session(engine) as s:
        s.delete(s.exec(select(ApiKey)).one())
        s.commit()
        assert authenticate(s, raw) is None
        assert ensure_key(s, raw, scope="merchant", merchant_id="demo") is not None
        assert ensure_key(s, raw, scope="merchant", merchant_id="demo") is not None
        assert len(list_keys(s)) == 1
        assert authenticate(s, raw) is not None
        # Bound differently, or revoked: the caller must make a new key.
        assert ensure_key(s, raw, scope="merchant", merchant_id="other") is None
        assert ensure_key(s, raw, scope="agent") is None
        revoke_key(s, prefix=raw[:14])
        assert ensure_key(s, raw, scope="merchant", merchant_id="demo") is None
