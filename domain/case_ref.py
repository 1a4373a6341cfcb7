"""Short reference codes for NDR cases, e.g. "K7QM".

A customer with two open cases (two parcels failed the same day) is asked "which one?" and
answers with the code, by SMS, on a phone keyboard. So codes are short (4 characters), use an
alphabet without look-alikes (no 0/O, 1/I/L, 2/Z, 5/S, 8/B) and always mix letters and digits,
so an English word such as STOP, CALL or HOME can never be mistaken for a code.

Codes are only unique among one customer's open cases (the store enforces that); they are not
secrets and not global identifiers.
"""

from __future__ import annotations

import hashlib
import re

REF_LETTERS = "ACDEFGHJKMNPQRTUVWXY"
REF_DIGITS = "34679"
REF_ALPHABET = REF_LETTERS + REF_DIGITS
REF_LENGTH = 4

_REF_TOKEN = re.compile(rf"(?<![A-Za-z0-9])([{REF_ALPHABET}]{{{REF_LENGTH}}})(?![A-Za-z0-9])", re.IGNORECASE)


def is_ref(token: str) -> bool:
    """True for a well-formed code: right length and alphabet, at least one letter and one digit."""
    t = token.strip().upper()
    return (
        len(t) == REF_LENGTH
        and all(c in REF_ALPHABET for c in t)
        and any(c in REF_LETTERS for c in t)
        and any(c in REF_DIGITS for c in t)
    )


def candidate_refs(seed: str, count: int = 32) -> list[str]:
    """Deterministic candidates for `seed` (e.g. "shp_x:2"); the store takes the first free one.

    Deterministic so a retried activity proposes the same code, and the workflow could recompute it.
    """
    out: list[str] = []
    n = 0
    while len(out) < count:
        digest = hashlib.sha256(f"{seed}#{n}".encode()).digest()
        n += 1
        code = "".join(REF_ALPHABET[b % len(REF_ALPHABET)] for b in digest[:REF_LENGTH])
        if is_ref(code) and code not in out:
            out.append(code)
    return out


def extract_ref(text: str, known: set[str] | None = None) -> tuple[str | None, str]:
    """Find a case code in a message; returns (CODE or None, the message without it).

    With `known` (the customer's open codes) only those count, so "2 AC3D" finds AC3D only if it
    is one of theirs. Without it, any well-formed code counts.
    """
    for m in _REF_TOKEN.finditer(text):
        code = m.group(1).upper()
        if not is_ref(code):
            continue
        if known is not None and code not in known:
            continue
        rest = (text[: m.start()] + " " + text[m.end() :]).strip()
        rest = re.sub(r"^(?:ref|reference|case|order)\s*[:#-]?\s*", "", rest, flags=re.IGNORECASE).strip()
        rest = re.sub(r"\s*(?:ref|reference|case)\s*[:#-]?\s*$", "", rest, flags=re.IGNORECASE).strip()
        return code, re.sub(r"\s{2,}", " ", rest)
    return None, text
