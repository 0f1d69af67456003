"""Meta Graph API calls (business_invoices, invoice campaign lines, invoice PDFs), nothing else.

Built on the shared `HttpClient` rather than the `facebook-business` SDK: the SDK
fixes its host in a class attribute (`FacebookSession.GRAPH`), pins its own CA
bundle on its session and puts the token in every URL's query string, and it
knows nothing of the Business Use Case usage header. One GET edge with cursor
paging is less code than adapting all that (README, "Meta: why no SDK").

Graph answers errors with HTTP 400/401/403 and `{"error": {"code", ...}}`; the
code, not the status, says what happened: 190 the token is invalid or expired,
4/17/32/613 and 80000-80099 throttling. `X-Business-Use-Case-Usage` reports,
per business, the percentage used of each budget and, when throttled, minutes
until access returns; `UsageGovernor` paces calls by it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tap_ad_invoices.calls import CALLS
from tap_ad_invoices.documents import fetch_bounded
from tap_ad_invoices.errors import AuthorizationExpired
from tap_ad_invoices.http import HttpClient, RetryBudget, RetryPolicy
from tap_ad_invoices.meta.config import KEY, MetaSettings
from tap_ad_invoices.redaction import redact, register_secret

LOGGER = logging.getLogger("tap_ad_invoices.meta")

USAGE_HEADER = "X-Business-Use-Case-Usage"
THROTTLE_CODES = frozenset({4, 17, 32, 613})
THROTTLE_RANGE = range(80000, 80100)  # Business Use Case limits, one code per API family
TOKEN_CODE = 190
# Pacing: below SLOW_FROM percent of any budget calls go out at once; from there the
# pause before each call grows linearly to MAX_PACE_SECONDS at 100%. Meta's budgets
# are rolling one-hour windows, so seconds of pause buy back usage.
SLOW_FROM = 75.0
MAX_PACE_SECONDS = 20.0
MAX_REGAIN_WAIT_SECONDS = 1800.0  # longer waits fail the business; the next run retries
PAGE_SIZE = 100
# The billing-period filter defaults to six months back: asked explicitly from this
# many months before the issue window, so late credit memos for old periods show up.
BILLING_PERIOD_REACH_MONTHS = 12
GRAPH_ERROR_STATUSES = (200, 400, 401, 403, 404)  # 5xx: HttpClient retries

INVOICE_FIELDS = (
    "id",
    "invoice_id",
    "type",
    "invoice_type",
    "amount",
    "amount_due",
    "billed_amount_details",
    "billing_period",
    "currency",
    "invoice_date",
    "due_date",
    "payment_status",
    "payment_term",
    "liability_type",
    "entity",
    "advertiser_name",
    "ad_account_ids",
    "campaign",
    "download_uri",
    "cdn_download_uri",
)
CAMPAIGN_FIELDS = (
    "id",
    "campaign_id",
    "campaign_name",
    "ad_account_id",
    "description",
    "amount",
    "impressions",
    "clicks",
    "conversions",
    "start_date",
    "end_date",
)


@dataclass(eq=False)
class GraphError(Exception):
    """One failed Graph call, as Graph describes it (never with the token)."""

    what: str
    status: int
    code: int | None
    subcode: int | None
    message: str
    trace: str | None = None

    def __str__(self) -> str:
        sub = f"/{self.subcode}" if self.subcode else ""
        trace = f", fbtrace_id {self.trace}" if self.trace else ""
        return redact(
            f"{self.what}: HTTP {self.status}, code {self.code}{sub}: {self.message}{trace}"
        )

    @property
    def throttled(self) -> bool:
        return self.code is not None and (
            self.code in THROTTLE_CODES or self.code in THROTTLE_RANGE
        )

    @property
    def token_invalid(self) -> bool:
        return self.code == TOKEN_CODE

    @property
    def not_invoiced(self) -> bool:
        """A business without monthly invoicing (card-paid). UNCONFIRMED wording: Meta
        documents no code for it; we recognise code 100 naming monthly invoicing."""
        return self.code == 100 and "invoic" in self.message.lower()

    @classmethod
    def from_body(cls, what: str, status: int, body: Any) -> GraphError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(what, status, None, None, " ".join(str(body)[:200].split()))
        return cls(
            what,
            status,
            _int_or_none(error.get("code")),
            _int_or_none(error.get("error_subcode")),
            " ".join(str(error.get("message", "")).split()),
            error.get("fbtrace_id"),
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Usage:
    percent: float  # the fullest budget: max of call_count, total_cputime, total_time
    regain_seconds: float  # estimated_time_to_regain_access, in seconds


def parse_usage(header: str | None, business_id: str) -> Usage | None:
    """The business's entries of X-Business-Use-Case-Usage (all entries if it is absent)."""
    if not header:
        return None
    try:
        data = json.loads(header)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    entries = data.get(business_id) or [e for v in data.values() for e in (v or [])]
    percent = regain = 0.0
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        for name in ("call_count", "total_cputime", "total_time"):
            percent = max(percent, _number(entry.get(name)))
        regain = max(regain, _number(entry.get("estimated_time_to_regain_access")) * 60)
    return Usage(percent, regain)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class UsageGovernor:
    """Per business: how long to hold the next call, from the last usage header seen."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep
        self._lock = threading.Lock()
        self._usage: dict[str, Usage] = {}

    def observe(self, business_id: str, usage: Usage | None) -> None:
        if usage is not None:
            with self._lock:
                self._usage[business_id] = usage

    def pause(self, business_id: str) -> float:
        with self._lock:
            usage = self._usage.get(business_id)
        if usage is None:
            return 0.0
        if usage.regain_seconds > 0:
            return min(usage.regain_seconds, MAX_REGAIN_WAIT_SECONDS)
        if usage.percent < SLOW_FROM:
            return 0.0
        share = min(1.0, (usage.percent - SLOW_FROM) / (100.0 - SLOW_FROM))
        return MAX_PACE_SECONDS * share

    def before_call(self, business_id: str) -> None:
        delay = self.pause(business_id)
        if delay > 0:
            LOGGER.info("Meta business %s near its rate limit: pausing %.2fs", business_id, delay)
            self._sleep(delay)


class _StaticToken:
    """The system-user token does not refresh: a 190 means a human must make a new one."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token

    def invalidate(self, token: str) -> None:
        return None


class MetaGraph:
    """Graph calls for one access token; safe to share between threads."""

    def __init__(
        self,
        settings: MetaSettings,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        register_secret(settings.access_token)
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.governor = UsageGovernor(sleep)
        self.http = HttpClient(
            source="meta",
            base_url=f"{settings.api_url}/{settings.api_version}",
            token_source=_StaticToken(settings.access_token),
            refresh_on=(),  # nothing to refresh: the token is long-lived
            retry=self.retry,
            sleep=sleep,
        )

    # -- the calls ------------------------------------------------------------------
    def business_invoices(
        self, business_id: str, issue_start: str, issue_end: str, billing_start: str
    ) -> list[dict[str, Any]]:
        """Every invoice issued in [issue_start, issue_end) (dates), all pages."""
        params = {
            "fields": ",".join(INVOICE_FIELDS),
            "issue_start_date": issue_start,
            "issue_end_date": issue_end,
            "start_date": billing_start,
            "limit": str(PAGE_SIZE),
        }
        what = f"business_invoices of business {business_id}"
        return self._all_pages(f"{business_id}/business_invoices", params, what, business_id)

    def invoice_campaigns(self, business_id: str, invoice_node: str) -> list[dict[str, Any]]:
        params = {"fields": ",".join(CAMPAIGN_FIELDS), "limit": str(PAGE_SIZE)}
        what = f"campaigns of invoice {invoice_node}"
        return self._all_pages(f"{invoice_node}/campaigns", params, what, business_id)

    def download_pdf(
        self, invoice: Mapping[str, Any], business_id: str, max_bytes: int, what: str
    ) -> bytes:
        """The PDF from `cdn_download_uri` (no token) or else `download_uri` (with the token,
        only when it is on the Graph host: the token never goes to another host)."""
        cdn = invoice.get("cdn_download_uri")
        if cdn:
            return fetch_bounded(
                self.http, cdn, max_bytes=max_bytes, what=what, authenticated=False
            )
        graph_url = invoice.get("download_uri")
        if not graph_url:
            raise ValueError(f"{what}: the invoice has neither cdn_download_uri nor download_uri")
        if not self.on_graph_host(graph_url):
            raise ValueError(
                f"{what}: download_uri is not on the Graph host {KEY}.api_url; "
                "the access token is not sent elsewhere"
            )
        self.governor.before_call(business_id)
        return fetch_bounded(
            self.http, graph_url, max_bytes=max_bytes, what=what, authenticated=True
        )

    def on_graph_host(self, url: str) -> bool:
        ours, theirs = urlsplit(self.settings.api_url), urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    # -- plumbing -------------------------------------------------------------------
    def _all_pages(
        self, path: str, params: dict[str, str], what: str, business_id: str
    ) -> list[dict[str, Any]]:
        """Follows cursors.after while Graph says there is a next page. The `next` URL
        itself is not fetched: Graph copies the query into it, access_token included when
        a client sends it there, and a URL is not a place a credential should travel."""
        items: list[dict[str, Any]] = []
        query = dict(params)
        while True:
            body = self._get(path, query, what, business_id)
            items.extend(body.get("data") or [])
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return items
            if query.get("after") == after:
                raise GraphError(what, 200, None, None, "paging cursor did not advance")
            query["after"] = after

    def _get(
        self, path: str, params: Mapping[str, str], what: str, business_id: str
    ) -> dict[str, Any]:
        endpoint = f"GET {path.rsplit('/', 1)[-1]}"  # business_invoices, campaigns
        budget = self.retry.start()  # throttled retries share max_retry_seconds with the rest
        while True:
            self.governor.before_call(business_id)
            response = self.http.request(
                "GET",
                path,
                operation=what,
                endpoint=endpoint,
                params=params,
                ok=GRAPH_ERROR_STATUSES,
            )
            with response:
                usage = parse_usage(response.headers.get(USAGE_HEADER), business_id)
                self.governor.observe(business_id, usage)
                try:
                    body = json.loads(response.text, parse_float=Decimal)
                except ValueError:
                    body = {"error": {"message": f"not JSON: {response.text[:100]!r}"}}
            if response.status_code == 200 and isinstance(body, dict) and "error" not in body:
                return body
            error = GraphError.from_body(what, response.status_code, body)
            if error.token_invalid:
                raise AuthorizationExpired(
                    f"Meta refused {KEY}.access_token (code 190"
                    f"{f'/{error.subcode}' if error.subcode else ''}: {redact(error.message)}). "
                    f"Generate a new system-user token in Business Settings and set "
                    f"{KEY}.access_token."
                )
            if not error.throttled:
                raise error
            self._wait_throttled(error, usage, budget, endpoint, business_id)

    def _wait_throttled(
        self,
        error: GraphError,
        usage: Usage | None,
        budget: RetryBudget,
        endpoint: str,
        business_id: str,
    ) -> None:
        """Throttled: wait what Meta estimates (the governor holds the retry that long,
        having seen the header), else back off; within the call's max_retry_seconds.

        A wait that would end past the budget is not started: the call fails now and the
        next run retries, instead of holding the run for nothing.
        """
        regain = usage.regain_seconds if usage is not None else 0.0
        held = self.governor.pause(business_id)  # before_call will sleep this long
        delay = budget.next_delay(held if held > 0 else None)
        if delay is None or regain > MAX_REGAIN_WAIT_SECONDS:
            CALLS.throttle("meta", endpoint)
            raise error
        CALLS.retry("meta", endpoint, throttled=True)
        LOGGER.log(
            budget.log_level,
            "%s; retry %d in %.2fs (%.0fs of max_retry_seconds=%g spent)",
            error,
            budget.attempts,
            delay,
            budget.elapsed,
            budget.policy.max_retry_seconds,
        )
        if held <= 0:
            self._sleep(delay)
