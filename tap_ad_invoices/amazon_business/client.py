"""Amazon Business API calls (Reconciliation v2021-01-08, Document API v2021-09-30).

API calls only: raw API objects in and out, no Singer concerns. Each operation
has its own client-side token bucket, started at Amazon's published usage plan
and then following the x-amzn-RateLimit-Limit header the API sends back.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tap_ad_invoices.documents import fetch_bounded
from tap_ad_invoices.errors import ApiError
from tap_ad_invoices.http import HttpClient, RetryPolicy
from tap_ad_invoices.lwa import LoginWithAmazon
from tap_ad_invoices.ratelimit import TokenBucket

from .config import AmazonBusinessSettings

LOGGER = logging.getLogger("tap_ad_invoices.amazon_business")

TRANSACTIONS_PATH = "/reconciliation/2021-01-08/transactions"
INVOICES_PATH = "/reconciliation/2021-01-08/invoices"
PAYMENT_DETAILS_PATH = "/reconciliation/2021-01-08/invoices/batch/paymentDetails"
MAX_INVOICES_PER_PAYMENT_CALL = 25  # getBatchInvoicePaymentDetails: 1 to 25 invoiceIds
REPORTS_PATH = "/reports/2021-09-30/reports"
DOCUMENTS_PATH = "/reports/2021-09-30/documents"
REPORT_TYPE = "GET_AB_INVOICE_PDF"
MAX_LINE_ITEMS_PER_CALL = 25  # getInvoiceDetailsByOrderLineItems answers 400 above

# Usage plans (rate per second, burst) from the API models. getReport's plan is
# not published; the SP-API Reports analogue (2/s, burst 15) is assumed.
USAGE_PLANS = {
    "getTransactions": (2.0, 10),
    "getInvoiceDetailsByOrderLineItems": (2.0, 10),
    "getBatchInvoicePaymentDetails": (2.0, 10),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReportDocument": (0.0167, 15),
}


def iso_utc(moment: dt.datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, as the API writes its own dates."""
    return (
        moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def amz_date(moment: dt.datetime | None = None) -> str:
    """The x-amz-date header: UTC, YYYYMMDDTHHMMSSZ, the moment the request is built."""
    moment = moment or dt.datetime.now(dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class AmazonBusinessClient:
    def __init__(
        self,
        settings: AmazonBusinessSettings,
        *,
        retry: RetryPolicy | None = None,
        user_agent: str = "tap-ad-invoices",
    ) -> None:
        self.settings = settings
        self.login = LoginWithAmazon.for_settings(settings, retry=retry)
        self.http = HttpClient(
            source="amazon_business",
            base_url=settings.api_url,
            headers=lambda: {
                "Accept": "application/json",
                "User-Agent": user_agent,
                # The onboarding guide lists x-amz-date with the access token; presigned
                # downloads never get it (they carry no Amazon headers at all).
                "x-amz-date": amz_date(),
            },
            token_source=self.login,
            bearer_header=("x-amz-access-token", "{token}"),
            # The Document API answers 403, not 401, for an expired access token.
            refresh_on=(401, 403),
            retry=retry,
        )
        # The paging form that works (see `transactions`), learnt once per run.
        self.page_with_dates = False
        self.buckets = {
            name: TokenBucket(rate, burst) for name, (rate, burst) in USAGE_PLANS.items()
        }

    # -- Reconciliation API ----------------------------------------------------------
    def transactions(
        self, feed_start: dt.datetime, feed_end: dt.datetime
    ) -> Iterator[dict[str, Any]]:
        """Every transaction whose feed date is in [feed_start, feed_end), page by page."""
        dates = {"feedStartDate": iso_utc(feed_start), "feedEndDate": iso_utc(feed_end)}
        params: dict[str, str] = dict(dates)
        tokens: set[str] = set()
        while True:
            body = self._transactions_page(params, dates)
            yield from body.get("transactions") or []
            token = body.get("nextPageToken")
            if not token:
                return
            if token in tokens:
                # A page answered with a token already followed would loop for ever.
                raise ApiError(f"getTransactions: nextPageToken {token!r} came back twice")
            tokens.add(token)
            # The parameter text says nextPageToken goes alone when paging, while the model
            # marks both dates required: the token alone until a 400 says otherwise.
            params = (
                {**dates, "nextPageToken": token}
                if self.page_with_dates
                else {"nextPageToken": token}
            )

    def _transactions_page(self, params: dict[str, str], dates: dict[str, str]) -> Any:
        try:
            return self._get_transactions(params)
        except ApiError as exc:
            if exc.status != 400 or set(params) != {"nextPageToken"}:
                raise
            LOGGER.info(
                "getTransactions refused nextPageToken alone (%s); sending it with "
                "feedStartDate and feedEndDate for the rest of this run",
                exc,
            )
            self.page_with_dates = True
            return self._get_transactions({**dates, **params})

    def _get_transactions(self, params: dict[str, str]) -> Any:
        return self.http.request_json(
            "GET",
            TRANSACTIONS_PATH,
            operation="getTransactions",
            bucket=self.buckets["getTransactions"],
            params=params,
        )

    def invoice_details(self, line_items: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
        """getInvoiceDetailsByOrderLineItems: at most 25 {orderId, orderLineItemId, shipmentId}."""
        if len(line_items) > MAX_LINE_ITEMS_PER_CALL:
            raise ValueError(f"at most {MAX_LINE_ITEMS_PER_CALL} line items per call")
        body = self.http.request_json(
            "POST",
            INVOICES_PATH,
            operation="getInvoiceDetailsByOrderLineItems",
            bucket=self.buckets["getInvoiceDetailsByOrderLineItems"],
            json={"orderLineItems": list(line_items)},
        )
        return list(body.get("invoiceDetailsByOrderLineItems") or [])

    def payment_details(self, invoice_ids: Sequence[str]) -> list[dict[str, Any]]:
        """getBatchInvoicePaymentDetails: {invoiceId, resultType, paymentDetails{status,
        dueDate}, error} of at most 25 invoices."""
        if not 1 <= len(invoice_ids) <= MAX_INVOICES_PER_PAYMENT_CALL:
            raise ValueError(f"1 to {MAX_INVOICES_PER_PAYMENT_CALL} invoice ids per call")
        body = self.http.request_json(
            "POST",
            PAYMENT_DETAILS_PATH,
            operation="getBatchInvoicePaymentDetails",
            bucket=self.buckets["getBatchInvoicePaymentDetails"],
            json={"invoiceIds": list(invoice_ids)},
        )
        return list(body.get("invoicePaymentDetailsResults") or [])

    # -- Document API -----------------------------------------------------------------
    def create_report(
        self,
        invoice_id: str,
        document_type: str,
        marketplace_id: str,
        *,
        report_options: Mapping[str, str] | None = None,
    ) -> str:
        """createReport of GET_AB_INVOICE_PDF: by invoiceId + documentType (NA) unless
        `report_options` name the document otherwise (by order in EU and JP)."""
        options = report_options or {"invoiceId": invoice_id, "documentType": document_type}
        body = self.http.request_json(
            "POST",
            REPORTS_PATH,
            operation="createReport",
            bucket=self.buckets["createReport"],
            json={
                "reportType": REPORT_TYPE,
                "marketplaceIds": [marketplace_id],
                "reportOptions": dict(options),
            },
        )
        return str(body["reportId"])

    def get_report(self, report_id: str) -> dict[str, Any]:
        return self._get_object(f"{REPORTS_PATH}/{report_id}", "getReport")

    def get_report_document(self, report_document_id: str) -> dict[str, Any]:
        return self._get_object(f"{DOCUMENTS_PATH}/{report_document_id}", "getReportDocument")

    def _get_object(self, path: str, operation: str) -> dict[str, Any]:
        """GET one API object, under the operation's own rate limit."""
        body = self.http.request_json(
            "GET", path, operation=operation, bucket=self.buckets[operation]
        )
        return dict(body)

    def download(self, url: str, max_bytes: int, what: str) -> bytes:
        """The presigned document, in memory, bounded by `max_bytes`, gzip/zip layers opened.

        No Amazon headers at all and no transparent decompression (authenticated=False);
        an expired link raises ApiError with status 403.
        """
        return fetch_bounded(self.http, url, max_bytes=max_bytes, what=what, authenticated=False)

    def rate(self, operation: str) -> float:
        return self.buckets[operation].rate

    def create_budget(self) -> str:
        """createReport tokens left now: what the next run can start at once."""
        bucket = self.buckets["createReport"]
        left = int(bucket.available())
        return f"{max(0, left)} of {bucket.burst}, one more every {1 / bucket.rate:.0f}s"
