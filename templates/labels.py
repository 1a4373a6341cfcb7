"""Short localised labels shared by every template: reply options, NDR reasons, delay reasons
and the few phrases of the email layout. Templates call `label(kind, code)`; the render
locale chain (`ko-KR` -> `ko` -> `en`) applies here too, and an unknown code falls back to a
neutral label instead of failing (codes come from carriers and colleagues' modules).

SMS budgets are tight (3 UCS-2 segments = 201 characters in Hindi and Korean), so option
labels are as short as they can be while staying clear.
"""

from __future__ import annotations

LABELS: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "option": {
            "reattempt": "deliver tomorrow",
            "reschedule": "pick a date",
            "update_contact": "change address or phone",
            "update_address": "change address",
            "update_phone": "change phone",
            "rto": "cancel",
            "cancel": "cancel",
            "hold_for_pickup": "collect it myself",
            "nobody_came": "I was home, nobody came",
            # the same texts by domain.ndr_options.MENU key
            "deliver_tomorrow": "deliver tomorrow",
            "pick_a_date": "pick a date",
            "change_address_or_phone": "change address or phone",
            "change_phone": "change phone",
            "self_collect": "collect it myself",
            "_other": "other",
        },
        # Option texts for SMS where every character counts (Hindi: 3 UCS-2 parts hold 201
        # characters, and the self-service link alone takes about 95); else the "option" text.
        "short": {},
        # WhatsApp quick-reply button titles (at most 20 characters).
        "button": {
            "reattempt": "Deliver tomorrow",
            "reschedule": "Pick a date",
            "update_contact": "Change address/phone",
            "update_address": "Change address",
            "update_phone": "Change phone",
            "rto": "Cancel order",
            "hold_for_pickup": "I will collect it",
            "_other": "Other",
        },
        "reason": {
            "customer_unavailable": "nobody was available",
            "customer_unreachable": "we could not reach you by phone",
            "address_issue": "the address could not be found",
            "reschedule_requested": "a later date was requested",
            "payment_issue": "the payment was not ready",
            "premises_closed": "the premises were closed",
            "access_restricted": "we could not get access",
            "verification_failed": "the delivery code was not given",
            "self_collect_requested": "you asked to collect it",
            "open_delivery_requested": "an open delivery was requested",
            "customer_refused": "the parcel was refused",
            "order_cancelled_by_customer": "the order was cancelled at the door",
            "out_of_delivery_area": "the address is outside the delivery area",
            "not_attempted": "the courier could not attempt it",
            "_other": "an unexpected problem",
        },
        "hold": {
            "weather": "bad weather",
            "customs": "customs clearance",
            "misrouted": "a routing error",
            "address_verification": "address verification",
            "natural_disaster": "a local disruption",
            "_other": "an operational delay",
        },
        "ui": {
            "track": "Track your parcel",
            "choose": "Choose an option",
            "or_open": "Or open this page",
            "choose_here": "Choose on the page",
            "footer": "You get this message because you ordered from {merchant}.",
            "order": "Order",
            "tracking_number": "Tracking number",
            "hello": "Hello {name},",
            "hello_anon": "Hello,",
        },
    },
    "hi": {
        "option": {
            "reattempt": "कल डिलीवरी",
            "reschedule": "तारीख चुनें",
            "update_contact": "पता/फ़ोन बदलें",
            "update_address": "पता बदलें",
            "update_phone": "फ़ोन बदलें",
            "rto": "रद्द करें",
            "cancel": "रद्द करें",
            "hold_for_pickup": "खुद ले जाऊँगा",
            "nobody_came": "मैं घर पर था, कोई नहीं आया",
            "deliver_tomorrow": "कल डिलीवरी",
            "pick_a_date": "तारीख चुनें",
            "change_address_or_phone": "पता/फ़ोन बदलें",
            "change_phone": "फ़ोन बदलें",
            "self_collect": "खुद ले जाऊँगा",
            "_other": "अन्य",
        },
        "short": {
            "reattempt": "कल",
            "reschedule": "तारीख",
            "update_contact": "पता/फ़ोन",
            "update_address": "पता",
            "update_phone": "फ़ोन",
            "rto": "रद्द",
            "cancel": "रद्द",
            "hold_for_pickup": "खुद लूँगा",
        },
        "button": {
            "reattempt": "कल डिलीवरी करें",
            "reschedule": "तारीख चुनें",
            "update_contact": "पता/फ़ोन बदलें",
            "update_address": "पता बदलें",
            "update_phone": "फ़ोन बदलें",
            "rto": "ऑर्डर रद्द करें",
            "hold_for_pickup": "खुद ले जाऊँगा",
            "_other": "अन्य",
        },
        "reason": {
            "customer_unavailable": "कोई उपलब्ध नहीं था",
            "customer_unreachable": "फ़ोन पर संपर्क नहीं हुआ",
            "address_issue": "पता नहीं मिला",
            "reschedule_requested": "बाद की तारीख माँगी गई",
            "payment_issue": "भुगतान तैयार नहीं था",
            "premises_closed": "परिसर बंद था",
            "access_restricted": "प्रवेश नहीं मिला",
            "verification_failed": "डिलीवरी कोड नहीं मिला",
            "self_collect_requested": "आपने खुद लेने को कहा",
            "open_delivery_requested": "खोलकर देखने का अनुरोध",
            "customer_refused": "पार्सल लौटा दिया गया",
            "order_cancelled_by_customer": "दरवाज़े पर ऑर्डर रद्द हुआ",
            "out_of_delivery_area": "पता डिलीवरी क्षेत्र से बाहर है",
            "not_attempted": "कूरियर प्रयास नहीं कर सका",
            "_other": "एक अनपेक्षित समस्या",
        },
        "hold": {
            "weather": "खराब मौसम",
            "customs": "कस्टम क्लीयरेंस",
            "misrouted": "रूट की गलती",
            "address_verification": "पते की जाँच",
            "natural_disaster": "स्थानीय रुकावट",
            "_other": "परिचालन देरी",
        },
        "ui": {
            "track": "अपना पार्सल ट्रैक करें",
            "choose": "एक विकल्प चुनें",
            "or_open": "या यह पेज खोलें",
            "choose_here": "पेज पर चुनें",
            "footer": "आपको यह संदेश इसलिए मिला क्योंकि आपने {merchant} से ऑर्डर किया था।",
            "order": "ऑर्डर",
            "tracking_number": "ट्रैकिंग नंबर",
            "hello": "नमस्ते {name},",
            "hello_anon": "नमस्ते,",
        },
    },
    "ko": {
        "option": {
            "reattempt": "내일 배송",
            "reschedule": "날짜 선택",
            "update_contact": "주소/전화 변경",
            "update_address": "주소 변경",
            "update_phone": "전화 변경",
            "rto": "주문 취소",
            "cancel": "주문 취소",
            "hold_for_pickup": "직접 수령",
            "nobody_came": "집에 있었는데 아무도 안 옴",
            "deliver_tomorrow": "내일 배송",
            "pick_a_date": "날짜 선택",
            "change_address_or_phone": "주소/전화 변경",
            "change_phone": "전화 변경",
            "self_collect": "직접 수령",
            "_other": "기타",
        },
        "short": {},
        "button": {
            "reattempt": "내일 배송",
            "reschedule": "날짜 선택",
            "update_contact": "주소/전화 변경",
            "update_address": "주소 변경",
            "update_phone": "전화 변경",
            "rto": "주문 취소",
            "hold_for_pickup": "직접 수령",
            "_other": "기타",
        },
        "reason": {
            "customer_unavailable": "수령인 부재",
            "customer_unreachable": "전화 연결 안 됨",
            "address_issue": "주소 확인 불가",
            "reschedule_requested": "배송일 변경 요청",
            "payment_issue": "결제 준비 안 됨",
            "premises_closed": "영업장 휴무",
            "access_restricted": "출입 불가",
            "verification_failed": "인증번호 미확인",
            "self_collect_requested": "직접 수령 요청",
            "open_delivery_requested": "개봉 확인 요청",
            "customer_refused": "수령 거절",
            "order_cancelled_by_customer": "현장에서 주문 취소",
            "out_of_delivery_area": "배송 불가 지역",
            "not_attempted": "배송 시도 못 함",
            "_other": "예상치 못한 문제",
        },
        "hold": {
            "weather": "기상 악화",
            "customs": "통관 절차",
            "misrouted": "배송 경로 오류",
            "address_verification": "주소 확인",
            "natural_disaster": "지역 사정",
            "_other": "운송 지연",
        },
        "ui": {
            "track": "배송 조회",
            "choose": "원하시는 방법을 선택하세요",
            "or_open": "또는 이 페이지를 여세요",
            "choose_here": "페이지에서 선택",
            "footer": "{merchant}에서 주문하셔서 보내드리는 안내입니다.",
            "order": "주문번호",
            "tracking_number": "운송장 번호",
            "hello": "{name}님, 안녕하세요.",
            "hello_anon": "안녕하세요.",
        },
    },
}


def label(locales: list[str], kind: str, code: str | None) -> str:
    """First locale of the chain that knows (kind, code); else that locale's neutral `_other`.
    "short" falls back to "option" in the same locale (only some languages need shorter texts)."""
    if kind == "short":
        for loc in locales:
            tables = LABELS.get(loc, {})
            if code in tables.get("short", {}):
                return tables["short"][code]
            if code in tables.get("option", {}):
                return tables["option"][code]
        kind = "option"
    for loc in locales:
        table = LABELS.get(loc, {}).get(kind)
        if table and code in table:
            return table[code]
    for loc in locales:
        table = LABELS.get(loc, {}).get(kind)
        if table and "_other" in table:
            return table["_other"]
    return code or ""
