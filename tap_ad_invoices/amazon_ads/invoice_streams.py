"""Stream `amazon_ads_invoices`: every invoice summary of a global account, with its PDF.

Per account: one `POST /invoiceSummaries/list` query (every page) over the issue
dates from the bookmark minus `invoices_lookback_days` to the end of the run;
then, on a pool of `max_workers` threads, each invoice's documents
(`GET /billing/documents/{id}`) and its PDF, emitted in (issued date, id) order.

State (written after every account, so a killed run resumes from the next one):
    {"accounts": {"<global account id>": {"issued_through": "2026-11-15"}},
     "documents": {"<account>/<invoice id>": {sha256, size, page_count, uri,
                                              doc_type, issued}}}
(with `amazon_ads.regions`, in one partition per region)
`issued_through` moves only when every document of the account was fetched or
reported unavailable by the API. `documents` lets a look-back re-read reuse a PDF
already stored instead of downloading it again; entries older than the
look-back are dropped.

Precedence in `invoices`: when this stream is selected it is the only Amazon Ads
feeder of `invoices`; the statement stream feeds it only when this one is not
(`summaries_selected`). The rule depends on the catalog alone, so the table is
the same whichever stream runs first.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_ad_invoices.amazon_ads.invoice_client import InvoiceSummariesClient, is_presigned
from tap_ad_invoices.amazon_ads.invoice_conversion import (
    DOC_TYPES,
    SCHEMA,
    DocumentRef,
    attach_document,
    pick_document,
    sort_key,
    summary_record,
    to_invoice,
)
from tap_ad_invoices.amazon_ads.regions import Region, RegionalStream
from tap_ad_invoices.checkpoint import CheckpointingStream
from tap_ad_invoices.documents import (
    DocumentSettings,
    DocumentStore,
    KnownDocuments,
    StoredDocument,
    unwrap_pdf,
)
from tap_ad_invoices.errors import ApiError
from tap_ad_invoices.invoices import FeedsInvoices
from tap_ad_invoices.regional import part_label
from tap_ad_invoices.settings import sync_range

if TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_ad_invoices.tap import TapAdInvoices

STREAM = "amazon_ads_invoices"
SOURCE = "amazon_ads"  # the documents folder, as for the other platforms
LOOKAHEAD = 4  # document calls queued per worker ahead of the record being written


def summaries_selected(tap: Tap) -> bool:
    """Whether `amazon_ads_invoices` is selected, and so the one Amazon Ads feeder of `invoices`."""
    stream = tap.streams.get(STREAM)
    return stream is not None and stream.selected


@dataclass(frozen=True)
class DocumentOutcome:
    doc_type: str | None
    stored: StoredDocument | None
    unavailable_reason: str | None


class AmazonAdsInvoicesStream(FeedsInvoices, CheckpointingStream, RegionalStream):
    name = STREAM
    primary_keys = ("account_id", "invoice_id")
    # Declared incremental (the real bookmarks are `accounts` above), so a target never
    # takes a look-back re-read for the whole table and soft-deletes the rest.
    replication_key = "issued_date"
    is_sorted = False  # in order per account, not across accounts
    schema = SCHEMA
    # Opt-in: selecting it changes which stream feeds the Amazon Ads rows of `invoices`,
    # which an existing warehouse must not see happen on an upgrade (README).
    selected_by_default = False
    # Records are typed by construction (str, date, Decimal, int, the API's own dict).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapAdInvoices, regions: list[Region]) -> None:
        super().__init__(tap, regions)
        self.documents = DocumentSettings.from_config(tap.config)
        self._store = DocumentStore(self.documents)
        self._known = KnownDocuments(self._store, {})  # replaced by the state's, per region

    def to_invoices(self, record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        return [to_invoice(record)]

    # -- sync -----------------------------------------------------------------------
    def part_records(
        self, region: Region, context: Mapping[str, Any] | None
    ) -> Iterable[dict[str, Any]]:
        if not self.selected:
            return  # run only as the parent of `invoices`, which the statements feed then
        client = InvoiceSummariesClient(region.client)
        account_ids = region.account_ids(self._failures, STREAM, self.logger)
        if account_ids is None:
            return
        state = self.region_state(context)
        # PDFs stored under the single-region form are reused after a move to `regions`.
        self._known = KnownDocuments(
            self._store,
            state.setdefault("documents", {}),
            also=self.stream_state.get("documents") or {},
        )
        workers = int(self.config.get("max_workers") or 4)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="amazon-ads-documents")
        try:
            for account_id in account_ids:
                yield from self._sync_account(region, client, pool, state, account_id)
                self.checkpoint()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._known.reused:
            self.logger.info(
                "Amazon Ads: %d PDF(s) already stored by an earlier run, not downloaded again",
                self._known.reused,
            )
        self._forget_documents_before_the_lookback(state)
        self.checkpoint()

    def _range(self, account_state: Mapping[str, Any]) -> tuple[dt.date, dt.date]:
        start_at, end_at = sync_range(self.config)
        first = start_at.date()
        if account_state.get("issued_through"):
            bookmark = dt.date.fromisoformat(account_state["issued_through"])
            first = max(first, bookmark - dt.timedelta(days=self.settings.invoices_lookback_days))
        return first, end_at.date()

    def _sync_account(
        self,
        region: Region,
        client: InvoiceSummariesClient,
        pool: ThreadPoolExecutor,
        region_state: dict[str, Any],
        account_id: str,
    ) -> Iterator[dict[str, Any]]:
        state = self.account_state(region_state, account_id, {"issued_through": None})
        first, last = self._range(state)
        item = f"{part_label(region)}{account_id} {first}..{last}"
        with self._failures.unit(STREAM, item, self.logger) as listing:
            by_id = {
                record["invoice_id"]: {**record, "region": region.settings.region}
                for record in (
                    summary_record(account_id, s)
                    for s in client.invoice_summaries(account_id, first, last)
                )
            }
        if listing.failed:
            return
        records = sorted(by_id.values(), key=sort_key)
        complete = True
        for record, call in self._with_documents(client, pool, records):
            if call is not None:
                complete &= self._attach(record, call)
            yield record
        self.logger.info("Amazon Ads: %s: %d invoice summaries", item, len(records))
        if complete:  # a failed document is fetched again by the next run
            state["issued_through"] = last.isoformat()

    def _with_documents(
        self,
        client: InvoiceSummariesClient,
        pool: ThreadPoolExecutor,
        records: list[dict[str, Any]],
    ) -> Iterator[tuple[dict[str, Any], Future[DocumentOutcome] | None]]:
        """Each record with its document call, in order, a few calls ahead of the reader.

        Calls run on the pool while earlier records are written; at most LOOKAHEAD per
        worker are in flight or done but unread, so a large account's PDFs never pile up
        in memory waiting for their turn.
        """
        if not self.settings.invoice_documents:
            yield from ((record, None) for record in records)
            return
        ahead = LOOKAHEAD * int(self.config.get("max_workers") or 4)
        calls: deque[tuple[dict[str, Any], Future[DocumentOutcome]]] = deque()
        pending = iter(records)
        while True:
            while len(calls) < ahead and (record := next(pending, None)) is not None:
                call = pool.submit(
                    self._document, client, record["account_id"], record["invoice_id"]
                )
                calls.append((record, call))
            if not calls:
                return
            yield calls.popleft()

    def _attach(self, record: dict[str, Any], call: Future[DocumentOutcome]) -> bool:
        # One document fails alone; the record still goes out, without it.
        item = f"{record['account_id']} invoice {record['invoice_id']}"
        with self._failures.unit(STREAM, item, self.logger) as fetched:
            outcome = call.result()
        if fetched.failed:
            return False
        attach_document(record, outcome.doc_type, outcome.stored, outcome.unavailable_reason)
        if outcome.stored is not None:
            self._known.note(
                _key(record["account_id"], record["invoice_id"]),
                outcome.stored,
                doc_type=outcome.doc_type,
                issued=record["issued_date"].isoformat() if record["issued_date"] else None,
            )
        return True

    # -- documents (worker threads) ---------------------------------------------------
    def _document(
        self, client: InvoiceSummariesClient, account_id: str, invoice_id: str
    ) -> DocumentOutcome:
        # An issued invoice's PDF does not change, so one stored by an earlier run is
        # reused while its file is where this configuration puts it.
        key = _key(account_id, invoice_id)
        stored = self._known.reuse(key, source=SOURCE, account=account_id, name=invoice_id)
        if stored is not None:
            return DocumentOutcome(self._known.earlier(key).get("doc_type"), stored, None)
        ref = pick_document(client.documents(account_id, invoice_id, DOC_TYPES))
        if ref is None:
            return DocumentOutcome(None, None, "the API lists no INVOICE or CREDIT_MEMO document")
        if ref.storage_path is None:
            return DocumentOutcome(ref.doc_type, None, ref.reason)
        what = f"{ref.doc_type} document of invoice {invoice_id}"
        pdf = unwrap_pdf(
            self._download(client, account_id, invoice_id, ref, what), self.max_bytes, what
        )
        document = self._store.store(pdf, source=SOURCE, account=account_id, name=invoice_id)
        return DocumentOutcome(ref.doc_type, document, None)

    @property
    def max_bytes(self) -> int:
        return self.documents.max_bytes

    def _download(
        self,
        client: InvoiceSummariesClient,
        account_id: str,
        invoice_id: str,
        ref: DocumentRef,
        what: str,
    ) -> bytes:
        assert ref.storage_path is not None
        try:
            return client.download(
                account_id, ref.storage_path, max_bytes=self.max_bytes, what=what
            )
        except ApiError as exc:
            # A presigned link expires (S3 answers 403, or 400 once it is malformed by age):
            # the documents call hands out a fresh one. Once: a second refusal is the item's.
            if exc.status not in (400, 403) or not is_presigned(ref.storage_path):
                raise
        fresh = pick_document(client.documents(account_id, invoice_id, DOC_TYPES))
        if fresh is None or fresh.storage_path is None:
            raise ApiError(f"{what}: the link expired and no new one was given")
        return client.download(account_id, fresh.storage_path, max_bytes=self.max_bytes, what=what)

    def _forget_documents_before_the_lookback(self, region_state: dict[str, Any]) -> None:
        """State keeps only the PDFs the next run of their account can re-read.

        An account whose bookmark did not move re-reads from start_date: all of its stay.
        """
        oldest: dict[str, str] = {}
        for account_id, state in region_state.get("accounts", {}).items():
            if state.get("issued_through"):
                bookmark = dt.date.fromisoformat(state["issued_through"])
                lookback = dt.timedelta(days=self.settings.invoices_lookback_days)
                oldest[account_id] = (bookmark - lookback).isoformat()
        self._known.forget(
            lambda key, entry: (entry.get("issued") or "") < oldest.get(key.rsplit("/", 1)[0], "")
        )


def _key(account_id: str, invoice_id: str) -> str:
    return f"{account_id}/{invoice_id}"
