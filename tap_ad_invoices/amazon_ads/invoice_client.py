"""Amazon Ads billing API calls: invoice summaries, billing documents, document downloads.

API calls only; what the answers mean for records lives in `invoice_conversion`.
Every call goes through the shared `HttpClient` (retries, Retry-After, 401 refresh)
with the access token of `AmazonAdsClient`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tap_ad_invoices.amazon_ads.client import AmazonAdsClient
from tap_ad_invoices.documents import fetch_bounded
from tap_ad_invoices.http import HttpClient

SUMMARIES_MEDIA_TYPE = "application/vnd.billingInvoiceSummary.v1+json"
DOCUMENTS_MEDIA_TYPE = "application/vnd.billingDocuments.v1+json"
PAGE_SIZE = 100  # the model's default and the most a page holds


def is_presigned(storage_path: str) -> bool:
    """A full URL is a presigned link (no credentials); a path is on the API host.

    Amazon does not say which `storagePath` is. Credentials go only where they came
    from: a full URL, even on the API's own host name, is fetched without them.
    """
    return storage_path.startswith(("http://", "https://"))


class InvoiceSummariesClient:
    def __init__(self, ads: AmazonAdsClient) -> None:
        self.ads = ads
        self.http = ads.http

    def _account_http(self, account_id: str) -> HttpClient:
        """A client whose every call names the global account (downloads from the API host)."""
        client_id = self.ads.settings.client_id
        return HttpClient(
            source="amazon_ads",
            base_url=self.http.base_url,
            headers=lambda: {
                "Amazon-Advertising-API-ClientId": client_id,
                "Amazon-Ads-AccountId": account_id,
            },
            token_source=self.ads.auth,
            retry=self.http.retry,
            session=self.http.session,
        )

    def invoice_summaries(
        self, account_id: str, start: dt.date, end: dt.date
    ) -> Iterator[Mapping[str, Any]]:
        """Every summary issued from `start` to `end` (inclusive), page after page."""
        next_token: str | None = None
        while True:
            body: dict[str, Any] = {
                "invoiceIssuedDateRangeFilter": {
                    "startDate": start.isoformat(),
                    "endDate": end.isoformat(),
                },
                "maxResults": PAGE_SIZE,
            }
            if next_token:
                body["nextToken"] = next_token
            page = self.http.request_json(
                "POST",
                "/invoiceSummaries/list",
                operation=f"POST /invoiceSummaries/list [{account_id}]",
                json=body,
                headers={
                    "Amazon-Ads-AccountId": account_id,
                    "Content-Type": SUMMARIES_MEDIA_TYPE,
                    "Accept": SUMMARIES_MEDIA_TYPE,
                },
            )
            yield from (page.get("aggregation") or {}).get("invoiceSummaries") or []
            next_token = page.get("nextToken")
            if not next_token:
                return

    def documents(
        self, account_id: str, document_id: str, doc_types: Sequence[str]
    ) -> Mapping[str, Any]:
        """`availableDocuments` and `unavailableDocuments` of one billing document number."""
        answer: Mapping[str, Any] = self.http.request_json(
            "GET",
            f"/billing/documents/{document_id}",
            operation=f"GET /billing/documents [{account_id} {document_id}]",
            params={"docType": list(doc_types)},  # an array: docType=INVOICE&docType=...
            headers={"Amazon-Ads-AccountId": account_id, "Accept": DOCUMENTS_MEDIA_TYPE},
        )
        return answer

    def download(self, account_id: str, storage_path: str, *, max_bytes: int, what: str) -> bytes:
        """A document's bytes: presigned links without credentials, API paths with them."""
        if is_presigned(storage_path):
            return fetch_bounded(
                self.http, storage_path, max_bytes=max_bytes, what=what, authenticated=False
            )
        return fetch_bounded(
            self._account_http(account_id),
            storage_path,
            max_bytes=max_bytes,
            what=what,
            authenticated=True,
        )
