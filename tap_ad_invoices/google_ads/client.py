"""Google Ads API calls, through the official google-ads client (gRPC), and nothing else.

Every attempt is counted in the shared `CALLS` under its gRPC method ("Search",
"ListInvoices") and every token refresh as "token" (google-auth's own session, not
the shared HttpClient): quota is what a daily run must not waste (Explorer access:
2,880 operations a day).

Errors come back as a GoogleAdsFailure in the trailing metadata. The client
turns most of them into GoogleAdsException, but passes INTERNAL and
RESOURCE_EXHAUSTED through as plain gRPC errors, so `AdsError.from_exception`
reads the failure from the metadata itself. Quota errors carry the wait Google
wants in `quota_error_details.retry_delay`; we honour it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import requests
from google.ads.googleads.client import GoogleAdsClient
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.v26.errors.types import errors as ads_errors
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2.credentials import Credentials

from tap_ad_invoices.calls import CALLS
from tap_ad_invoices.documents import fetch_bounded
from tap_ad_invoices.errors import ApiError, AuthorizationExpired
from tap_ad_invoices.google_ads.config import KEY, GoogleAdsSettings
from tap_ad_invoices.http import (
    HOSTS,
    HostHealth,
    HttpClient,
    RetryPolicy,
    host_of,
    is_refused_connection,
)
from tap_ad_invoices.redaction import redact, register_secret

API_VERSION = "v26"
SCOPE = "https://www.googleapis.com/auth/adwords"
FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"
MONTHS = (
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
)
# Transient on Google's side: retry with backoff.
TRANSIENT_STATUSES = {"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
# Quota errors that pass with time; RESOURCE_EXHAUSTED without a retry_delay is the daily
# operations limit (Google staff: no retry-after for it), which waiting seconds won't fix.
TEMPORARY_QUOTA = {
    "RESOURCE_TEMPORARILY_EXHAUSTED",
    "EXCESSIVE_SHORT_TERM_QUERY_RESOURCE_CONSUMPTION",
}
MAX_RETRY_DELAY_SECONDS = 600.0
# Discovery reads the accounts that stopped serving too: Google still lists the final
# invoices of CANCELED, SUSPENDED and CLOSED accounts (later months answer
# NON_SERVING_CUSTOMER), and customer_client says nothing of when an account stopped.
DISCOVERED_STATUSES = ("ENABLED", "CANCELED", "SUSPENDED", "CLOSED")
REAUTHORISE = (
    "Create a new refresh token for the OAuth client {prefix}.client_id (scope {scope}) and set "
    "{prefix}.refresh_token. Refresh tokens of OAuth apps whose consent screen is in 'Testing' "
    "status expire after 7 days: publish the app ('In production') to keep them."
)

LOGGER = logging.getLogger("tap_ad_invoices.google_ads")
# The library logs every failed call with its payload at WARNING; our own lines say enough.
logging.getLogger("google.ads.googleads.client").setLevel(logging.ERROR)

T = TypeVar("T")


@dataclass(frozen=True)
class Customer:
    customer_id: str
    status: str | None  # CustomerStatus (ENABLED, CANCELED...); None: listed in customer_ids

    @property
    def serving(self) -> bool:
        return self.status in (None, "ENABLED")


@dataclass(frozen=True)
class BillingSetup:
    customer_id: str
    resource_name: str
    payments_account_id: str


@dataclass(eq=False)
class AdsError(Exception):
    """One failed call: the gRPC status, the error codes ("invoice_error.NOT_INVOICED_CUSTOMER")."""

    status: str
    codes: list[str] = field(default_factory=list)
    message: str = ""
    request_id: str | None = None
    retry_delay: float | None = None

    def __str__(self) -> str:
        codes = ", ".join(self.codes) or self.status
        request = f" (request-id {self.request_id})" if self.request_id else ""
        return redact(f"{codes}: {self.message}{request}")

    def has(self, *names: str) -> bool:
        return any(code.split(".", 1)[-1] in names for code in self.codes)

    def of_kind(self, kind: str) -> bool:
        return any(code.startswith(f"{kind}.") for code in self.codes)

    @property
    def unauthenticated(self) -> bool:
        return self.status == "UNAUTHENTICATED" or self.of_kind("authentication_error")

    @property
    def retryable_quota(self) -> bool:
        quota = self.status == "RESOURCE_EXHAUSTED" or self.of_kind("quota_error")
        return quota and (self.retry_delay is not None or self.has(*TEMPORARY_QUOTA))

    @property
    def refused_connection(self) -> bool:
        """gRPC could not connect at all (refused, DNS, network down), as opposed to an
        answer or a connection dropped mid-call."""
        return self.status == "UNAVAILABLE" and "failed to connect" in self.message.lower()

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT_STATUSES or self.of_kind("internal_error")

    @classmethod
    def from_exception(cls, exc: BaseException) -> AdsError | None:
        call: Any = None
        if isinstance(exc, GoogleAdsException):
            call = exc.error
        elif isinstance(exc, api_exceptions.GoogleAPICallError):
            call = exc.response if isinstance(exc.response, grpc.Call) else None
            if call is None and exc.errors and isinstance(exc.errors[0], grpc.Call):
                call = exc.errors[0]
        elif isinstance(exc, grpc.RpcError):
            call = exc
        if call is None:
            return None
        status = call.code().name if call.code() else "UNKNOWN"
        details = call.details() or ""
        failure = None
        request_id = None
        for key, value in call.trailing_metadata() or ():
            if key == FAILURE_KEY:
                failure = ads_errors.GoogleAdsFailure.deserialize(value)
            elif key == "request-id":
                request_id = value
        error = cls(status=status, message=details, request_id=request_id)
        if failure is not None:
            for item in failure.errors:
                pb = ads_errors.ErrorCode.pb(item.error_code)
                kind = pb.WhichOneof("error_code")
                if kind:
                    value = getattr(pb, kind)
                    enum = pb.DESCRIPTOR.fields_by_name[kind].enum_type
                    name = enum.values_by_number[value].name if enum else str(value)
                    error.codes.append(f"{kind}.{name}")
                if item.details and item.details.quota_error_details.retry_delay:
                    delay = item.details.quota_error_details.retry_delay
                    error.retry_delay = delay.total_seconds()
            if failure.errors:
                error.message = failure.errors[0].message
        if "invalid_grant" in details:  # the refresh inside the gRPC auth plugin failed
            error.status = "UNAUTHENTICATED"
        return error


class GoogleAdsApi:
    """InvoiceService and GoogleAdsService for one OAuth client; safe to share between threads."""

    def __init__(
        self,
        settings: GoogleAdsSettings,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        hosts: HostHealth | None = None,
    ) -> None:
        self.settings = settings
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._hosts = hosts or HOSTS
        self._lock = threading.Lock()
        # A refresh token Google refused stays refused for the run: remembered, not re-asked.
        self._refused: AuthorizationExpired | None = None
        if settings.root_certificates_file:
            # gRPC reads its trusted roots from this variable, once per process;
            # google-ads offers no parameter.
            os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = settings.root_certificates_file
        self.credentials = Credentials(
            token=None,
            refresh_token=settings.refresh_token,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            token_uri=settings.token_uri,
            scopes=[SCOPE],
        )
        self._session = requests.Session()
        self.access_token()  # fail fast, with one line, when the refresh token is dead
        self.client = GoogleAdsClient(
            credentials=self.credentials,
            developer_token=settings.developer_token,
            endpoint=settings.endpoint,
            login_customer_id=settings.login_customer_id,
            version=API_VERSION,
            use_proto_plus=True,
        )
        self._google_ads = self.client.get_service("GoogleAdsService")
        self._invoices = self.client.get_service("InvoiceService")
        self._month_enum = self.client.enums.MonthOfYearEnum
        self.pdf_http = HttpClient(
            source=KEY,
            base_url="",
            token_source=self,
            retry=self.retry,
            sleep=sleep,
            hosts=self._hosts,
        )

    # -- OAuth ------------------------------------------------------------------------------
    def access_token(self) -> str:
        with self._lock:
            if self._refused is not None:
                raise AuthorizationExpired(str(self._refused))
            if not self.credentials.valid:
                self._refresh()
            token = self.credentials.token
            assert token is not None
            register_secret(token)
            return str(token)

    def _refresh(self) -> None:
        """A new access token; a token endpoint that fails is "cannot reach", never "re-authorise".

        google-auth retries 429/5xx of the token endpoint itself (marking what is left
        `retryable`); a host that refuses connections is counted in the shared `HostHealth`.
        """
        host = host_of(self.settings.token_uri)
        self._hosts.check(host)
        # One count per refresh: google-auth's own retries of the endpoint are not visible.
        CALLS.call(KEY, "token")
        try:
            self.credentials.refresh(AuthRequest(self._session))
        except auth_exceptions.RefreshError as exc:
            if exc.retryable:
                # google-auth already retried it: no other item should wait for it again.
                why = f"the Google token endpoint kept failing: {_first_line(exc)}"
                raise self._hosts.give_up(host, redact(why)) from None
            self._refused = AuthorizationExpired(
                redact(f"Google refused {KEY}.refresh_token ({_first_line(exc)}). ")
                + REAUTHORISE.format(prefix=KEY, scope=SCOPE)
            )
            raise self._refused from None
        except auth_exceptions.TransportError as exc:
            if is_refused_connection(exc.__cause__ or exc):
                self._hosts.refused(host)  # raises HostUnreachable once the host is given up
            raise ApiError(f"cannot reach {host}: {type(exc.__cause__ or exc).__name__}") from None
        self._hosts.answered(host)

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self.credentials.token == token:
                self.credentials.token = None

    # -- calls ------------------------------------------------------------------------------
    def call(self, method: str, what: str, function: Callable[[], T]) -> T:
        """One logical call of the gRPC `method`: quota waits as Google says, transient
        errors back off, within `max_retry_seconds`; a rejected access token is refreshed
        once. Every attempt counts in `CALLS` (the quota counts it)."""
        budget = self.retry.start()
        refreshed = False
        endpoint = self.settings.endpoint
        while True:
            self._hosts.check(endpoint)
            token = self.access_token()
            CALLS.call(KEY, method)
            try:
                result = function()
                self._hosts.answered(endpoint)
                return result
            except (GoogleAdsException, grpc.RpcError, api_exceptions.GoogleAPICallError) as exc:
                error = AdsError.from_exception(exc)
                if error is None:
                    raise
            if error.refused_connection:
                self._hosts.refused(endpoint)  # raises HostUnreachable once given up
            if error.unauthenticated and not refreshed:
                # Access tokens die before their announced expiry (revoked, rotated): the
                # next access_token() fetches a new one, or says why it cannot.
                LOGGER.info("%s: %s, refreshing the access token once", what, error.status)
                self.invalidate(token)
                refreshed = True
                CALLS.retry(KEY, method)
                continue
            if error.unauthenticated:
                raise AuthorizationExpired(
                    f"Google Ads rejected the credentials for {what}: {error}. "
                    + REAUTHORISE.format(prefix=KEY, scope=SCOPE)
                )
            if not (error.retryable_quota or error.transient):
                raise error
            wait = None
            if error.retry_delay is not None:
                wait = min(error.retry_delay, MAX_RETRY_DELAY_SECONDS)
            delay = budget.next_delay(wait)
            if delay is None:
                raise error
            CALLS.retry(KEY, method, throttled=error.retryable_quota)
            LOGGER.log(
                budget.log_level,
                "%s: %s; retry %d in %.2fs (%.0fs of max_retry_seconds=%g spent)",
                what,
                error,
                budget.attempts,
                delay,
                budget.elapsed,
                self.retry.max_retry_seconds,
            )
            self._sleep(delay)

    def customers(self) -> list[Customer]:
        """Non-manager accounts under login_customer_id, at every level: the serving ones
        and those that stopped serving (their final invoices)."""
        manager = self.settings.login_customer_id
        assert manager is not None
        statuses = ", ".join(f"'{status}'" for status in DISCOVERED_STATUSES)
        query = (
            "SELECT customer_client.id, customer_client.manager, customer_client.status, "
            "customer_client.descriptive_name FROM customer_client "
            f"WHERE customer_client.status IN ({statuses}) AND customer_client.manager = FALSE"
        )
        rows = self.call(
            "Search",
            f"customer_client query of manager {manager}",
            lambda: list(self._google_ads.search(customer_id=manager, query=query)),
        )
        found = {str(row.customer_client.id): row.customer_client.status.name for row in rows}
        return [Customer(customer_id, found[customer_id]) for customer_id in sorted(found)]

    def serving_customers(self) -> list[str]:
        """The customers() that serve today (the connection test reports them)."""
        return [customer.customer_id for customer in self.customers() if customer.serving]

    def billing_setups(self, customer_id: str) -> list[BillingSetup]:
        query = (
            "SELECT billing_setup.id, billing_setup.status, billing_setup.payments_account, "
            "billing_setup.payments_account_info.payments_account_id, "
            "billing_setup.payments_account_info.payments_profile_id "
            "FROM billing_setup WHERE billing_setup.status = 'APPROVED'"
        )
        rows = self.call(
            "Search",
            f"billing_setup query of customer {customer_id}",
            lambda: list(self._google_ads.search(customer_id=customer_id, query=query)),
        )
        return sorted(
            (
                BillingSetup(
                    customer_id,
                    row.billing_setup.resource_name,
                    row.billing_setup.payments_account_info.payments_account_id,
                )
                for row in rows
            ),
            key=lambda setup: setup.resource_name,
        )

    def list_invoices(self, setup: BillingSetup, year: int, month: int) -> list[Any]:
        """ListInvoices for one issue month; raw protobuf Invoice messages (no pagination)."""
        request = {
            "customer_id": setup.customer_id,
            "billing_setup": setup.resource_name,
            "issue_year": str(year),
            "issue_month": getattr(self._month_enum, MONTHS[month - 1]),
            "include_granular_level_invoice_details": self.settings.include_granular_details,
        }
        response = self.call(
            "ListInvoices",
            f"ListInvoices {setup.resource_name} {year}-{month:02d}",
            lambda: self._invoices.list_invoices(request=request),
        )
        return [type(invoice).pb(invoice) for invoice in response.invoices]

    def download_pdf(self, url: str, max_bytes: int, what: str) -> bytes:
        """The invoice PDF, fetched with the OAuth bearer token, never more than max_bytes."""
        return fetch_bounded(self.pdf_http, url, max_bytes=max_bytes, what=what, authenticated=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return " ".join(text.split())[:300]
