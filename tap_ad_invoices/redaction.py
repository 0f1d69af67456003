"""Keep secrets out of logs, errors, state and records.

Every secret the tap learns (config secrets, access tokens as they are minted)
is registered here; a logging filter replaces them, and presigned-URL
signatures, wherever they appear in a log line.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

_MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()

# Query parameters that carry credentials in presigned S3 URLs and OAuth calls.
_SECRET_QUERY = re.compile(
    r"(?i)((?:X-Amz-Signature|X-Amz-Security-Token|X-Amz-Credential|Signature|"
    r"access_token|refresh_token|client_secret|sig|token)=)[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._|~+/=-]+")
_LWA_TOKEN = re.compile(r"Atz[ar]\|[A-Za-z0-9._|~+/=-]+")


def register_secret(value: object) -> None:
    """Remember a secret value so it is masked wherever it would be logged."""
    if isinstance(value, str) and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    text = _SECRET_QUERY.sub(rf"\g<1>{_MASK}", text)
    text = _BEARER.sub(rf"\g<1>{_MASK}", text)
    return _LWA_TOKEN.sub(_MASK, text)


def strip_query(url: str) -> str:
    """A URL fit for a log line: presigned query strings are credentials."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not hide the record
            return True
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            cleaned_exc = redact(str(record.exc_info[1]))
            if cleaned_exc != str(record.exc_info[1]):
                # Tracebacks would print the raw exception text: keep only its cleaned line.
                cleaned = f"{cleaned} ({type(record.exc_info[1]).__name__}: {cleaned_exc})"
                record.exc_info = None
                record.exc_text = None
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Attach the filter to every handler of the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
