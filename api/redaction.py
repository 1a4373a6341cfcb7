"""Keeping secrets and personal data out of logs and the refusal log.

`redact(text)` masks API keys, bearer credentials, email addresses and phone numbers in free
text (refusal reasons quote what the client sent). `AccessLogRedactor` masks capability tokens
in request paths (the customer's `/r/{token}` link, the Temporal UI's codec URL) before uvicorn's
access log prints them: whoever reads the log must not be able to act as the customer.
"""

from __future__ import annotations

import logging
import re

_API_KEY = re.compile(r"ndr_[mca]_[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# 9+ digits with the usual separators, optionally international; ISO dates are left alone.
_PHONE = re.compile(r"(?<![\w/])(?!\d{4}-\d{2}-\d{2})\+?\d(?:[\s().-]{0,2}\d){8,}")
# Path segments that are credentials: /r/<token>, /codec/ui/<token>/...
_PATH_TOKEN = re.compile(r"(/r/|/codec/ui/)[^/?#\s\"]+")


def redact(text: str) -> str:
    text = _API_KEY.sub("ndr_***", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _EMAIL.sub("***@***", text)
    text = _PHONE.sub("***phone***", text)
    return redact_path(text)


def redact_path(path: str) -> str:
    return _PATH_TOKEN.sub(lambda m: m.group(1) + "***", path)


class AccessLogRedactor(logging.Filter):
    """For `uvicorn.access`, whose record args are (client, method, path, http_version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_path(args[2]), *args[3:])
        return True


def install_access_log_redaction() -> None:
    """Idempotent: adds the filter to uvicorn's access logger once per process."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogRedactor) for f in logger.filters):
        logger.addFilter(AccessLogRedactor())
