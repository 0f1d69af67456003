"""One HTTP client for every REST call: retries, Retry-After, rate limits, 401 refresh.

Each source builds an `HttpClient` with its base URL, its auth headers and its
rate limits; the policy below is written once:

- 429: wait `Retry-After` (seconds) when given, else back off; drain the bucket.
- 5xx, dropped connections, timeouts: exponential backoff, `max_tries` in all.
- 401 on an authenticated call (also 403 where an API says so, Amazon Business):
  refresh the access token once and retry.
- other 4xx: `ApiError` with one line naming the operation (never the body's secrets).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import requests

from tap_ad_invoices.errors import ApiError
from tap_ad_invoices.ratelimit import TokenBucket
from tap_ad_invoices.redaction import redact

LOGGER = logging.getLogger("tap_ad_invoices.http")

TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class AccessTokenSource(Protocol):
    def access_token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class RetryPolicy:
    def __init__(self, max_tries: int = 6, base_delay: float = 1.0, max_delay: float = 60.0):
        self.max_tries = max_tries
        self.base_delay = base_delay
        self.max_delay = max_delay

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff: attempt 1 -> up to base, 2 -> 2*base, ..."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: rare here, fall back to backoff


def describe_error(response: requests.Response) -> tuple[str | None, str]:
    """(code, details) from the JSON error shapes these APIs use, on one line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text[:200]
        return None, " ".join(text.split())
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:  # Amazon Business
            first = body["errors"][0]
            return first.get("code"), str(first.get("message", ""))
        code = body.get("code") or body.get("error")
        details = body.get("details") or body.get("message") or body.get("error_description")
        return (str(code) if code else None), str(details or "")
    return None, str(body)[:200]


class HttpClient:
    def __init__(
        self,
        *,
        base_url: str,
        headers: Callable[[], Mapping[str, str]] | None = None,
        token_source: AccessTokenSource | None = None,
        bearer_header: tuple[str, str] = ("Authorization", "Bearer {token}"),
        refresh_on: tuple[int, ...] = (401,),
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10.0, 120.0),
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = headers or (lambda: {})
        self._token_source = token_source
        self._bearer_header = bearer_header
        self._refresh_on = refresh_on
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self.session = session or requests.Session()

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        operation: str,
        authenticated: bool = True,
        bucket: TokenBucket | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
        stream: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one logical request, retrying what is worth retrying.

        `operation` names the call in errors and logs ("createReport", ...).
        Responses with a status outside `ok` and not retried raise `ApiError`
        carrying the status, so callers can react to 400/403/404 themselves.
        """
        url = self._url(path_or_url)
        extra_headers = kwargs.pop("headers", None) or {}
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            if bucket is not None:
                bucket.acquire()
            headers = dict(self._headers())
            token = None
            if authenticated and self._token_source is not None:
                token = self._token_source.access_token()
                name, template = self._bearer_header
                headers[name] = template.format(token=token)
            else:
                # Presigned downloads: no Amazon auth, and raw bytes (no transparent gunzip).
                headers.setdefault("Accept-Encoding", "identity")
            headers.update(extra_headers)
            try:
                response = self.session.request(
                    method, url, headers=headers, timeout=self.timeout, stream=stream, **kwargs
                )
            except TRANSIENT_EXCEPTIONS as exc:
                self._wait_or_raise(attempt, operation, f"{type(exc).__name__}", None)
                continue

            status = response.status_code
            if status in ok:
                self._follow_rate_header(response, bucket)
                return response
            if status in self._refresh_on and token is not None and not refreshed:
                # An access token can die before its announced expiry: refresh once.
                LOGGER.info("%s: HTTP %d, refreshing the access token once", operation, status)
                assert self._token_source is not None
                self._token_source.invalidate(token)
                refreshed = True
                response.close()
                continue
            if status == 429 or status >= 500:
                wait = retry_after_seconds(response) if status == 429 else None
                if status == 429 and bucket is not None:
                    bucket.drain()
                code, details = describe_error(response)
                response.close()
                self._wait_or_raise(attempt, operation, f"HTTP {status} {code or ''}".strip(), wait)
                continue
            code, details = describe_error(response)
            response.close()
            raise ApiError(
                redact(f"{operation} failed: HTTP {status} {code or ''} {details}".strip()),
                status=status,
                code=code,
            )

    def _wait_or_raise(self, attempt: int, operation: str, what: str, wait: float | None) -> None:
        if attempt >= self.retry.max_tries:
            raise ApiError(f"{operation} failed after {attempt} attempts: {what}")
        delay = wait if wait is not None else self.retry.backoff(attempt)
        LOGGER.warning(
            "%s: %s, retry %d/%d in %.1fs",
            operation,
            what,
            attempt,
            self.retry.max_tries - 1,
            delay,
        )
        self._sleep(delay)

    @staticmethod
    def _follow_rate_header(response: requests.Response, bucket: TokenBucket | None) -> None:
        rate = response.headers.get("x-amzn-RateLimit-Limit")
        if bucket is not None and rate:
            with contextlib.suppress(ValueError):
                bucket.set_rate(float(rate))
