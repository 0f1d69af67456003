"""The google_ads_invoices stream: fan-out over customers, billing setups and issue months.

Calls run on a thread pool of `max_workers`; records are emitted from the
main thread, in (customer, billing setup, month) order, so output and dedupe
are deterministic however the calls finish. State keeps, per billing setup
(which names its customer), the last issue month fully synced; each run starts
`lookback_months` before it, because credit memos and rebills arrive late.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tap_ad_invoices.documents import (
    DocumentSettings,
    DocumentStore,
    StoredDocument,
    pdf_fields,
    remember,
    unwrap_pdf,
)
from tap_ad_invoices.errors import FailureLedger, item_errors
from tap_ad_invoices.google_ads.config import GoogleAdsSettings
from tap_ad_invoices.google_ads.conversion import invoice_record, invoice_schema, to_invoice
from tap_ad_invoices.invoices import FeedsInvoices
from tap_ad_invoices.settings import retry_policy, sync_range
from tap_ad_invoices.windows import add_months

if TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_ad_invoices.google_ads.client import BillingSetup, GoogleAdsApi

STREAM_NAME = "google_ads_invoices"
BOOKMARKS_KEY = "billing_setups"  # not "partitions": the SDK owns that key
# invoice id -> the stored PDF: a look-back re-read does not download it again.
DOCUMENTS_KEY = "documents"
FIRST_ISSUE_MONTH = dt.date(2019, 1, 1)  # ListInvoices: YEAR_MONTH_TOO_OLD before 2019
# The billing setup cannot have invoices: skip it with one warning, not a failure.
SKIP_CODES = (
    "NOT_INVOICED_CUSTOMER",
    "BILLING_SETUP_NOT_ON_MONTHLY_INVOICING",
    "NON_SERVING_CUSTOMER",
)


def is_skippable(error: BaseException | None) -> bool:
    from tap_ad_invoices.google_ads.client import AdsError

    return isinstance(error, AdsError) and error.has(*SKIP_CODES)


def month_start(value: dt.datetime | dt.date) -> dt.date:
    return dt.date(value.year, value.month, 1)


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    months = []
    while first <= last:
        months.append(first)
        first = add_months(first, 1)
    return months


@dataclass
class Partition:
    setup: BillingSetup
    months: list[dt.date]
    calls: list[Future[list[Any]]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"customer {self.setup.customer_id}, {self.setup.resource_name}"


class GoogleAdsInvoicesStream(FeedsInvoices):
    name = STREAM_NAME
    primary_keys = ("id",)  # type: ignore[assignment]
    # Declared incremental (see BOOKMARKS_KEY for the real per-setup bookmarks), so a
    # look-back re-read is never taken for the whole table.
    replication_key = "issue_month"
    is_sorted = False

    def __init__(self, tap: Tap, settings: GoogleAdsSettings) -> None:
        super().__init__(tap=tap, name=STREAM_NAME, schema=invoice_schema())
        self.settings = settings
        self.documents = DocumentSettings.from_config(tap.config)
        self._store = DocumentStore(self.documents)
        self._pdf_lock = threading.Lock()
        self._pdf_claimed: set[str] = set()  # one download per invoice id, whichever customer
        self._pdfs: dict[str, Future[StoredDocument]] = {}  # until the record is written
        self._documents: dict[str, Any] = {}  # state's record of stored PDFs, updated in order
        self._known_pdfs: dict[str, Any] = {}  # its copy at the start, read by worker threads
        self.reused_pdfs = 0

    def to_invoices(self, record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        return [to_invoice(record)]

    @property
    def failures(self) -> FailureLedger:
        return self._tap.failures  # type: ignore[attr-defined, no-any-return]

    # -- months -----------------------------------------------------------------------------
    def _months(self, setup: BillingSetup, bookmarks: dict[str, Any]) -> list[dt.date]:
        start, end = sync_range(self.config)
        now = dt.datetime.now(dt.timezone.utc)
        first = max(month_start(start), FIRST_ISSUE_MONTH)
        last = month_start(min(end, now))  # a month not yet begun has no invoice
        synced = (bookmarks.get(setup.resource_name) or {}).get("last_issue_month")
        if synced:
            resume = add_months(
                dt.date.fromisoformat(f"{synced}-01"), -self.settings.lookback_months
            )
            first = max(first, resume)
        return months_between(first, last)

    # -- sync -------------------------------------------------------------------------------
    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        state = self.get_context_state(context)
        bookmarks: dict[str, Any] = state.setdefault(BOOKMARKS_KEY, {})
        documents: dict[str, Any] = state.setdefault(DOCUMENTS_KEY, {})
        self._documents, self._known_pdfs = documents, dict(documents)
        # Imported only to sync: the google-ads client costs ~1 s of start-up.
        from tap_ad_invoices.google_ads.client import GoogleAdsApi

        api = GoogleAdsApi(self.settings, retry=retry_policy(self.config))
        workers = int(self.config.get("max_workers") or 4)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google-ads")
        pdf_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google-ads-pdf")
        try:
            yield from self._sync(api, pool, pdf_pool, bookmarks)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            pdf_pool.shutdown(wait=True, cancel_futures=True)
        if self.reused_pdfs:
            self.logger.info(
                "Google Ads: %d PDF(s) already stored by an earlier run, not downloaded again",
                self.reused_pdfs,
            )
        self._forget_documents_before_the_lookback(documents)

    def _forget_documents_before_the_lookback(self, documents: dict[str, Any]) -> None:
        """State keeps only the PDFs a later run's look-back can re-read."""
        _, end = sync_range(self.config)
        oldest = f"{add_months(month_start(end), -self.settings.lookback_months):%Y-%m}"
        for invoice_id in [i for i, d in documents.items() if d["issue_month"] < oldest]:
            del documents[invoice_id]

    def _customers(self, api: GoogleAdsApi) -> list[str]:
        if self.settings.customer_ids:
            return list(self.settings.customer_ids)
        customers = api.serving_customers()
        self.logger.info(
            "Manager %s: %d enabled serving account(s)",
            self.settings.login_customer_id,
            len(customers),
        )
        return customers

    def _sync(
        self,
        api: GoogleAdsApi,
        pool: ThreadPoolExecutor,
        pdf_pool: ThreadPoolExecutor,
        bookmarks: dict[str, Any],
    ) -> Iterator[dict[str, Any]]:
        manager = f"manager {self.settings.login_customer_id}"
        with self.failures.unit(self.name, manager, self.logger) as discovery:
            customers = self._customers(api)
        if discovery.failed:
            return
        setup_calls = [(c, pool.submit(api.billing_setups, c)) for c in customers]
        partitions: list[Partition] = []
        for customer, call in setup_calls:
            with self.failures.unit(self.name, f"customer {customer}", self.logger) as lookup:
                setups = call.result()
            if lookup.failed:
                continue
            if not setups:
                self.logger.warning("Customer %s has no approved billing setup: skipped", customer)
            partitions += [Partition(s, self._months(s, bookmarks)) for s in setups]

        # Every ListInvoices call goes to the pool now; results are consumed in order below.
        for partition in partitions:
            partition.calls = [
                pool.submit(self._fetch, api, pdf_pool, partition.setup, month)
                for month in partition.months
            ]
        seen: set[str] = set()
        for partition in partitions:
            yield from self._emit(partition, seen, bookmarks)

    def _fetch(
        self, api: GoogleAdsApi, pdf_pool: ThreadPoolExecutor, setup: BillingSetup, month: dt.date
    ) -> list[Any]:
        invoices = api.list_invoices(setup, month.year, month.month)
        if self.settings.download_pdfs:
            with self._pdf_lock:
                for invoice in invoices:
                    if invoice.id not in self._pdf_claimed and invoice.pdf_url:
                        self._pdf_claimed.add(invoice.id)
                        self._pdfs[invoice.id] = self._stored_or_download(
                            api, pdf_pool, invoice.id, invoice.pdf_url, invoice.payments_account_id
                        )
        return invoices

    def _stored_or_download(
        self, api: GoogleAdsApi, pool: ThreadPoolExecutor, invoice_id: str, url: str, account: str
    ) -> Future[StoredDocument]:
        # An issued invoice's PDF does not change (corrections are new invoices or credit
        # memos), so one stored by an earlier run is reused while its file is in place.
        stored = self._store.already_stored(
            self._known_pdfs.get(invoice_id), source="google_ads", account=account, name=invoice_id
        )
        if stored is None:
            return pool.submit(self._download, api, invoice_id, url, account)
        self.reused_pdfs += 1
        reused: Future[StoredDocument] = Future()
        reused.set_result(stored)
        return reused

    def _download(
        self, api: GoogleAdsApi, invoice_id: str, url: str, account: str
    ) -> StoredDocument:
        what = f"PDF of invoice {invoice_id}"
        data = api.download_pdf(url, self.documents.max_bytes, what)
        pdf = unwrap_pdf(data, self.documents.max_bytes, what)
        return self._store.store(pdf, source="google_ads", account=account, name=invoice_id)

    def _emit(
        self, partition: Partition, seen: set[str], bookmarks: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        complete = True
        for month, call in zip(partition.months, partition.calls, strict=True):
            item = f"{partition.label}, issue month {month:%Y-%m}"
            with item_errors(self.logger, item) as month_call:
                records = self._month_records(partition, month, call.result(), seen)
            if month_call.failed:
                for pending in partition.calls:
                    pending.cancel()
                error = month_call.error
                if is_skippable(error):
                    # No bookmark: if the setup moves to monthly invoicing, its history counts.
                    self.logger.warning("Skipped %s: %s", partition.label, error)
                else:
                    self.failures.record(self.name, item, month_call.reason, self.logger)
                complete = False
                break
            for record in records:
                if self.settings.download_pdfs and record.get("pdf_url"):
                    complete &= self._attach_pdf(record, partition)
                yield record
        if complete and partition.months:
            bookmarks[partition.setup.resource_name] = {
                "last_issue_month": f"{partition.months[-1]:%Y-%m}"
            }

    def _month_records(
        self, partition: Partition, month: dt.date, invoices: list[Any], seen: set[str]
    ) -> list[dict[str, Any]]:
        """The month's new invoices as records; converted whole, so a bad one fails the month."""
        records: dict[str, dict[str, Any]] = {}
        for invoice in invoices:
            if invoice.id in seen or invoice.id in records:
                continue  # consolidated billing: already emitted for another customer
            records[invoice.id] = invoice_record(
                invoice,
                customer_id=partition.setup.customer_id,
                login_customer_id=self.settings.login_customer_id,
                issue_month=f"{month:%Y-%m}",
            )
        seen.update(records)
        return list(records.values())

    def _attach_pdf(self, record: dict[str, Any], partition: Partition) -> bool:
        with self._pdf_lock:
            download = self._pdfs.pop(record["id"])
        # One document fails alone; the record still goes out, without it.
        item = f"{partition.label}, invoice {record['id']}"
        with self.failures.unit(self.name, item, self.logger) as fetched:
            document = download.result()
        if fetched.failed:
            return False
        record.update(pdf_fields(document))
        self._documents[record["id"]] = {**remember(document), "issue_month": record["issue_month"]}
        return True
