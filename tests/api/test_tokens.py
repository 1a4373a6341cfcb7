"""Customer link and CSRF tokens: what they accept and everything they refuse."""

from __future__ import annotations

import time

import pytest
from itsdangerous import TimestampSigner

from api.tokens import (
    CsrfError,
    TokenExpired,
    TokenInvalid,
    check_csrf,
    make_case_token,
    make_csrf,
    read_case_token,
    token_fingerprint,
)

KEY = "k" * 43
SHP = "shp_abcdefghijklmnopqrstuvwx"
DAY = 86400


def test_round_trip_and_short_enough_for_sms():
    tok = make_case_token(SHP, 2, "K7QM", secret_key=KEY)
    got = read_case_token(tok, secret_key=KEY, max_age=DAY)
    assert (got.shipment_id, got.attempt, got.case_ref) == (SHP, 2, "K7QM")
    assert got.issued_at.tzinfo is not None and abs(got.issued_at.timestamp() - time.time()) < 5
    assert len(tok) <= 70
    assert all(c.isalnum() or c in "-_.~" for c in tok)  # unreserved URL characters only


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace("~2~", "~3~"),  # another attempt
        lambda t: t.replace("shp_a", "shp_b"),  # another shipment
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
        lambda t: t[:-4],  # truncated
        lambda t: t.split(".")[0],  # no signature at all
        lambda t: "",
        lambda t: "x" * 500,
        lambda t: t + "%00",
    ],
)
def test_tampered_links_are_invalid(mutate):  # type: ignore[no-untyped-def]
    tok = make_case_token(SHP, 2, "K7QM", secret_key=KEY)
    with pytest.raises(TokenInvalid):
        read_case_token(mutate(tok), secret_key=KEY, max_age=DAY)


def test_another_key_or_purpose_is_invalid():
    tok = make_case_token(SHP, 1, "K7QM", secret_key=KEY)
    with pytest.raises(TokenInvalid):
        read_case_token(tok, secret_key="another-key", max_age=DAY)
    form, _ = make_csrf(tok, secret_key=KEY)
    with pytest.raises(TokenInvalid):  # a CSRF value is not a case link (different salt)
        read_case_token(form, secret_key=KEY, max_age=DAY)


def test_expired_link(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 9 * DAY)
    old = make_case_token(SHP, 1, "K7QM", secret_key=KEY)
    monkeypatch.undo()
    with pytest.raises(TokenExpired):
        read_case_token(old, secret_key=KEY, max_age=8 * DAY)
    assert read_case_token(old, secret_key=KEY, max_age=10 * DAY).attempt == 1


def test_expiry_is_checked_only_for_authentic_links(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 9 * DAY)
    old = make_case_token(SHP, 1, "K7QM", secret_key="other")
    monkeypatch.undo()
    with pytest.raises(TokenInvalid):  # not "expired": we never say anything about forged links
        read_case_token(old, secret_key=KEY, max_age=DAY)


def test_key_rotation():
    tok = make_case_token(SHP, 1, "K7QM", secret_key="old-key")
    assert read_case_token(tok, secret_key=["old-key", "new-key"], max_age=DAY).case_ref == "K7QM"
    with pytest.raises(TokenInvalid):
        read_case_token(tok, secret_key="new-key", max_age=DAY)
    with pytest.raises(ValueError, match="secret key"):
        make_case_token(SHP, 1, "K7QM", secret_key="")


def test_values_that_would_break_the_format_are_refused():
    with pytest.raises(ValueError):
        make_case_token("shp~x", 1, "K7QM", secret_key=KEY)
    with pytest.raises(ValueError):
        make_case_token(SHP, 1, "K7.M", secret_key=KEY)


def test_csrf_accepts_its_own_form_and_cookie():
    tok = make_case_token(SHP, 1, "K7QM", secret_key=KEY)
    form, cookie = make_csrf(tok, secret_key=KEY)
    check_csrf(form, cookie, tok, secret_key=KEY, max_age=3600)
    assert token_fingerprint(tok) not in (tok, form) and len(token_fingerprint(tok)) == 16


def test_csrf_refusals(monkeypatch: pytest.MonkeyPatch):
    tok = make_case_token(SHP, 1, "K7QM", secret_key=KEY)
    other = make_case_token(SHP, 2, "X4PD", secret_key=KEY)
    form, cookie = make_csrf(tok, secret_key=KEY)
    with pytest.raises(CsrfError, match="missing"):
        check_csrf(form, None, tok, secret_key=KEY, max_age=3600)
    with pytest.raises(CsrfError, match="missing"):
        check_csrf(None, cookie, tok, secret_key=KEY, max_age=3600)
    with pytest.raises(CsrfError, match="cookie mismatch"):
        check_csrf(form, "someone-elses-nonce", tok, secret_key=KEY, max_age=3600)
    with pytest.raises(CsrfError, match="another link"):
        check_csrf(form, cookie, other, secret_key=KEY, max_age=3600)
    with pytest.raises(CsrfError, match="could not be verified"):
        check_csrf(form[:-2] + "xx", cookie, tok, secret_key=KEY, max_age=3600)
    with pytest.raises(CsrfError, match="could not be verified"):
        check_csrf(form, cookie, tok, secret_key="other", max_age=3600)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 7200)
    old_form, old_cookie = make_csrf(tok, secret_key=KEY)
    monkeypatch.undo()
    with pytest.raises(CsrfError, match="expired"):
        check_csrf(old_form, old_cookie, tok, secret_key=KEY, max_age=3600)


def test_case_url():
    from api.tokens import case_url

    tok = make_case_token(SHP, 1, "K7QM", secret_key=KEY)
    assert case_url("https://track.example.com/", tok) == f"https://track.example.com/r/{tok}"
