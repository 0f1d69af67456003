"""Amazon Ads API calls: accounts, billing statements, statement downloads. Nothing else."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.errors import ApiError
from tap_ad_invoices.http import HttpClient, RetryPolicy, describe_error, json_body
from tap_ad_invoices.jobs import JobStatus, JobUpdate
from tap_ad_invoices.lwa import LoginWithAmazon
from tap_ad_invoices.redaction import redact

LOGGER = logging.getLogger("tap_ad_invoices.amazon_ads")

ACCOUNTS_MEDIA_TYPE = "application/vnd.listaccountsresource.v1+json"
_STATUS = {"IN_PROGRESS": JobStatus.PENDING, "SUCCESS": JobStatus.DONE, "FAILED": JobStatus.FAILED}
# Client errors we read ourselves: /adsAccounts/list writes {errors: [{errorCode,
# errorMessage}]}, a shape the shared HttpClient does not know (429 and 5xx stay its own).
_CLIENT_ERRORS = tuple(s for s in range(400, 500) if s != 429)
# A refusal of the request's form itself: the media type, or the dates' format. Only
# these make the other form worth a call; a bad account or locale fails as it is.
_ABOUT_THE_FORM = re.compile(
    r"(?<![a-z])date|startdate|enddate|yyyy|media.?type|content.?type", re.IGNORECASE
)


@dataclass(frozen=True)
class RequestForm:
    """How a statement request is written; the docs show two (api-facts, section 1)."""

    name: str  # "guide" or "model", as kept in state
    date_format: str  # the value of amazon_ads.statement_date_format that selects it
    content_type: str
    strftime: str

    def body_dates(self, request: StatementRequest) -> dict[str, str]:
        return {
            "startDate": request.start.strftime(self.strftime),
            "endDate": request.end.strftime(self.strftime),
        }


# The vendor guide's curl: application/json, 20231124.
GUIDE = RequestForm("guide", "YYYYMMDD", "application/json", "%Y%m%d")
# The OpenAPI model: its own media type, format: date (2023-11-24).
MODEL = RequestForm(
    "model", "YYYY-MM-DD", "application/vnd.createbillingstatementsrequest.v1+json", "%Y-%m-%d"
)
FORMS = {form.name: form for form in (GUIDE, MODEL)}
FORM_OF_SETTING = {form.date_format: form for form in (GUIDE, MODEL)}


@dataclass(frozen=True)
class StatementRequest:
    account_id: str
    start: dt.date
    end: dt.date

    def __str__(self) -> str:
        return f"billing statement {self.account_id} {self.start}..{self.end}"


@dataclass(frozen=True)
class AccountListing:
    """What POST /adsAccounts/list returned: the accounts to read and the others."""

    account_ids: list[str]
    skipped: list[tuple[str, str]]  # (account id, status) of accounts not CREATED


class StatementRefused(ApiError):
    """POST /billingStatements answered 4xx; `about_the_form` when the form was the reason."""

    def __init__(self, message: str, *, status: int, code: str | None, details: str) -> None:
        super().__init__(message, status=status, code=code)
        self.about_the_form = status == 415 or (
            status == 400 and bool(_ABOUT_THE_FORM.search(f"{code or ''} {details}"))
        )


class AmazonAdsClient:
    def __init__(
        self,
        settings: AmazonAdsSettings,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.auth = LoginWithAmazon.for_settings(settings, retry=retry)
        self.http = HttpClient(
            source="amazon_ads",
            base_url=settings.api_url,
            headers=lambda: {"Amazon-Advertising-API-ClientId": settings.client_id},
            token_source=self.auth,
            retry=retry,
        )
        self.auto = settings.statement_date_format == "auto"
        self.form = GUIDE if self.auto else FORM_OF_SETTING[settings.statement_date_format]
        self.form_accepted = False  # the API accepted `form` in this run

    def start_with(self, form_name: str | None) -> None:
        """With "auto": the form an earlier run saw accepted (from state), if none yet in this."""
        if self.auto and not self.form_accepted and form_name in FORMS:
            self.form = FORMS[form_name]

    def list_accounts(self) -> AccountListing:
        """Every global account the credentials reach on this host (POST /adsAccounts/list).

        Only CREATED accounts have billing statements; DISABLED, PENDING and
        PARTIALLY_CREATED ones are listed apart for the caller to name.
        """
        listing = AccountListing([], [])
        next_token: str | None = None
        while True:
            body: dict[str, object] = {"maxResults": 100}
            if next_token:
                body["nextToken"] = next_token
            response = self.http.request(
                "POST",
                "/adsAccounts/list",
                operation="adsAccounts/list",
                json=body,
                headers={"Content-Type": ACCOUNTS_MEDIA_TYPE, "Accept": ACCOUNTS_MEDIA_TYPE},
                ok=(200, *_CLIENT_ERRORS),
            )
            if response.status_code != 200:
                raise _accounts_error(response)
            page = json_body(response, "adsAccounts/list")
            for account in page.get("adsAccounts") or []:
                status = str(account.get("status") or "CREATED")
                if status == "CREATED":
                    listing.account_ids.append(account["adsAccountId"])
                else:
                    listing.skipped.append((account["adsAccountId"], status))
            next_token = page.get("nextToken")
            if not next_token:
                return listing

    def list_account_ids(self) -> list[str]:
        """The CREATED global accounts the credentials reach."""
        return self.list_accounts().account_ids

    def create_billing_statement(self, request: StatementRequest) -> str:
        """POST /billingStatements in the current form; the other once if the form is refused.

        With "auto", a refusal that names the form (415, or a 400 about the dates or
        the media type) is answered by the other form; a form that works is kept for
        the rest of the run, and by the caller in state, so later runs pay no refusal.
        """
        try:
            statement_id = self._create(request, self.form)
        except StatementRefused as refused:
            if not (self.auto and refused.about_the_form):
                raise
            other = MODEL if self.form is GUIDE else GUIDE
            try:
                statement_id = self._create(request, other)
            except StatementRefused as again:
                if again.about_the_form:
                    raise refused from None  # neither form: the first answer says why
                raise
            LOGGER.warning(
                "Amazon Ads: POST /billingStatements refused the %s's form (%s dates, %s): %s; "
                "the %s's form (%s dates, %s) was accepted and is kept in state for later runs",
                self.form.name,
                self.form.date_format,
                self.form.content_type,
                refused,
                other.name,
                other.date_format,
                other.content_type,
            )
            self.form = other
        self.form_accepted = True
        return statement_id

    def _create(self, request: StatementRequest, form: RequestForm) -> str:
        body: dict[str, object] = {
            "locale": self.settings.locale,
            "format": "CSV",
            **form.body_dates(request),
        }
        if self.settings.country_codes:
            body["countryCodes"] = list(self.settings.country_codes)
        operation = f"POST /billingStatements [{request.account_id}]"
        headers = {"Amazon-Ads-AccountId": request.account_id, "Content-Type": form.content_type}
        if form is MODEL:
            headers["Accept"] = form.content_type
        response = self.http.request(
            "POST",
            "/billingStatements",
            operation=operation,
            data=json.dumps(body),
            headers=headers,
            ok=(200, 201, 202, *_CLIENT_ERRORS),
        )
        if response.status_code >= 400:
            code, details = describe_error(response)
            raise StatementRefused(
                redact(f"{operation} failed: HTTP {response.status_code} {code or ''} {details}"),
                status=response.status_code,
                code=code,
                details=details,
            )
        answer = json_body(response, operation)
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


def _accounts_error(response: requests.Response) -> ApiError:
    """/adsAccounts/list's own error shape, {errors: [{errorCode, errorId, errorMessage}]}."""
    code, details = describe_error(response)
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        code = first.get("errorCode") or code
        details = (
            "; ".join(str(e.get("errorMessage") or "") for e in errors if isinstance(e, dict))
            or details
        )
        if first.get("errorId"):
            details += f" (errorId {first['errorId']})"
    return ApiError(
        redact(f"adsAccounts/list failed: HTTP {response.status_code} {code or ''} {details}"),
        status=response.status_code,
        code=str(code) if code else None,
    )
