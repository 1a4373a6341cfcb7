"""Understand a customer's reply to a failed-delivery message (pure: no I/O, no clock).

Customers answer in English, Hindi (Devanagari or romanised "Hinglish") and Korean, with a menu
number ("2"), a keyword ("kal", "반품"), or a sentence ("deliver on Saturday after 5pm",
"main ghar pe tha koi nahi aaya"). `parse_reply` turns one message into a `ParsedReply`: what kind
of answer it is, the canonical action, and the details (date, phone, address).

How ambiguity is resolved (each rule has a test in tests/domain/test_reply_parser.py):

* Opt-out wins. A message that is exactly one of Twilio's opt-out keywords (STOP, STOPALL,
  UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT) is an opt-out, not an answer: on SMS Twilio
  itself has already blocked every further message to that number when it forwards the word, so
  we could not even confirm a cancellation. This includes a bare "cancel" on SMS and WhatsApp:
  it stops messages, it does NOT return the parcel (the case then follows the merchant's rule).
  "4", "cancel order", "cancel it", "please cancel" (more than one word, so Twilio does not
  block) mean return-to-origin. On email and the web page there is no keyword layer, so a bare
  "cancel" there means return-to-origin; "stop" still opts out of that channel.
  START, UNSTOP and YES (Twilio's opt-in words) are opt-ins.
* The non-destructive reading wins. Returning a parcel costs the merchant both shipping legs and
  the sale, while a needless reattempt costs one trip, so when a message holds both a usable date
  and a "don't want" phrase ("aaj nahi chahiye, kal bhejo") it is read as the date; negated
  cancellations ("don't cancel", "cancel mat karo", "취소하지 마세요") are never a cancellation.
* Dates: "kal"/"कल" means both yesterday and tomorrow in Hindi, "परसों" both day-before-yesterday
  and day-after-tomorrow. In an answer about a future delivery they mean the future, except in a
  message disputing the attempt ("main kal ghar pe tha, koi nahi aaya"), where they describe the
  past and are ignored. Weekdays mean the next such day ("Saturday" on a Saturday is next week,
  outside a 6-day window). Explicit dates ("30 nov", "12월 1일", "30/11") are parsed by dateparser
  in the customer's calendar (RELATIVE_BASE = now in their time zone), day-first except for
  en-US and Korean. Every date is checked against the window the carrier accepts (tomorrow up to
  `max_days` ahead): outside it the reply keeps its kind "date" and carries `problem`.
  "today"/"aaj"/"오늘" means "as soon as possible", i.e. a plain reattempt.
* Context: after the customer picked "2 pick a date" (context_state="awaiting_date") a bare
  number is a day of the month ("30" -> the 30th), never a menu choice, so "4" (the 4th) cannot
  turn into "4 cancel". After "3 change address or phone" (context_state="awaiting_details") free
  text is taken as the new address.
* Anything else is "unclear" (the workflow asks one clarification question, then escalates).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers

from domain.case_ref import is_ref
from domain.ndr_options import DEFAULT_MAX_DAYS, MENU, REPLY_KINDS, check_date, option_by_number
from domain.taxonomy import NdrAction, NdrReason

MAX_TEXT = 1000  # customer messages are short; bound the work on pathological input

KINDS = REPLY_KINDS

OPT_OUT_KEYWORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
OPT_IN_KEYWORDS = frozenset({"start", "unstop", "yes"})
KEYWORD_CHANNELS = frozenset({"sms", "whatsapp"})  # where Twilio's keyword layer applies

# Reasons whose question is a confirmation ("shall we try again?"), where a bare yes means reattempt.
CONFIRM_REASONS = frozenset({NdrReason.customer_refused, NdrReason.open_delivery_requested, NdrReason.verification_failed})


@dataclass(frozen=True)
class ParsedReply:
    kind: str  # one of KINDS
    action: NdrAction | None = None
    requested_date: str | None = None  # YYYY-MM-DD in the customer's calendar
    phone: str | None = None  # E.164
    address: str | None = None  # free text as the customer wrote it
    landmark: str | None = None
    time_hint: str | None = None  # "morning" | "afternoon" | "evening" | "after 17:00" | ...
    confidence: float = 0.0
    problem: str | None = None  # for people and logs, e.g. "... at most 6 days ahead ..."
    problem_code: str | None = None  # date_in_past | date_too_soon | date_too_far | action_not_allowed | missing_details
    option: int | None = None  # the menu number, when the reply was one
    case_ref: str | None = None
    keyword: str | None = None  # the opt-out / opt-in keyword, upper case

    @property
    def ok(self) -> bool:
        """Understood and usable as it stands (no clarification needed)."""
        return self.kind not in ("unclear",) and self.problem is None


# ---- text normalisation -----------------------------------------------------------------

_DEVANAGARI_DIGITS = str.maketrans("०१२३४५६७८९", "0123456789")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), " ")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'"})


def _normalise(text: str) -> tuple[str, str]:
    """(base, low): NFKC form with ASCII digits, and a lower-cased copy of the same length, so a
    span found in `low` cuts the customer's own spelling out of `base` (addresses keep their case)."""
    base = unicodedata.normalize("NFKC", text[:MAX_TEXT])
    base = base.translate(_DEVANAGARI_DIGITS).translate(_ZERO_WIDTH).translate(_QUOTES)
    base = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in base)
    low = "".join(c.lower() if len(c.lower()) == 1 else c for c in base)
    return base, low


def _is_devanagari(ch: str) -> bool:
    return "\u0900" <= ch <= "\u097f"


def _phrase_pattern(p: str) -> str:
    if p.startswith("re:"):
        return p[3:]
    # Phrases are written without apostrophes; customers type both "don't" and "dont".
    p = re.sub(r"\b(do|did|can|won|does|is|was)nt\b", r"\1n't", p)
    p = re.sub(r"\bill\b", "i'll", p)
    p = re.sub(r"\bim\b", "i'm", p)
    non_ascii = not p.isascii()
    parts = []
    for ch in p:
        if ch == " ":
            parts.append(r"\s*" if non_ascii else r"\s+")
        elif ch == "'":
            parts.append("'?")
        else:
            parts.append(re.escape(ch))
    body = "".join(parts)
    first, last = p[0], p[-1]
    if first.isascii() and first.isalnum():
        body = r"(?<![a-z0-9])" + body
    elif _is_devanagari(first):
        body = r"(?<![\u0900-\u097f])" + body
    if last.isascii() and last.isalnum():
        body += r"(?![a-z0-9])"
    elif _is_devanagari(last):
        body += r"(?![\u0900-\u097f])"
    return body


class _Phrases:
    """Case-insensitive phrase list; ASCII words match whole words, Devanagari whole words,
    Korean as substrings (particles attach to words: 토요일에, 반품해)."""

    def __init__(self, phrases: Iterable[str]) -> None:
        pats = sorted((_phrase_pattern(p) for p in phrases), key=len, reverse=True)
        self.re = re.compile("|".join(f"(?:{p})" for p in pats))

    def search(self, text: str) -> re.Match[str] | None:
        return self.re.search(text)

    def sub(self, repl: str, text: str) -> str:
        return self.re.sub(repl, text)


# ---- vocabularies ---------------------------------------------------------------------

_NAHI = r"(?:nahi|nahin|nhi|nahee|nai|na)"
_CHAHIYE = r"(?:chahiye|chaiye|chahie|chahye|chaheye|chaahiye)"

OPT_OUT_PHRASES = _Phrases([
    "stop sending", "stop messaging", "stop texting", "stop the messages", "stop messages", "stop msgs",
    "stop sms", "stop whatsapp", "unsubscribe me", "opt out", "opt me out", "dont message me", "dont text me",
    "do not message me", "do not text me", "no more messages", "no more sms", "no more texts",
    f"re:(?<![a-z])(?:message|msg|messages|sms|massage)\\s+(?:mat|{_NAHI})\\s+(?:bhejo|bhejna|bheje|karo)",
    "मैसेज मत भेजो", "मैसेज मत भेजिए", "मैसेज न भेजें", "मैसेज बंद करो", "एसएमएस मत भेजो",
    "메시지 그만", "문자 그만", "수신 거부", "수신거부", "메세지 그만", "문자 보내지 마",
])

# Negated cancellations are removed before looking for a cancellation: "i don't want to cancel".
NEGATED_RTO = _Phrases([
    "dont want to cancel", "do not want to cancel", "dont want to return", "do not want to return",
    "dont cancel", "do not cancel", "not cancel", "never cancel", "no cancel", "no cancellation",
    "dont return", "do not return", "not return it", "dont send it back", "do not send it back",
    "re:cancel\\s+(?:mat|na|nahi|nahin|nhi|mt)(?![a-z])", "re:(?<![a-z])mat\\s+cancel",
    "re:(?:wapas|vapas|return)\\s+(?:mat|nahi|nahin|nhi)(?![a-z])",
    "कैंसल मत", "कैंसल नहीं", "कैंसिल मत", "कैंसिल नहीं", "रद्द मत", "रद्द न करें", "रद्द नहीं", "वापस मत", "मत करो कैंसल",
    "취소하지 마", "취소하지 말", "취소 안", "취소는 안", "취소 말고", "반품 안", "반품하지 마", "반품하지 말", "반품은 안",
    "반품 말고", "반송하지 마",
])

RTO_PHRASES = _Phrases([
    "cancel", "cancel order", "cancel it", "cancel my order", "cancel the order", "cancellation",
    "return it", "return the order", "return the parcel", "return the package", "return to sender",
    "return to origin", "rto", "send it back", "send back", "take it back", "dont want it", "dont want this",
    "do not want it", "i dont want", "i do not want", "dont need it", "do not need it", "no longer want",
    "no longer need", "not interested", "not needed", "refuse", "refused", "reject", "reject it", "dont deliver", "do not deliver",
    "dont send it", "do not send it",
    f"re:(?<![a-z]){_NAHI}\\s+{_CHAHIYE}(?![a-z])", "re:(?<![a-z])(?:wapas|vapas|waapas)\\s+(?:bhej|le\\s+jao|kar|bhejo)",
    "re:(?<![a-z])return\\s+kar", "re:(?<![a-z])order\\s+cancel", "re:(?<![a-z])mat\\s+bhejo(?![a-z])",
    "नहीं चाहिए", "नही चाहिए", "नहीं चाहिये", "कैंसल", "कैंसिल", "रद्द", "वापस भेज दो", "वापस भेजो", "वापस भेज दीजिए",
    "वापस ले जाओ", "वापस कर दो", "मत भेजो", "रिटर्न",
    "반품", "취소", "필요 없", "필요없", "안 받을", "받지 않을", "받지 않겠", "안 받겠", "돌려보내", "반송",
])
# "Don't send" / "don't want" without saying cancel: next to a date it means "not then".
RTO_SOFT = _Phrases([
    f"re:(?<![a-z]){_NAHI}\\s+{_CHAHIYE}(?![a-z])", "re:(?<![a-z])mat\\s+bhejo(?![a-z])", "नहीं चाहिए", "नही चाहिए",
    "नहीं चाहिये", "मत भेजो", "dont want it", "dont want this", "do not want it", "i dont want", "i do not want",
    "dont need it", "do not need it", "not needed", "필요 없", "필요없", "dont deliver", "do not deliver",
    "dont send it", "do not send it",
])

KEEP_PHRASES = _Phrases([
    "please deliver", "deliver it", "deliver again", "redeliver", "re deliver", "re-deliver", "reattempt",
    "re-attempt", "re attempt", "try again", "send again", "resend", "deliver", "yes deliver", "i want it",
    "i need it", "i will be home", "ill be home", "i will be available", "i am available", "im available",
    "re:(?<![a-z])(?:bhej|bhejo|bhej\\s+do|bhej\\s+dena|bhejiye)(?![a-z])", "re:deliver\\s+kar",
    "re:(?<![a-z])(?:dubara|dobara|phir\\s+se)(?![a-z])", f"re:(?<![a-z])(?:mujhe\\s+)?{_CHAHIYE}(?![a-z])",
    "re:(?<![a-z])ghar\\s+(?:pe|par|pr)\\s+(?:rahunga|rahungi|hunga|hungi|milunga|milungi)",
    "भेज दो", "भेजो", "भेज दीजिए", "भेज दीजिये", "दोबारा भेजो", "फिर से भेजो", "डिलीवर कर दो", "चाहिए",
    "घर पर रहूंगा", "घर पर रहूँगा", "घर पर रहूंगी", "घर पर रहूँगी",
    "배송해 주세요", "배송해주세요", "다시 배송", "재배송", "보내 주세요", "보내주세요", "받을게요", "받겠습니다",
    "집에 있을게요", "집에 있겠습니다",
    "address is correct", "address is right", "re:(?:address|pata)\\s+(?:sahi|theek|thik)", "पता सही", "पता ठीक",
    "주소 맞", "주소가 맞", "주소는 맞",
])

DISPUTE_PHRASES = _Phrases([
    "i was home", "i was at home", "i was there", "i was in the house", "was home all day", "was at home all day",
    "i was available", "nobody came", "no one came", "noone came", "nobody come", "no one come",
    "nobody visited", "no one visited", "no delivery attempt", "never came", "never come", "didnt come",
    "did not come", "no one called", "nobody called", "noone called", "didnt get any call", "did not get any call",
    "did not receive any call", "didnt receive any call", "no call received", "never called", "fake attempt",
    "false attempt", "fake delivery", "fake status", "wrong status", "delivery boy never",
    "re:(?<![a-z])ghar\\s+(?:pe|par|pr|me|mein|main)\\s+(?:hi\\s+)?(?:tha|thi|the)(?![a-z])",
    "re:(?<![a-z])koi\\s+(?:bhi\\s+)?(?:nahi|nahin|nhi|nai)\\s+(?:aaya|aya|aayaa)",
    "re:(?<![a-z])koi\\s+aaya\\s+hi\\s+(?:nahi|nahin|nhi)", "re:(?<![a-z])(?:call|phone|fone)\\s+(?:bhi\\s+)?(?:nahi|nahin|nhi|nai)\\s+(?:aaya|aya|kiya)",
    "घर पर था", "घर पर थी", "घर पे था", "घर पे थी", "घर में था", "घर में थी", "घर पर ही था", "घर पर ही थी",
    "कोई नहीं आया", "कोई नही आया", "कोई आया ही नहीं", "कॉल नहीं आया", "फोन नहीं आया", "फ़ोन नहीं आया", "कोई कॉल नहीं",
    "집에 있었", "아무도 안 왔", "아무도 오지 않", "아무도 안 오", "기사님 안 오", "기사님이 안 오", "기사가 안 왔",
    "전화 안 왔", "전화도 없", "전화 한 통", "연락 없", "연락도 없", "연락이 없", "거짓",
])

CHANGE_DETAILS_PHRASES = _Phrases([
    "change address", "change my address", "change the address", "address change", "update address",
    "update my address", "wrong address", "change number", "change my number", "change phone",
    "update number", "update phone", "wrong number", "new number", "address badal", "pata badal", "number badal",
    "new address", "naya address", "naya pata", "नया पता", "새 주소",
    "पता बदल", "पता बदलना", "नंबर बदल", "주소 변경", "주소를 변경", "주소 바꿔", "주소를 바꾸", "번호 변경", "전화번호 변경",
])

YES_WORDS = frozenset({"yes", "y", "yeah", "yep", "ok", "okay", "haan", "han", "ha", "ji", "haan ji", "हाँ", "हां", "जी", "네", "예", "응"})

ADDRESS_MARKERS = _Phrases([
    "my address is", "my address", "new address is", "new address", "correct address is", "correct address",
    "full address", "updated address", "address is", "address:", "address -", "address =", "deliver to",
    "send it to", "send to", "mera address", "mera pata", "naya address", "naya pata",
    "sahi address", "address hai",
    "मेरा पता", "नया पता", "सही पता", "पूरा पता", "मेरा एड्रेस", "नया एड्रेस", "पता:",
    "주소는", "주소:", "새 주소", "바뀐 주소", "주소가", "배송지는", "배송지:", "주소 :",
])
# Markers after which an address must look like one (a number or a comma, 3+ words, not "me"):
# "deliver to me tomorrow" is not an address.
WEAK_ADDRESS_MARKERS = frozenset({"deliver to", "send to", "send it to"})
NOT_AN_ADDRESS_RE = re.compile(
    r"^\s*(?:is\s+|hai\s+)?(?:correct|right|same|fine|ok|okay|sahi|theek|thik|सही|ठीक|맞|그대로|me|us|my\s+home|home|ghar)(?![a-z])"
)
LANDMARK_RE = re.compile(r"(?:landmark|लैंडमार्क|랜드마크)\s*[:\-=]?\s*(?:is\s+|hai\s+)?(?P<lm>[^,.;\n]{3,80})")
PIN_RE = re.compile(r"(?<!\d)[1-9]\d{5}(?!\d)")

# Relative days. Ambiguous Hindi words (kal, parso) are marked so a dispute ignores them.
_REL_DAYS: list[tuple[int, bool, list[str]]] = [
    (2, False, ["day after tomorrow", "day after tmrw", "내일모레", "낼모레", "모레"]),
    (2, True, ["parso", "parson", "parsoon", "parsu", "परसों", "परसो"]),
    (3, True, ["narso", "narson", "नरसों"]),
    (3, False, ["글피"]),
    (1, False, ["tomorrow", "tmrw", "tmr", "tomorow", "tommorow", "tommorrow", "tomorro", "2moro", "2morrow", "내일"]),
    (1, True, ["kal", "कल"]),
    (0, False, ["today", "right now", "abhi", "aaj", "आज", "अभी", "오늘", "지금"]),
    (-2, False, ["day before yesterday", "그저께", "그제"]),
    (-1, False, ["yesterday", "어제"]),
]
# A date the customer rules out: "not tomorrow", "kal nahi", "내일은 안 돼요".
NEG_BEFORE_RE = re.compile(
    r"(?<![a-z])(?:not|no|cant|can't|cannot|wont|won't|unavailable|busy)(?![a-z])(?:\s+\S+){0,2}\s*$"
)
NEG_AFTER_RE = re.compile(
    r"^\s*(?:은|는)?\s*(?:nahi|nahin|nhi|mat|नहीं|नही|मत|안\s*돼|안\s*되|어려|not\b|is\s+not|no\b|busy|ko\s+nahi|को\s+नहीं)"
)
CLAUSE_BREAK_RE = re.compile(r"[,.;!?\n]|\bbut\b|\blekin\b|\bpar\b|लेकिन|하지만|그리고")
REL_DAY_RES = [(n, amb, _Phrases(words)) for n, amb, words in _REL_DAYS]

IN_N_DAYS_RE = re.compile(
    r"(?:(?:in|after)\s+(?P<a>\d{1,2})\s+days?)|(?:(?P<b>\d{1,2})\s+days?\s+(?:later|from\s+now|after))"
    r"|(?:(?P<c>\d{1,2})\s*(?:din|दिन)\s*(?:baad|bad|के\s*बाद|बाद|me|mein|में))|(?:(?P<d>\d{1,2})\s*일\s*(?:후|뒤))"
)

_WEEKDAYS: list[list[str]] = [
    ["monday", "mon", "somvar", "somwar", "somvaar", "सोमवार", "월요일"],
    ["tuesday", "tue", "tues", "mangalvar", "mangalwar", "mangalvaar", "मंगलवार", "화요일"],
    ["wednesday", "wed", "wednsday", "budhvar", "budhwar", "budhvaar", "बुधवार", "수요일"],
    ["thursday", "thu", "thur", "thurs", "guruvar", "guruwar", "brihaspativar", "veervar", "virvar", "गुरुवार", "बृहस्पतिवार", "वीरवार", "목요일"],
    ["friday", "fri", "shukravar", "shukrawar", "shukrvar", "शुक्रवार", "금요일"],
    ["saturday", "sat", "saterday", "satruday", "shanivar", "shaniwar", "shanivaar", "shaniwaar", "शनिवार", "토요일"],
    # no "sun": in Hinglish "sun" is "listen"
    ["sunday", "ravivar", "raviwar", "itvar", "itwar", "itvaar", "रविवार", "इतवार", "일요일"],
]
WEEKDAY_RES = [_Phrases(words) for words in _WEEKDAYS]
NEXT_WEEK_RE = re.compile(r"(?:다음\s*주|담주)\s*$")
THIS_WEEK_RE = re.compile(r"(?:이번\s*주)\s*$")

_MONTHS_EN = r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
_MONTHS_HI = r"जनवरी|फ़रवरी|फरवरी|मार्च|अप्रैल|मई|जून|जुलाई|अगस्त|सितंबर|सितम्बर|अक्टूबर|अक्तूबर|नवंबर|नवम्बर|दिसंबर|दिसम्बर"
_MONTHS = rf"(?:{_MONTHS_EN})(?![a-z])|(?:{_MONTHS_HI})"
EXPLICIT_DATE_RE = re.compile(
    r"(?P<iso>(?<!\d)\d{4}-\d{1,2}-\d{1,2}(?!\d))"
    r"|(?P<ko>(?<!\d)\d{1,2}\s*월\s*\d{1,2}\s*일)"
    rf"|(?P<dm>(?<!\d)\d{{1,2}}(?:st|nd|rd|th)?\s*(?:of\s+)?(?:{_MONTHS})(?:\s*,?\s*\d{{4}})?)"
    rf"|(?P<md>(?<![a-z])(?:{_MONTHS})\s*\.?\s*\d{{1,2}}(?:st|nd|rd|th)?(?!\d)(?:\s*,?\s*\d{{4}})?)"
    r"|(?P<num>(?<![\d/.\-])\d{1,2}[/.\-]\d{1,2}(?:[/.\-]\d{2,4})?(?![\d/.\-]))"
)
DAY_OF_MONTH_RE = re.compile(
    r"(?<!\d)(?P<d>\d{1,2})\s*(?:st|nd|rd|th|tarikh|tareekh|tarik|तारीख़|तारीख|तारिख|일)(?![a-z])(?!\s*(?:후|뒤))"
)
BARE_NUMBER_RE = re.compile(r"^\s*(?:press\s+|reply\s+)?(?:option|opt|choice|number|num|#)?\s*(?P<n>\d{1,2})\s*(?:번|नंबर)?\s*[.)!:,\-]*\s*(?P<rest>.*)$", re.S)

# Times of day: kept as a hint for the carrier (comments), removed before looking for dates.
_TIME_RES: list[re.Pattern[str]] = [
    re.compile(r"(?<![a-z])(?P<rel>after|aft|post|before|by|around|at)\s*(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>am|pm|a\.m\.|p\.m\.)?(?![\d/])(?![.\-]\d)(?!\s*(?:days?|din|दिन|st|nd|rd|th)\b)"),
    re.compile(r"(?<![\d/.\-])(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ap>am|pm|a\.m\.|p\.m\.)(?![a-z])"),
    re.compile(r"(?P<h>\d{1,2})\s*(?:baje|bje|बजे)\s*(?:ke\s*|के\s*|se\s*|से\s*)?(?P<rel>baad|bad|बाद|pehle|pahle|पहले)?"),
    re.compile(r"(?P<ap>오전|오후|저녁|아침)?\s*(?P<h>\d{1,2})\s*시\s*(?:(?P<m>\d{1,2})\s*분)?\s*(?P<rel>이후|후|이전|전|쯤|넘어서)?"),
]
_PARTS_OF_DAY = [
    ("morning", _Phrases(["morning", "subah", "subha", "सुबह", "오전", "아침"])),
    ("afternoon", _Phrases(["afternoon", "dopahar", "dopehar", "दोपहर", "오후", "점심"])),
    ("evening", _Phrases(["evening", "night", "shaam", "sham", "raat", "शाम", "रात", "저녁", "밤"])),
]


# ---- signals ----------------------------------------------------------------------------


def _mask(low: str, start: int, end: int) -> str:
    return low[:start] + " " * (end - start) + low[end:]


def phone_region(locale: str, tz: str, region: str | None = None) -> str | None:
    """Default region for national phone numbers: explicit, else the locale's country, else by
    language (hi -> IN, ko -> KR), else by time zone."""
    if region:
        return region.upper()
    parts = locale.replace("_", "-").split("-")
    if len(parts) > 1 and len(parts[-1]) == 2 and parts[-1].isalpha():
        return parts[-1].upper()
    lang = parts[0].lower()
    if lang == "hi":
        return "IN"
    if lang == "ko":
        return "KR"
    return {"Asia/Kolkata": "IN", "Asia/Calcutta": "IN", "Asia/Seoul": "KR"}.get(tz)


def _find_phone(base: str, region: str | None) -> tuple[str, int, int] | None:
    try:
        for m in phonenumbers.PhoneNumberMatcher(base, region, leniency=phonenumbers.Leniency.VALID, max_tries=20):
            return phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164), m.start, m.end
    except Exception:  # noqa: BLE001 - the matcher must never make the parser fail
        return None
    return None


def _time_hint(low: str) -> tuple[str | None, str]:
    """(hint, text with the time expressions blanked out)."""
    hint: str | None = None
    for rx in _TIME_RES:
        for m in rx.finditer(low):
            h = int(m.group("h"))
            mins = int(m.group("m") or 0) if "m" in rx.groupindex else 0
            ap = (m.groupdict().get("ap") or "").replace(".", "")
            rel = m.groupdict().get("rel") or ""
            if ap in ("pm", "오후", "저녁") and h < 12:
                h += 12
            elif ap in ("am", "오전", "아침") and h == 12:
                h = 0
            elif not ap and 1 <= h <= 7:
                h += 12  # "after 5" / "5 baje": nobody means 5 a.m. for a delivery
            if h > 23 or mins > 59:
                continue
            when = f"{h:02d}:{mins:02d}"
            if rel in ("after", "aft", "post", "baad", "bad", "बाद", "이후", "후", "넘어서"):
                text = f"after {when}"
            elif rel in ("before", "by", "pehle", "pahle", "पहले", "이전", "전"):
                text = f"before {when}"
            else:
                text = f"around {when}"
            hint = hint or text
            low = _mask(low, m.start(), m.end())
    if hint is None:
        for name, phrases in _PARTS_OF_DAY:
            m = phrases.search(low)
            if m:
                hint = name
                low = _mask(low, m.start(), m.end())
                break
    return hint, low


@dataclass
class _DateHit:
    day: date
    start: int
    end: int
    ambiguous_past: bool = False  # Hindi kal/parso: could describe the past
    weight: float = 0.9
    negated: bool = False


def _date_order(locale: str) -> str:
    loc = locale.replace("_", "-").lower()
    if loc.startswith("ko") or loc == "en-us":
        return "MDY"
    return "DMY"


def _dateparser_date(chunk: str, local_now: datetime, locale: str) -> date | None:
    """Parse an explicit date chunk ("30 nov", "12월 1일", "30/11") with dateparser."""
    import dateparser  # imported lazily: ~0.2 s on first use, and only explicit dates need it

    settings = {
        "RELATIVE_BASE": local_now.replace(tzinfo=None),
        "PREFER_DATES_FROM": "current_period",
        "DATE_ORDER": _date_order(locale),
        "REQUIRE_PARTS": ["day", "month"],
        "PREFER_DAY_OF_MONTH": "first",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    try:
        got = dateparser.parse(chunk, languages=["en", "hi", "ko"], settings=settings)
    except Exception:  # noqa: BLE001 - dateparser raises on odd input (overflow, bad day); treat as no date
        return None
    if got is None:
        return None
    d = got.date()
    # No year written: a date long past means next year's ("2 jan" said on 30 Dec).
    if not re.search(r"\d{4}", chunk) and (local_now.date() - d).days > 60:
        try:
            d = d.replace(year=d.year + 1)
        except ValueError:
            return None
    return d


def _next_day_of_month(today: date, dom: int) -> date | None:
    if not 1 <= dom <= 31:
        return None
    y, m = today.year, today.month
    for _ in range(3):
        try:
            d = date(y, m, dom)
        except ValueError:
            d = None
        if d is not None and d >= today:
            return d
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return None


def _find_dates(low: str, local_now: datetime, locale: str) -> tuple[list[_DateHit], str]:
    today = local_now.date()
    hits: list[_DateHit] = []
    original = low

    def take(m: re.Match[str], d: date | None, *, amb: bool = False, weight: float = 0.9) -> None:
        nonlocal low
        if d is not None:
            hits.append(_DateHit(d, m.start(), m.end(), amb, weight))
        low = _mask(low, m.start(), m.end())

    for m in EXPLICIT_DATE_RE.finditer(low):
        take(m, _dateparser_date(m.group(0), local_now, locale))
    for m in IN_N_DAYS_RE.finditer(low):
        n = int(next(g for g in m.groups() if g))
        take(m, today + timedelta(days=n) if n <= 366 else None)
    for n, amb, phrases in REL_DAY_RES:
        for m in phrases.re.finditer(low):
            take(m, today + timedelta(days=n), amb=amb)
    for wd, phrases in enumerate(WEEKDAY_RES):
        for m in phrases.re.finditer(low):
            prefix = low[max(0, m.start() - 8) : m.start()]
            if NEXT_WEEK_RE.search(prefix):
                d = today - timedelta(days=today.weekday()) + timedelta(days=7 + wd)
            elif THIS_WEEK_RE.search(prefix):
                d = today - timedelta(days=today.weekday()) + timedelta(days=wd)
            else:
                delta = (wd - today.weekday()) % 7
                d = today + timedelta(days=delta or 7)
            take(m, d, weight=0.85)
    for m in DAY_OF_MONTH_RE.finditer(low):
        take(m, _next_day_of_month(today, int(m.group("d"))), weight=0.75)
    hits.sort(key=lambda h: h.start)
    for h in hits:
        before = original[: h.start]
        breaks = list(CLAUSE_BREAK_RE.finditer(before))
        if breaks:
            before = before[breaks[-1].end() :]
        after = original[h.end : h.end + 16]
        h.negated = bool(NEG_BEFORE_RE.search(before.strip() + " ")) or bool(NEG_AFTER_RE.match(after))
    return hits, low


# ---- the parser ---------------------------------------------------------------------------


def parse_reply(
    text: str,
    *,
    reason: NdrReason | str,
    allowed_actions: Iterable[NdrAction | str],
    now: datetime,
    tz: str,
    locale: str,
    max_days: int = DEFAULT_MAX_DAYS,
    context_state: str | None = None,
    channel: str = "sms",
    region: str | None = None,
) -> ParsedReply:
    """Read one customer message. Never raises on any text; `now` must be timezone-aware.

    `allowed_actions`: what the reason lets the customer choose (taxonomy.allowed_customer_actions).
    `context_state`: the case state the reply answers ("asking", "awaiting_date", "awaiting_details").
    `channel`: "sms" | "whatsapp" | "email" | "web"; Twilio's keyword layer exists only for the first two.
    `region`: default region for national phone numbers; derived from locale / tz when None.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    allowed = tuple(_as_action(a) for a in allowed_actions)
    allowed = tuple(a for a in allowed if a is not None)
    reason_s = str(reason)
    p = _Parse(text if isinstance(text, str) else "", reason_s, allowed, now, tz, locale, max_days, context_state, channel, region)
    return p.run()


def _as_action(a: NdrAction | str) -> NdrAction | None:
    try:
        return NdrAction(a)
    except ValueError:
        return None


class _Parse:
    def __init__(self, text, reason, allowed, now, tz, locale, max_days, context_state, channel, region) -> None:  # type: ignore[no-untyped-def]
        self.base, self.low = _normalise(text)
        self.reason = reason
        self.allowed = allowed
        self.now = now
        self.tz = tz
        self.locale = locale or "en"
        self.max_days = max_days
        self.ctx = context_state
        self.channel = (channel or "sms").lower()
        self.region = phone_region(self.locale, tz, region)

    # result helpers -----------------------------------------------------------------
    def _check_action(self, action: NdrAction | None, **kw) -> ParsedReply:  # type: ignore[no-untyped-def]
        if action is not None and action not in self.allowed:
            kw.setdefault("problem", f"{action.value} is not possible for {self.reason}")
            kw.setdefault("problem_code", "action_not_allowed")
        return ParsedReply(action=action, **kw)

    def _dated(self, kind: str, action: NdrAction | None, d: date | None, **kw) -> ParsedReply:  # type: ignore[no-untyped-def]
        if d is not None:
            kw["requested_date"] = d.isoformat()
            bad = check_date(d, self.now, self.tz, max_days=self.max_days)
            if bad and (action is None or action in self.allowed):
                # An action the reason does not allow is the bigger problem; report that one.
                kw["problem_code"], kw["problem"] = bad
        return self._check_action(action, kind=kind, **kw)

    # the decision ------------------------------------------------------------------------
    def run(self) -> ParsedReply:
        try:
            return self._run()
        except Exception:  # noqa: BLE001 - last line of defence: a reply must never crash the webhook
            return ParsedReply(kind="unclear", confidence=0.0)

    def _run(self) -> ParsedReply:
        low = self.low
        stripped = re.sub(r"^[\W_]+|[\W_]+$", "", low.strip())
        if not stripped:
            return ParsedReply(kind="unclear")

        # 1. Twilio keywords: the whole message is one word.
        if stripped in OPT_OUT_KEYWORDS:
            if stripped == "cancel" and self.channel not in KEYWORD_CHANNELS:
                return self._check_action(NdrAction.rto, kind="rto", confidence=0.8)
            return ParsedReply(kind="opt_out", keyword=stripped.upper(), confidence=0.99)
        if stripped in OPT_IN_KEYWORDS:
            if stripped == "yes" and self.reason in CONFIRM_REASONS and self.channel not in KEYWORD_CHANNELS:
                return self._check_action(NdrAction.reattempt, kind="choice", confidence=0.7)
            return ParsedReply(kind="opt_in", keyword=stripped.upper(), confidence=0.99)
        if OPT_OUT_PHRASES.search(low):
            return ParsedReply(kind="opt_out", confidence=0.85)

        # 2. A bare case reference ("K7QM"), sent after "which order?".
        if is_ref(stripped):
            return ParsedReply(kind="case_ref", case_ref=stripped.upper(), confidence=0.9)

        local_now = self.now.astimezone(ZoneInfo(self.tz))
        today = local_now.date()

        # 3. Signals. Phone first (its digits must not become dates), then the address after a
        #    marker, times of day, negated cancellations, and dates in what is left.
        phone_hit = _find_phone(self.base, self.region)
        work = low
        phone = None
        if phone_hit:
            phone, ps, pe = phone_hit
            work = _mask(work, ps, pe)
        address, landmark, work = self._address(work, phone_hit)
        time_hint, work = _time_hint(work)
        # "don't cancel" is a wish to keep the parcel; blank it so "cancel" is not seen.
        unnegated = NEGATED_RTO.re.sub(lambda m: " " * len(m.group(0)), work)
        negated_rto = unnegated != work
        work = unnegated
        dispute = DISPUTE_PHRASES.search(work) is not None
        hits, rest = _find_dates(work, local_now, self.locale)
        valid = [
            h for h in hits
            if not h.negated and not (dispute and (h.ambiguous_past or h.day < today))
        ]
        today_hits = [h for h in valid if h.day == today]
        dated = [h for h in valid if h.day != today]
        rto_m = RTO_PHRASES.search(rest)
        rto = rto_m is not None
        if rto and hits and all(RTO_SOFT.search(m.group(0)) for m in RTO_PHRASES.re.finditer(rest)):
            # "aaj mat bhejo" / "kal nahi chahiye": not *then*, which is not "never".
            rto = False
        keep = negated_rto or KEEP_PHRASES.search(rest) is not None
        menu = BARE_NUMBER_RE.match(rest)
        menu_n = int(menu.group("n")) if menu else None
        menu_rest = menu.group("rest").strip() if menu else ""

        # 4. Disputes ("I was home, nobody came"): evidence for a suspected fake attempt. The
        #    customer still wants the parcel, so carry a date or a reattempt when allowed.
        if dispute:
            d = dated[0].day if dated else None
            action = NdrAction.reschedule if d else NdrAction.reattempt
            if action not in self.allowed:
                return ParsedReply(kind="dispute", time_hint=time_hint, confidence=0.8)
            return self._dated("dispute", action, d, time_hint=time_hint, confidence=0.8, phone=phone)

        # 5. After "2 pick a date" a bare number is a day of the month, never a menu choice.
        if self.ctx == "awaiting_date" and menu_n is not None and not menu_rest and not hits:
            d = _next_day_of_month(today, menu_n)
            if d is None:
                return ParsedReply(kind="unclear")
            return self._dated("date", NdrAction.reschedule, d, time_hint=time_hint, confidence=0.75)

        # 6. Address and phone details (with a date when one came along).
        d = dated[0].day if dated else None
        if address:
            if NdrAction.update_address not in self.allowed and phone and NdrAction.update_phone in self.allowed:
                return self._dated("phone", NdrAction.update_phone, d, phone=phone, confidence=0.8, time_hint=time_hint)
            return self._dated(
                "address", NdrAction.update_address, d, address=address, landmark=landmark, phone=phone,
                time_hint=time_hint, confidence=0.85,
            )
        if phone:
            return self._dated("phone", NdrAction.update_phone, d, phone=phone, time_hint=time_hint, confidence=0.9)

        # 7. Dates. A date beats a "don't want" phrase (the non-destructive reading).
        if dated:
            h = dated[0]
            if menu_n == 1 and h.day == today + timedelta(days=1):
                # "1 deliver tomorrow": the menu line copied back.
                return self._check_action(NdrAction.reattempt, kind="choice", option=1, time_hint=time_hint, confidence=0.9)
            conf = h.weight - (0.3 if rto else 0.0)
            return self._dated("date", NdrAction.reschedule, h.day, time_hint=time_hint, confidence=round(conf, 2))
        if today_hits and not rto:
            # "aaj hi bhej do": as soon as possible, i.e. a plain reattempt.
            return self._check_action(NdrAction.reattempt, kind="choice", time_hint=time_hint, confidence=0.75)

        # 8. Menu numbers ("2", "option 2", "2번", "4 cancel").
        if menu_n is not None and not hits:
            known = next((o for o in MENU if o.number == menu_n), None)
            if known is not None:
                if known.action == NdrAction.rto and menu_rest and keep and not rto:
                    return ParsedReply(kind="unclear")  # "4 ... please deliver" contradicts itself
                opt = option_by_number(self.reason, menu_n, self.allowed) or known
                kind = "rto" if opt.action == NdrAction.rto else "choice"
                conf = 0.95 if not menu_rest else 0.85
                return self._check_action(opt.action, kind=kind, option=menu_n, time_hint=time_hint, confidence=conf)
            if not menu_rest:
                d = _next_day_of_month(today, menu_n)
                if d is not None:
                    return self._dated("date", NdrAction.reschedule, d, confidence=0.5)

        # 9. Cancellation / return ("don't want it" / "mat bhejo" say less than "cancel": lower confidence).
        if rto:
            soft = all(RTO_SOFT.search(m.group(0)) for m in RTO_PHRASES.re.finditer(rest))
            return self._check_action(NdrAction.rto, kind="rto", confidence=0.7 if soft else 0.85)

        # 10. "change my address" without the address: ask for it (state awaiting_details).
        if CHANGE_DETAILS_PHRASES.search(rest):
            wants_phone = re.search(r"number|phone|नंबर|번호", rest) is not None
            action = NdrAction.update_phone if wants_phone else NdrAction.update_address
            other = NdrAction.update_address if wants_phone else NdrAction.update_phone
            if action not in self.allowed and other in self.allowed:
                action = other
            return self._check_action(action, kind="choice", option=3, confidence=0.8)

        # 11. Keep / deliver intents, and a bare yes where the question was a confirmation.
        if keep and not hits:
            return self._check_action(NdrAction.reattempt, kind="choice", time_hint=time_hint, confidence=0.7)
        if stripped in YES_WORDS and self.reason in CONFIRM_REASONS:
            return self._check_action(NdrAction.reattempt, kind="choice", confidence=0.7)

        # 12. Free text after "3 change address or phone", or an address-looking message.
        letters = sum(ch.isalpha() for ch in self.base)
        if self.ctx == "awaiting_details" and letters >= 6 and len(stripped) >= 10 and not hits:
            return self._check_action(
                NdrAction.update_address, kind="address", address=self.base.strip(), landmark=landmark, confidence=0.75
            )
        if PIN_RE.search(low) and low.count(",") >= 2 and letters >= 10:
            return self._check_action(
                NdrAction.update_address, kind="address", address=self.base.strip(), landmark=landmark, confidence=0.6
            )
        # Nothing usable ("after 5pm" alone says when, not which day): keep what we saw.
        return ParsedReply(kind="unclear", time_hint=time_hint)

    def _address(self, work: str, phone_hit: tuple[str, int, int] | None) -> tuple[str | None, str | None, str]:
        m = ADDRESS_MARKERS.search(work)
        lm = LANDMARK_RE.search(self.low)
        landmark = self.base[lm.start("lm") : lm.end("lm")].strip() if lm else None
        if not m:
            if lm and len(landmark or "") >= 3:
                # "landmark: near Shiv temple" alone is an address update (extra directions).
                return self.base[lm.start() :].strip(), landmark, _mask(work, lm.start(), len(work))
            return None, landmark, work
        start = m.end()
        marker = re.sub(r"\s+", " ", m.group(0).strip())
        after = self.low[start:]
        if NOT_AN_ADDRESS_RE.match(after) and len(after.split()) <= 4:
            return None, landmark, work  # "my address is correct", "deliver to me"
        if marker in WEAK_ADDRESS_MARKERS and not (
            len(after.split()) >= 3 and re.search(r"\d|,", after) and not NOT_AN_ADDRESS_RE.match(after)
        ):
            return None, landmark, work
        raw = self.base[start:]
        end = len(self.base)
        if phone_hit and phone_hit[1] >= start:
            # "my address is 12 MG Road, call 98765 43210": the number is not part of the address.
            end = phone_hit[1]
            raw = self.base[start:end]
            raw = re.sub(r"(?i)[\s,;.-]*(?:call|phone|mobile|mob|ph|contact|number|no\.?|नंबर|फोन|전화번호?)\s*(?:me|on|at|is|:)?\s*$", "", raw)
        text = re.sub(r"^\s*(?:is|hai|है|:|-|=)\s*", "", raw).strip(" \t:-=,.")
        text = re.sub(r"\s*(?:hai|है|입니다|이에요|예요|에요)\s*[.!]*$", "", text).strip(" ,.")
        alnum = sum(ch.isalnum() for ch in text)
        if alnum < 6:
            return None, landmark, work
        masked = _mask(work, m.start(), end)
        return text, landmark, masked


__all__ = ["KINDS", "OPT_IN_KEYWORDS", "OPT_OUT_KEYWORDS", "ParsedReply", "parse_reply", "phone_region"]
