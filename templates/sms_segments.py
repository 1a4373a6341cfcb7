"""SMS encoding and segment count, as carriers bill them.

GSM-7 (3GPP TS 23.038 default alphabet): 160 septets in one message, 153 per part once it is
split (the 7-septet UDH carries the concatenation info). Characters of the extension table
(`^{}\\[~]|€` and form feed) take two septets (escape + char), and a part never ends between the
escape and its character. Anything outside the alphabet switches the whole message to UCS-2:
70 UTF-16 code units, 67 per part, and a surrogate pair (emoji) is never split.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class SmsInfo:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    # Characters that forced UCS-2 (empty for GSM-7): what to rephrase to save segments.
    non_gsm: str = ""


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _pack(costs: list[int], single: int, part: int) -> int:
    total = sum(costs)
    if total == 0:
        return 0  # an empty body is not sent
    if total <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:  # a character (escape pair, surrogate pair) is never split across parts
        if used + cost > part:
            segments += 1
            used = 0
        used += cost
    return segments


def analyze(text: str) -> SmsInfo:
    if is_gsm7(text):
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return SmsInfo("GSM-7", sum(costs), _pack(costs, GSM7_SINGLE, GSM7_PART))
    costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    odd = "".join(dict.fromkeys(c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENSION))
    return SmsInfo("UCS-2", sum(costs), _pack(costs, UCS2_SINGLE, UCS2_PART), odd)


def segment_count(text: str) -> int:
    return analyze(text).segments
