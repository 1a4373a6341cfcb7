"""Words of the public tracking page `/t/{shipment_id}` in English, Hindi and Korean.

Data beside the page, like api/customer_text.py; every language has every key (a test checks).
Milestone names are what customers read, not our codes ("On the way", not "in_transit").
"""

from __future__ import annotations

from api.customer_text import pick_language

LANGUAGES = (("en", "English"), ("hi", "हिन्दी"), ("ko", "한국어"))

MILESTONES: dict[str, dict[str, str]] = {
    "en": {
        "created": "Order registered",
        "pickup_failed": "Pickup did not happen",
        "picked_up": "Picked up",
        "in_transit": "On the way",
        "out_for_delivery": "Out for delivery",
        "delivery_failed": "Delivery attempt failed",
        "ready_for_pickup": "Ready to collect",
        "on_hold": "Delayed",
        "delivered": "Delivered",
        "rto_initiated": "Returning to the seller",
        "rto_in_transit": "On the way back to the seller",
        "rto_delivered": "Returned to the seller",
        "cancelled": "Cancelled",
        "lost": "Lost in transit",
        "damaged": "Damaged in transit",
        "unknown": "Update from the courier",
    },
    "hi": {
        "created": "ऑर्डर दर्ज हुआ",
        "pickup_failed": "पिकअप नहीं हो सका",
        "picked_up": "पिकअप हो गया",
        "in_transit": "रास्ते में",
        "out_for_delivery": "डिलीवरी के लिए निकला",
        "delivery_failed": "डिलीवरी नहीं हो सकी",
        "ready_for_pickup": "लेने के लिए तैयार",
        "on_hold": "देरी हो रही है",
        "delivered": "डिलीवर हो गया",
        "rto_initiated": "विक्रेता को लौटाया जा रहा है",
        "rto_in_transit": "विक्रेता के पास लौट रहा है",
        "rto_delivered": "विक्रेता को लौटा दिया गया",
        "cancelled": "रद्द",
        "lost": "रास्ते में खो गया",
        "damaged": "रास्ते में क्षतिग्रस्त",
        "unknown": "कूरियर से अपडेट",
    },
    "ko": {
        "created": "주문 접수",
        "pickup_failed": "집화 실패",
        "picked_up": "집화 완료",
        "in_transit": "배송 중",
        "out_for_delivery": "배송 출발",
        "delivery_failed": "배송 실패",
        "ready_for_pickup": "수령 대기",
        "on_hold": "배송 지연",
        "delivered": "배송 완료",
        "rto_initiated": "판매자에게 반송 중",
        "rto_in_transit": "판매자에게 반송 이동 중",
        "rto_delivered": "판매자에게 반송 완료",
        "cancelled": "취소됨",
        "lost": "배송 중 분실",
        "damaged": "배송 중 파손",
        "unknown": "택배사 업데이트",
    },
}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Track your parcel",
        "from": "Order from {merchant}",
        "carrier": "Courier",
        "tracking_number": "Tracking number",
        "expected": "Expected by {date}",
        "updated": "Last update {when}",
        "history": "Journey",
        "no_history": "No scans from the courier yet. This page updates as soon as they arrive.",
        "step_ordered": "Ordered",
        "step_picked_up": "Picked up",
        "step_in_transit": "On the way",
        "step_out_for_delivery": "Out for delivery",
        "step_delivered": "Delivered",
        "ndr_waiting": "We sent you a message with options for the next delivery attempt. Reply to it, "
        "or open the link in it.",
        "ndr_decided": "Your answer for the next delivery attempt has been passed to the courier.",
        "partial": "Live details are briefly unavailable; this is the last status we know.",
        "not_found_title": "We could not find this parcel",
        "not_found_text": "Please open the link exactly as it appears in the message you got.",
        "busy_title": "Too many requests",
        "busy_text": "Please wait a minute and reload the page.",
        "unavailable_title": "Tracking is unavailable just now",
        "unavailable_text": "Please try again in a minute.",
    },
    "hi": {
        "title": "अपना पार्सल ट्रैक करें",
        "from": "{merchant} से ऑर्डर",
        "carrier": "कूरियर",
        "tracking_number": "ट्रैकिंग नंबर",
        "expected": "{date} तक पहुँचने की उम्मीद",
        "updated": "आख़िरी अपडेट {when}",
        "history": "सफ़र",
        "no_history": "कूरियर से अभी कोई स्कैन नहीं आया। स्कैन आते ही यह पेज अपडेट होगा।",
        "step_ordered": "ऑर्डर",
        "step_picked_up": "पिकअप",
        "step_in_transit": "रास्ते में",
        "step_out_for_delivery": "डिलीवरी के लिए निकला",
        "step_delivered": "डिलीवर",
        "ndr_waiting": "अगले डिलीवरी प्रयास के विकल्पों के साथ हमने आपको संदेश भेजा है। उसका जवाब दें, "
        "या उसमें दिया लिंक खोलें।",
        "ndr_decided": "अगले डिलीवरी प्रयास के लिए आपका जवाब कूरियर को भेज दिया गया है।",
        "partial": "ताज़ा जानकारी अभी उपलब्ध नहीं है; यह हमें पता आख़िरी स्थिति है।",
        "not_found_title": "यह पार्सल नहीं मिला",
        "not_found_text": "कृपया संदेश में दिया लिंक ठीक वैसे ही खोलें।",
        "busy_title": "बहुत ज़्यादा अनुरोध",
        "busy_text": "कृपया एक मिनट रुककर पेज फिर से खोलें।",
        "unavailable_title": "ट्रैकिंग अभी उपलब्ध नहीं है",
        "unavailable_text": "कृपया एक मिनट बाद फिर कोशिश करें।",
    },
    "ko": {
        "title": "배송 조회",
        "from": "{merchant} 주문",
        "carrier": "택배사",
        "tracking_number": "운송장 번호",
        "expected": "{date} 도착 예정",
        "updated": "최근 업데이트 {when}",
        "history": "배송 경로",
        "no_history": "아직 택배사 스캔 정보가 없습니다. 정보가 들어오는 대로 이 페이지에 표시됩니다.",
        "step_ordered": "주문",
        "step_picked_up": "집화",
        "step_in_transit": "배송 중",
        "step_out_for_delivery": "배송 출발",
        "step_delivered": "배송 완료",
        "ndr_waiting": "다음 배송 방법을 선택하실 수 있도록 메시지를 보내드렸습니다. 메시지에 답장하시거나 "
        "메시지의 링크를 열어 주세요.",
        "ndr_decided": "다음 배송에 대한 답변을 택배사에 전달했습니다.",
        "partial": "실시간 정보를 잠시 불러올 수 없어 마지막으로 확인된 상태를 보여드립니다.",
        "not_found_title": "배송 정보를 찾을 수 없습니다",
        "not_found_text": "받으신 메시지의 링크를 그대로 열어 주세요.",
        "busy_title": "요청이 너무 많습니다",
        "busy_text": "잠시 후 페이지를 새로고침해 주세요.",
        "unavailable_title": "지금은 배송 조회를 할 수 없습니다",
        "unavailable_text": "잠시 후 다시 시도해 주세요.",
    },
}


def language_for(locale: str | None, override: str | None = None) -> str:
    """`?lang=` when we have it, else the customer's locale ("hi-IN" -> "hi"), else English."""
    return pick_language(TEXT, locale, override)
