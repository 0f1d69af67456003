"""One HTTP client for every REST call: retries, Retry-After, rate limits, 401 refresh.

Each source builds an `HttpClient` with its base URL, its auth headers and its
rate limits; the policy below is written once:

- Retries are bounded by time, not attempts (`RetryPolicy.max_retry_seconds`):
  a patient client outlasts a 429 storm or a quota shared with another tap.
- 429: wait `Retry-After` (seconds) when given, else back off; drain the bucket.
- 5xx, dropped connections, timeouts, bodies cut short: exponential backoff.
- A host that refuses `UNREACHABLE_AFTER_REFUSALS` connections in a row is
  unreachable for the rest of the process: every later call to it raises
  `HostUnreachable` ("cannot reach HOST") at once instead of retrying for minutes.
- 401 on an authenticated call (also 403 where an API says so, Amazon Business):
  refresh the access token once and retry.
- Authenticated calls never follow a redirect: the credentials would go with it.
- other 4xx: `ApiError` with one line naming the operation (never the body's secrets).
- JSON bodies are parsed with `Decimal` for numbers: an amount never passes through float.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from tap_ad_invoices.calls import CALLS, endpoint_of
from tap_ad_invoices.errors import ApiError, SourceUnavailable
from tap_ad_invoices.ratelimit import TokenBucket
from tap_ad_invoices.redaction import redact

LOGGER = logging.getLogger("tap_ad_invoices.http")

DEFAULT_MAX_RETRY_SECONDS = 300.0
UNREACHABLE_AFTER_REFUSALS = 3

T = TypeVar("T")


class BrokenBody(OSError):
    """A body shorter than its Content-Length, or an archive failing its checksum.

    The server answered, the bytes did not arrive whole: retried like a 5xx.
    """


class HostUnreachable(SourceUnavailable, ApiError):
    """A host refused every connection: later calls to it fail at once, with one line.

    Every remaining item of the source would fail the same way, so the source stops.
    """

    def __init__(self, host: str, why: str | None = None) -> None:
        super().__init__(f"cannot reach {host}" + (f" ({why})" if why else ""))
        self.host = host


TRANSIENT_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    BrokenBody,
)


def host_of(url: str) -> str:
    """host[:port] of a URL, never its user info, path or query (presigned signatures)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host


def is_refused_connection(exc: BaseException) -> bool:
    """No connection at all (refused, DNS, network down), unlike a connection dropped mid-answer."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


class HostHealth:
    """Consecutive refused connections per host; a host past the limit stays unreachable."""

    def __init__(self, refusals_to_give_up: int = UNREACHABLE_AFTER_REFUSALS) -> None:
        self.refusals_to_give_up = refusals_to_give_up
        self._lock = threading.Lock()
        self._refusals: dict[str, int] = {}
        self._unreachable: set[str] = set()

    def check(self, host: str) -> None:
        with self._lock:
            if host in self._unreachable:
                raise HostUnreachable(host)

    def refused(self, host: str) -> None:
        """Count one refusal; raise `HostUnreachable` when the host just crossed the limit."""
        with self._lock:
            self._refusals[host] = self._refusals.get(host, 0) + 1
            if self._refusals[host] >= self.refusals_to_give_up:
                self._unreachable.add(host)
        self.check(host)

    def answered(self, host: str) -> None:
        with self._lock:
            self._refusals.pop(host, None)

    def give_up(self, host: str, why: str) -> HostUnreachable:
        """Mark `host` unreachable now (a token endpoint that outlasted the retry budget)."""
        with self._lock:
            self._unreachable.add(host)
        return HostUnreachable(host, why)


# One per process: every client of every source learns that a host is down from the first.
HOSTS = HostHealth()


class AccessTokenSource(Protocol):
    def access_token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class RetryPolicy:
    """How long one logical call may keep retrying, and how long to wait between attempts."""

    def __init__(
        self,
        max_retry_seconds: float = DEFAULT_MAX_RETRY_SECONDS,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_retry_seconds < 0:
            raise ValueError("max_retry_seconds must be >= 0")
        self.max_retry_seconds = max_retry_seconds
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff: attempt 1 -> up to base, 2 -> 2*base, ..."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def start(self) -> RetryBudget:
        return RetryBudget(self)


class RetryBudget:
    """One logical call's attempts, against the policy's time budget."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.started = policy.clock()
        self.attempts = 0

    @property
    def elapsed(self) -> float:
        return self.policy.clock() - self.started

    def next_delay(self, wait: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget would be spent.

        `wait` is what the server asked for (Retry-After); otherwise exponential backoff.
        """
        self.attempts += 1
        delay = wait if wait is not None else self.policy.backoff(self.attempts)
        if self.elapsed + delay > self.policy.max_retry_seconds:
            return None
        return delay

    @property
    def log_level(self) -> int:
        """WARNING for retries 1, 2, 3, 4, 8, 16, ...; DEBUG between, so a long storm stays
        readable (a 429 storm waited out for five minutes is not 300 lines)."""
        power_of_two = self.attempts & (self.attempts - 1) == 0
        return logging.WARNING if self.attempts <= 3 or power_of_two else logging.DEBUG

    def give_up(self, operation: str, what: str) -> ApiError:
        return ApiError(
            f"{operation} failed: {what}, still after {self.attempts} attempt(s) in "
            f"{self.elapsed:.0f}s (max_retry_seconds={self.policy.max_retry_seconds:g})"
        )


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
        if isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            # Amazon Business: {code, message}; the Amazon Ads accounts API:
            # {errorCode, errorId, errorMessage}.
            code = first.get("code") or first.get("errorCode")
            details = str(first.get("message") or first.get("errorMessage") or "")
            if first.get("errorId"):
                details += f" (errorId {first['errorId']})"
            return (str(code) if code else None), details
        code = body.get("code") or body.get("error")
        message = body.get("details") or body.get("message") or body.get("error_description")
        return (str(code) if code else None), str(message or "")
    return None, str(body)[:200]


def json_body(response: requests.Response, operation: str) -> Any:
    """The JSON body, numbers as Decimal; a non-JSON answer (an HTML page) is one clear line."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        kind = response.headers.get("Content-Type") or "no Content-Type"
        raise ApiError(
            f"{operation} answered HTTP {response.status_code} with a body that is not JSON "
            f"({kind.split(';')[0]})",
            status=response.status_code,
        ) from None


class _Retry(Exception):
    """One attempt failed in a way worth retrying: `what` for logs, `wait` from the server."""

    def __init__(self, what: str, wait: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.wait = wait


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
        hosts: HostHealth | None = None,
        source: str = "other",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.source = source  # whose quota the calls spend, for the end-of-run call count
        self._headers = headers or (lambda: {})
        self._token_source = token_source
        self._bearer_header = bearer_header
        self._refresh_on = refresh_on
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self.session = session or requests.Session()
        self.hosts = hosts or HOSTS

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
        `authenticated=False` (presigned downloads, token endpoints) sends none of
        the client's headers and no access token: only the call's own headers.
        """
        return self.fetch(
            method,
            path_or_url,
            lambda response: response,
            operation=operation,
            authenticated=authenticated,
            bucket=bucket,
            ok=ok,
            stream=stream,
            **kwargs,
        )

    def request_json(self, method: str, path_or_url: str, *, operation: str, **kwargs: Any) -> Any:
        """`request`, then the JSON body with numbers as Decimal."""
        response = self.request(method, path_or_url, operation=operation, **kwargs)
        return json_body(response, operation)

    def fetch(
        self,
        method: str,
        path_or_url: str,
        read: Callable[[requests.Response], T],
        *,
        operation: str,
        authenticated: bool = True,
        bucket: TokenBucket | None = None,
        ok: tuple[int, ...] = (200, 201, 202),
        stream: bool = False,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> T:
        """`request`, with `read` turning the answer into a result inside the retry loop.

        A body that breaks while `read` consumes it (`BrokenBody`, a dropped
        connection) is fetched again, within the same time budget. `endpoint` names
        the call in the end-of-run count (default: `operation` without its item).
        """
        endpoint = endpoint or endpoint_of(operation)
        url = self._url(path_or_url)
        host = host_of(url)
        extra_headers = kwargs.pop("headers", None) or {}
        budget = self.retry.start()
        refreshed = False
        while True:
            self.hosts.check(host)
            if bucket is not None:
                bucket.acquire()
            token = self._token() if authenticated else None
            headers = self._request_headers(authenticated, token, extra_headers)
            CALLS.call(self.source, endpoint)
            try:
                response = self.session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self.timeout,
                    stream=stream,
                    # Credentials must never follow a redirect to another host; a presigned
                    # download carries none, so it may.
                    allow_redirects=not authenticated,
                    **kwargs,
                )
            except TRANSIENT_EXCEPTIONS as exc:
                if is_refused_connection(exc):
                    self.hosts.refused(host)
                self._wait_or_raise(budget, operation, _Retry(_describe_transient(exc)))
                continue
            self.hosts.answered(host)
            try:
                if token is not None and response.status_code in self._refresh_on and not refreshed:
                    # An access token can die before its announced expiry: refresh once.
                    LOGGER.info(
                        "%s: HTTP %d, refreshing the access token once",
                        operation,
                        response.status_code,
                    )
                    response.close()
                    assert self._token_source is not None
                    self._token_source.invalidate(token)
                    refreshed = True
                    continue
                self._check_status(response, operation, ok, bucket)
                self._follow_rate_header(response, bucket)
                return read(response)
            except _Retry as retry:
                response.close()
                self._wait_or_raise(budget, operation, retry)
            except TRANSIENT_EXCEPTIONS as exc:
                response.close()
                self._wait_or_raise(budget, operation, _Retry(_describe_transient(exc)))

    def _token(self) -> str | None:
        if self._token_source is None:
            return None
        return self._token_source.access_token()

    def _request_headers(
        self, authenticated: bool, token: str | None, extra: Mapping[str, str]
    ) -> dict[str, str]:
        if authenticated:
            headers = dict(self._headers())
            if token is not None:
                name, template = self._bearer_header
                headers[name] = template.format(token=token)
        else:
            # Presigned downloads: no Amazon headers, and raw bytes (no transparent gunzip).
            headers = {"Accept-Encoding": "identity"}
        headers.update(extra)
        return headers

    @staticmethod
    def _check_status(
        response: requests.Response,
        operation: str,
        ok: tuple[int, ...],
        bucket: TokenBucket | None,
    ) -> None:
        """Return for an answer in `ok`; raise `_Retry` for what waiting may fix, else ApiError."""
        status = response.status_code
        if status in ok:
            return
        if status == 429 or status >= 500:
            if status == 429 and bucket is not None:
                bucket.drain()
            code, _ = describe_error(response)
            wait = retry_after_seconds(response) if status == 429 else None
            raise _Retry(f"HTTP {status} {code or ''}".strip(), wait)
        if 300 <= status < 400:
            target = urljoin(response.url, response.headers.get("Location") or "")
            raise ApiError(
                f"{operation} failed: HTTP {status} redirect to {host_of(target) or 'nowhere'}, "
                "not followed (credentials are never sent on to another address)",
                status=status,
            )
        code, details = describe_error(response)
        raise ApiError(
            redact(f"{operation} failed: HTTP {status} {code or ''} {details}".strip()),
            status=status,
            code=code,
        )

    def _wait_or_raise(self, budget: RetryBudget, operation: str, retry: _Retry) -> None:
        throttled = retry.what.startswith("HTTP 429")
        delay = budget.next_delay(retry.wait)
        if delay is None:
            if throttled:
                CALLS.throttle(self.source, endpoint_of(operation))
            raise budget.give_up(operation, retry.what)
        CALLS.retry(self.source, endpoint_of(operation), throttled=throttled)
        LOGGER.log(
            budget.log_level,
            "%s: %s, retry %d in %.1fs (%.0fs of max_retry_seconds=%g spent)",
            operation,
            retry.what,
            budget.attempts,
            delay,
            budget.elapsed,
            budget.policy.max_retry_seconds,
        )
        self._sleep(delay)

    @staticmethod
    def _follow_rate_header(response: requests.Response, bucket: TokenBucket | None) -> None:
        rate = response.headers.get("x-amzn-RateLimit-Limit")
        if bucket is not None and rate:
            with contextlib.suppress(ValueError):
                bucket.set_rate(float(rate))


def _describe_transient(exc: BaseException) -> str:
    """Our own `BrokenBody` messages are safe to show; requests' name the URL, query included."""
    if isinstance(exc, BrokenBody):
        return redact(" ".join(str(exc).split()))
    return type(exc).__name__
