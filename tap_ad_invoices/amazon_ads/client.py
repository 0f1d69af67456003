"""Amazon Ads API calls: accounts, billing statements, statement downloads. Nothing else."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.errors import ApiError
from tap_ad_invoices.http import HttpClient, RetryPolicy
from tap_ad_invoices.jobs import JobStatus, JobUpdate
from tap_ad_invoices.lwa import LoginWithAmazon

LOGGER = logging.getLogger("tap_ad_invoices.amazon_ads")

ACCOUNTS_MEDIA_TYPE = "application/vnd.listaccountsresource.v1+json"
_STATUS = {"IN_PROGRESS": JobStatus.PENDING, "SUCCESS": JobStatus.DONE, "FAILED": JobStatus.FAILED}
_PY_FORMAT = {"YYYYMMDD": "%Y%m%d", "YYYY-MM-DD": "%Y-%m-%d"}


@dataclass(frozen=True)
class StatementRequest:
    account_id: str
    start: dt.date
    end: dt.date

    def __str__(self) -> str:
        return f"billing statement {self.account_id} {self.start}..{self.end}"


class AmazonAdsClient:
    def __init__(self, settings: AmazonAdsSettings, *, retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self.auth = LoginWithAmazon(
            token_url=settings.token_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            refresh_token=settings.refresh_token,
            settings_prefix="amazon_ads",
            retry=retry,
        )
        self.http = HttpClient(
            source="amazon_ads",
            base_url=settings.api_url,
            headers=lambda: {"Amazon-Advertising-API-ClientId": settings.client_id},
            token_source=self.auth,
            retry=retry,
        )
        # "auto" starts with the guide's YYYYMMDD and falls back once (see config.DATE_FORMATS).
        self._date_format = (
            "YYYYMMDD"
            if settings.statement_date_format == "auto"
            else settings.statement_date_format
        )

    def list_account_ids(self) -> list[str]:
        """Every global account the credentials reach (POST /adsAccounts/list, paged)."""
        ids: list[str] = []
        next_token: str | None = None
        while True:
            body: dict[str, object] = {"maxResults": 100}
            if next_token:
                body["nextToken"] = next_token
            page = self.http.request_json(
                "POST",
                "/adsAccounts/list",
                operation="adsAccounts/list",
                json=body,
                headers={"Content-Type": ACCOUNTS_MEDIA_TYPE, "Accept": ACCOUNTS_MEDIA_TYPE},
            )
            ids += [a["adsAccountId"] for a in page.get("adsAccounts", [])]
            next_token = page.get("nextToken")
            if not next_token:
                return ids

    def create_billing_statement(self, request: StatementRequest) -> str:
        try:
            return self._create(request, self._date_format)
        except ApiError as exc:
            if not (exc.status == 400 and self.settings.statement_date_format == "auto"):
                raise
            other = "YYYY-MM-DD" if self._date_format == "YYYYMMDD" else "YYYYMMDD"
            statement_id = self._create(request, other)
            LOGGER.warning(
                "POST /billingStatements refused %s dates (%s) and accepted %s: using %s for "
                "the rest of the run; set amazon_ads.statement_date_format to %s to skip the probe",
                self._date_format,
                exc,
                other,
                other,
                other,
            )
            self._date_format = other
            return statement_id

    def _create(self, request: StatementRequest, date_format: str) -> str:
        py_format = _PY_FORMAT[date_format]
        body: dict[str, object] = {
            "locale": self.settings.locale,
            "format": "CSV",
            "startDate": request.start.strftime(py_format),
            "endDate": request.end.strftime(py_format),
        }
        if self.settings.country_codes:
            body["countryCodes"] = list(self.settings.country_codes)
        answer = self.http.request_json(
            "POST",
            "/billingStatements",
            operation=f"POST /billingStatements [{request.account_id}]",
            json=body,
            headers={"Amazon-Ads-AccountId": request.account_id},
        )
        # The OpenAPI model says billingStatementRequestId, the guide's sample billingStatementId.
        statement_id = answer.get("billingStatementRequestId") or answer.get("billingStatementId")
        if not statement_id:
            raise ApiError(
                f"POST /billingStatements [{request.account_id}] answered without an id: "
                f"{answer.get('details', '')}"
            )
        return str(statement_id)

    def get_billing_statement(self, request: StatementRequest, statement_id: str) -> JobUpdate:
        answer = self.http.request_json(
            "GET",
            f"/billingStatements/{statement_id}",
            operation=f"GET /billingStatements [{request.account_id}]",
            headers={"Amazon-Ads-AccountId": request.account_id},
        )
        status = _STATUS.get(str(answer.get("reportStatus")))
        if status is None:
            raise ApiError(f"unexpected reportStatus {answer.get('reportStatus')!r}")
        return JobUpdate(status, answer.get("s3DownloadLink"), str(answer.get("details") or ""))

    @contextmanager
    def open_download(self, url: str, what: str) -> Iterator[Iterator[bytes]]:
        """The statement's raw bytes as they arrive: no Amazon auth headers, no auto-gunzip.

        S3 objects may carry Content-Encoding: gzip; decoding is left to the
        caller's sniffing so a gzip file is never inflated twice.
        """
        response = self.http.request(
            "GET", url, operation=f"download {what}", authenticated=False, stream=True
        )
        try:
            yield response.raw.stream(1 << 16, decode_content=False)
        finally:
            response.close()
