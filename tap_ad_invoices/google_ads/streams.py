"""The google_ads_invoices stream: fan-out over customers, billing setups and issue months.

Calls run on a thread pool of `max_workers`; records are emitted from the
main thread, in (customer, billing setup, month) order, so output and dedupe
are deterministic however the calls finish.

Quota is the scarce resource (Explorer access: 2,880 operations a day), and every
issue month of every billing setup is one ListInvoices call. So state keeps, per
billing setup (which names its customer), what spares calls on the next run (`SetupState`):
the last closed issue month asked successfully, whatever it held (a month with no
invoice is synced too), and what Google said of a setup that has no invoices to give
(card-paid, not invoiced, stopped serving) with the month it said it, so that it is
asked once a month, not once per month since start_date on every run.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tap_ad_invoices.documents import (
    DocumentSettings,
    DocumentStore,
    KnownDocuments,
    StoredDocument,
    pdf_fields,
    unwrap_pdf,
)
from tap_ad_invoices.errors import Caught, FailureLedger, item_errors
from tap_ad_invoices.google_ads.config import GoogleAdsSettings
from tap_ad_invoices.google_ads.conversion import invoice_record, invoice_schema, to_invoice
from tap_ad_invoices.invoices import FeedsInvoices
from tap_ad_invoices.settings import retry_policy, sync_range
from tap_ad_invoices.windows import add_months

if TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_ad_invoices.google_ads.client import BillingSetup, Customer, GoogleAdsApi

STREAM_NAME = "google_ads_invoices"
BOOKMARKS_KEY = "billing_setups"  # not "partitions": the SDK owns that key
# invoice id -> the stored PDF: a look-back re-read does not download it again.
DOCUMENTS_KEY = "documents"
FIRST_ISSUE_MONTH = dt.date(2019, 1, 1)  # ListInvoices: YEAR_MONTH_TOO_OLD before 2019
# The billing setup cannot have invoices (paid by card, or not invoiced at all): skipped
# with one warning, remembered, and asked again (one call) in a later issue month only.
NOT_INVOICED_CODES = ("NOT_INVOICED_CUSTOMER", "BILLING_SETUP_NOT_ON_MONTHLY_INVOICING")
# The customer stopped serving (CANCELED, SUSPENDED, CLOSED): Google answers it for the
# issue months after the final invoice. A quiet skip of those months, never a failure.
NON_SERVING = "NON_SERVING_CUSTOMER"


def error_code(error: BaseException | None, codes: Iterable[str]) -> str | None:
    """The first of `codes` that the AdsError `error` carries."""
    from tap_ad_invoices.google_ads.client import AdsError

    if isinstance(error, AdsError):
        return next((code for code in codes if error.has(code)), None)
    return None


def month_start(value: dt.datetime | dt.date) -> dt.date:
    return dt.date(value.year, value.month, 1)


def months_between(first: dt.date, last: dt.date) -> list[dt.date]:
    months = []
    while first <= last:
        months.append(first)
        first = add_months(first, 1)
    return months


def _month(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(f"{text}-01") if text else None


def _text(month: dt.date | None) -> str | None:
    return f"{month:%Y-%m}" if month else None


@dataclass
class SetupState:
    """One billing setup's entry under `billing_setups` in the stream's state.

    - `synced_through`: the last closed issue month (one that has ended) asked
      successfully, with every month before it since the range's start; what it held
      does not matter. A run re-reads the `lookback_months` closed months up to it and
      every month after it (the month in progress too).
    - `not_invoiced` (the InvoiceError) and `checked` (the issue month, UTC, in which it
      was answered): a card-paid or not invoiced setup, asked again in a later month only.
    - `non_serving_since` and `checked`: the customer answers NON_SERVING_CUSTOMER from
      that issue month on; its earlier months are synced. Asked again in a later month.
    """

    synced_through: dt.date | None = None
    not_invoiced: str | None = None
    non_serving_since: dt.date | None = None
    checked: dt.date | None = None

    @classmethod
    def read(cls, entry: Mapping[str, Any] | None) -> SetupState:
        entry = entry or {}
        synced = _month(entry.get("synced_through"))
        legacy = _month(entry.get("last_issue_month"))
        if synced is None and legacy is not None:
            # Written by an earlier version: the last month asked, perhaps still in progress.
            synced = add_months(legacy, -1)
        return cls(
            synced_through=synced,
            not_invoiced=entry.get("not_invoiced") or None,
            non_serving_since=_month(entry.get("non_serving_since")),
            checked=_month(entry.get("checked")),
        )

    def to_state(self) -> dict[str, str]:
        entry = {
            "synced_through": _text(self.synced_through),
            "not_invoiced": self.not_invoiced,
            "non_serving_since": _text(self.non_serving_since),
            "checked": _text(self.checked),
        }
        return {key: value for key, value in entry.items() if value}

    @property
    def has_no_invoices(self) -> bool:
        """Google said this setup has nothing to list now (card-paid, not serving...)."""
        return self.not_invoiced is not None or self.non_serving_since is not None


@dataclass
class MonthAnswer:
    invoices: list[Any]
    non_serving: bool = False  # NON_SERVING_CUSTOMER: synced, nothing to list


@dataclass
class Partition:
    setup: BillingSetup
    known: SetupState
    months: list[dt.date]  # the issue months this run may ask, oldest first
    # Ask the newest month alone first, and the others only if it can have invoices:
    # one call for a card-paid setup instead of one per month.
    probe: bool = False
    calls: dict[dt.date, Future[MonthAnswer]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"customer {self.setup.customer_id}, {self.setup.resource_name}"

    def rest_wanted(self) -> bool:
        """After the probe: whether the other months are worth asking."""
        probe = self.calls[self.months[-1]]
        if probe.exception() is not None:
            return False  # not invoiced, or a failure the emitter reports
        if probe.result().non_serving:
            # A customer that stopped serving still has its final invoices in earlier
            # months, unless an earlier run read them already.
            return self.known.non_serving_since is None
        return True


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
        self._known = KnownDocuments(self._store, {})  # replaced by the state's, per run
        self._open_month = month_start(dt.datetime.now(dt.timezone.utc))  # set again to sync

    def to_invoices(self, record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        return [to_invoice(record)]

    @property
    def failures(self) -> FailureLedger:
        return self._tap.failures  # type: ignore[attr-defined, no-any-return]

    # -- months -----------------------------------------------------------------------------
    def _last_closed(self, end: dt.datetime) -> dt.date:
        """The newest issue month of the range that has ended (Google may still issue a
        credit memo or a rebill in the month in progress)."""
        return min(month_start(end), add_months(self._open_month, -1))

    def _plan(self, setup: BillingSetup, known: SetupState) -> Partition:
        """The months to ask: the `lookback_months` closed months up to `synced_through` and
        every month after it; for a setup Google said has no invoices, none until a later
        issue month, then the newest one alone."""
        start, end = sync_range(self.config)
        first = max(month_start(start), FIRST_ISSUE_MONTH)
        last = min(month_start(end), self._open_month)  # a month not yet begun has no invoice
        if known.synced_through is not None:
            first = max(first, add_months(known.synced_through, 1 - self.settings.lookback_months))
        months = months_between(first, last)
        checked = known.checked
        if known.has_no_invoices and checked is not None and checked >= self._open_month:
            return Partition(setup, known, [])  # asked this month already
        # A setup never read, or one to check again: its newest month says whether it
        # has invoices at all before every month of it is asked.
        probe = known.has_no_invoices or known.synced_through is None
        return Partition(setup, known, months, probe=probe and bool(months))

    # -- sync -------------------------------------------------------------------------------
    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        state = self.get_context_state(context)
        # "This month" for the whole run, so a run across midnight of the 1st is consistent.
        self._open_month = month_start(dt.datetime.now(dt.timezone.utc))
        bookmarks: dict[str, Any] = state.setdefault(BOOKMARKS_KEY, {})
        self._known = KnownDocuments(self._store, state.setdefault(DOCUMENTS_KEY, {}))
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
        if self._known.reused:
            self.logger.info(
                "Google Ads: %d PDF(s) already stored by an earlier run, not downloaded again",
                self._known.reused,
            )
        # State keeps only the PDFs a later run's look-back can re-read.
        _, end = sync_range(self.config)
        oldest = f"{add_months(self._last_closed(end), 1 - self.settings.lookback_months):%Y-%m}"
        self._known.forget(lambda invoice_id, entry: entry["issue_month"] < oldest)

    def _customers(self, api: GoogleAdsApi) -> list[Customer]:
        from tap_ad_invoices.google_ads.client import Customer

        if self.settings.customer_ids:
            return [Customer(customer_id, None) for customer_id in self.settings.customer_ids]
        customers = api.customers()
        stopped = [c for c in customers if not c.serving]
        self.logger.info(
            "Manager %s: %d serving account(s), %d that stopped serving (%s), read for their "
            "final invoices",
            self.settings.login_customer_id,
            len(customers) - len(stopped),
            len(stopped),
            ", ".join(f"{c.customer_id} {c.status}" for c in stopped) or "none",
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
        setup_calls = [(c, pool.submit(api.billing_setups, c.customer_id)) for c in customers]
        partitions: list[Partition] = []
        for customer, call in setup_calls:
            label = f"customer {customer.customer_id}"
            with self.failures.unit(self.name, label, self.logger) as lookup:
                setups = call.result()
            if lookup.failed:
                continue
            if not setups:
                # An account closed long ago often has none left: not worth a warning.
                level = logging.WARNING if customer.serving else logging.INFO
                self.logger.log(
                    level,
                    "Customer %s has no approved billing setup: skipped",
                    customer.customer_id,
                )
            for setup in setups:
                known = SetupState.read(bookmarks.get(setup.resource_name))
                partitions.append(self._plan(setup, known))

        def ask(partition: Partition, months: Iterable[dt.date]) -> None:
            for month in months:
                partition.calls[month] = pool.submit(
                    self._fetch, api, pdf_pool, partition.setup, month
                )

        # Every ListInvoices call goes to the pool now (probes first: the pool is FIFO);
        # the months behind a probe once it has answered; results are consumed in order.
        probed = [p for p in partitions if p.probe]
        for partition in probed:
            ask(partition, partition.months[-1:])
        for partition in partitions:
            if not partition.probe:
                ask(partition, partition.months)
        for partition in probed:
            wait([partition.calls[partition.months[-1]]])
            if partition.rest_wanted():
                ask(partition, partition.months[:-1])
        seen: set[str] = set()
        for partition in partitions:
            yield from self._emit(partition, seen, bookmarks)

    def _fetch(
        self, api: GoogleAdsApi, pdf_pool: ThreadPoolExecutor, setup: BillingSetup, month: dt.date
    ) -> MonthAnswer:
        from tap_ad_invoices.google_ads.client import AdsError

        try:
            invoices = api.list_invoices(setup, month.year, month.month)
        except AdsError as error:
            if error.has(NON_SERVING):
                return MonthAnswer([], non_serving=True)
            raise
        if self.settings.download_pdfs:
            with self._pdf_lock:
                for invoice in invoices:
                    if invoice.id not in self._pdf_claimed and invoice.pdf_url:
                        self._pdf_claimed.add(invoice.id)
                        self._pdfs[invoice.id] = self._stored_or_download(
                            api, pdf_pool, invoice.id, invoice.pdf_url, invoice.payments_account_id
                        )
        return MonthAnswer(invoices)

    def _stored_or_download(
        self, api: GoogleAdsApi, pool: ThreadPoolExecutor, invoice_id: str, url: str, account: str
    ) -> Future[StoredDocument]:
        # An issued invoice's PDF does not change (corrections are new invoices or credit
        # memos), so one stored by an earlier run is reused while its file is in place.
        stored = self._known.reuse(
            invoice_id, source="google_ads", account=account, name=invoice_id
        )
        if stored is None:
            return pool.submit(self._download, api, invoice_id, url, account)
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
        known = partition.known
        if not partition.months:
            if known.has_no_invoices:
                self._log_known(partition)
            return
        synced = known.synced_through
        contiguous = True  # every month so far asked and written whole
        non_serving_from: dt.date | None = None  # first of the newest NON_SERVING months
        newest: MonthAnswer | None = None
        for month in partition.months:
            call = partition.calls.get(month)
            if call is None:  # behind a probe that said there is nothing to read
                contiguous = False
                continue
            item = f"{partition.label}, issue month {month:%Y-%m}"
            with item_errors(self.logger, item) as month_call:
                newest = call.result()
                records = self._month_records(partition, month, newest.invoices, seen)
            if month_call.failed:
                for pending in partition.calls.values():
                    pending.cancel()
                self._remember(
                    bookmarks, partition, self._failed(partition, synced, item, month_call)
                )
                return
            if not newest.non_serving:
                non_serving_from = None
            elif non_serving_from is None:
                non_serving_from = month
            for record in records:
                if self.settings.download_pdfs and record.get("pdf_url"):
                    contiguous &= self._attach_pdf(record, partition)
                yield record
            if contiguous and month < self._open_month:
                # Synced, whatever it held: an empty month is not asked again.
                synced = max(month, synced or month)
        if newest is None or not newest.non_serving:
            self._remember(bookmarks, partition, SetupState(synced))  # serving, invoiced
            return
        asked_all = len(partition.calls) == len(partition.months)
        since = non_serving_from if asked_all else known.non_serving_since or non_serving_from
        if since is not None and since >= self._open_month:
            # Only the month in progress says NON_SERVING: its final invoice may not be
            # issued yet. Remembered as not serving, the month would not be asked again.
            self._remember(bookmarks, partition, SetupState(synced))
            return
        state = SetupState(synced, non_serving_since=since, checked=self._open_month)
        self._log_non_serving(partition, state)
        self._remember(bookmarks, partition, state)

    def _failed(
        self, partition: Partition, synced: dt.date | None, item: str, month_call: Caught
    ) -> SetupState:
        """The state after a month failed: remembered when Google said the setup has no
        invoices; otherwise one FAILED line and what was known before."""
        known = partition.known
        code = error_code(month_call.error, NOT_INVOICED_CODES)
        if code is None:
            self.failures.record(self.name, item, month_call.reason, self.logger)
            return SetupState(synced, known.not_invoiced, known.non_serving_since, known.checked)
        if known.not_invoiced == code:  # known: this month's check said it again
            self.logger.info("Skipped %s: still %s", partition.label, code)
        else:
            self.logger.warning("Skipped %s: %s", partition.label, month_call.error)
        return SetupState(synced, not_invoiced=code, checked=self._open_month)

    @staticmethod
    def _remember(bookmarks: dict[str, Any], partition: Partition, state: SetupState) -> None:
        entry = state.to_state()
        if entry:
            bookmarks[partition.setup.resource_name] = entry

    def _log_known(self, partition: Partition) -> None:
        known = partition.known
        why = known.not_invoiced or f"{NON_SERVING} since {known.non_serving_since:%Y-%m}"
        self.logger.info(
            "Skipped %s: %s (answered in issue month %s); asked again next month",
            partition.label,
            why,
            _text(known.checked),
        )

    def _log_non_serving(self, partition: Partition, state: SetupState) -> None:
        self.logger.info(
            "Customer %s stopped serving (%s from issue month %s): its earlier invoices are "
            "read, %s is asked again next month",
            partition.setup.customer_id,
            NON_SERVING,
            _text(state.non_serving_since),
            partition.setup.resource_name,
        )

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
        self._known.note(record["id"], document, issue_month=record["issue_month"])
        return True
