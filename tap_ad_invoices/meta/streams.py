"""Streams meta_invoices and meta_invoice_campaigns.

Per business: one business_invoices query over the issue dates from the
bookmark (minus `lookback_months`) to the end of the run, every page; then each
invoice's PDF and campaign lines on a pool of `max_workers` threads, emitted
in (issue date, id) order from the main thread. State keeps, per business, the
last issue date fully synced (`issued_through`); it moves only when every
invoice of the business went out whole, and STATE is written after each
business, so a killed run resumes from the last finished business.

meta_invoice_campaigns is written by meta_invoices as it goes (like `invoices`),
from the same pass: campaign lines are fetched only when it is selected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream

from tap_ad_invoices.checkpoint import CheckpointingStream
from tap_ad_invoices.documents import (
    DocumentSettings,
    DocumentStore,
    KnownDocuments,
    StoredDocument,
    pdf_fields,
    unwrap_pdf,
)
from tap_ad_invoices.errors import item_errors
from tap_ad_invoices.invoices import FeedsInvoices
from tap_ad_invoices.meta.client import BILLING_PERIOD_REACH_MONTHS, GraphError, MetaGraph
from tap_ad_invoices.meta.config import KEY, MetaSettings
from tap_ad_invoices.meta.conversion import (
    CAMPAIGN_SCHEMA,
    INVOICE_SCHEMA,
    campaign_records,
    invoice_record,
    to_invoice,
)
from tap_ad_invoices.settings import retry_policy, sync_range
from tap_ad_invoices.windows import add_months

if TYPE_CHECKING:
    from tap_ad_invoices.tap import TapAdInvoices

INVOICES_STREAM = "meta_invoices"
CAMPAIGNS_STREAM = "meta_invoice_campaigns"
BOOKMARKS_KEY = "businesses"
DOCUMENTS_KEY = "documents"  # PDFs stored by earlier runs: {business/invoice: remember(...)}


@dataclass
class Pending:
    """One converted invoice and its side calls, waiting for its turn to be emitted."""

    raw: Mapping[str, Any]
    record: dict[str, Any]
    pdf: Future[StoredDocument] | None
    lines: Future[list[dict[str, Any]]] | None


class MetaInvoiceCampaignsStream(Stream):
    """Campaign lines of each invoice, written while meta_invoices runs."""

    name = CAMPAIGNS_STREAM
    primary_keys = ("invoice_node_id", "line_number")
    # Declared incremental like meta_invoices (its lines come from the same look-back
    # re-read), so activate-version never soft-deletes the lines a run did not re-read.
    replication_key = "issue_date"
    is_sorted = False
    schema = CAMPAIGN_SCHEMA

    def __init__(self, tap: TapAdInvoices) -> None:
        super().__init__(tap)
        self._schema_written = False
        self.emitted = 0

    def emit(self, row: dict[str, Any]) -> None:
        if not self._schema_written:
            self._write_schema_message()
            self._schema_written = True
        self._write_record_message(row)
        self.emitted += 1

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        # Lines are written by meta_invoices (which the SDK may sync after this one:
        # streams run in name order); meta_invoices logs how many.
        return iter(())


class MetaInvoicesStream(FeedsInvoices, CheckpointingStream):
    name = INVOICES_STREAM
    primary_keys = ("business_id", "id")
    # Declared incremental (the real bookmarks are per business, in `businesses`), so a
    # look-back re-read is never taken for the whole table by activate-version.
    replication_key = "issue_date"
    is_sorted = False
    schema = INVOICE_SCHEMA

    def __init__(
        self, tap: TapAdInvoices, settings: MetaSettings, campaigns: MetaInvoiceCampaignsStream
    ) -> None:
        super().__init__(tap)
        self.settings = settings
        self.campaigns = campaigns
        # As a child, the campaigns stream makes the SDK run this one even when deselected.
        self.child_streams.append(campaigns)
        self.documents = DocumentSettings.from_config(tap.config)
        self._store = DocumentStore(self.documents)
        self._failures = tap.failures
        self._known = KnownDocuments(self._store, {})  # replaced by the state's, per run

    def to_invoices(self, record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        return [to_invoice(record)]

    # -- what to ask ----------------------------------------------------------------
    def _issue_window(self, business: str, bookmarks: Mapping[str, Any]) -> tuple[dt.date, dt.date]:
        """[first, last] issue dates, both inclusive."""
        start, end = sync_range(self.config)
        first = start.date()
        last = min(end, dt.datetime.now(dt.timezone.utc)).date()
        synced = (bookmarks.get(business) or {}).get("issued_through")
        if synced:
            resume = add_months(dt.date.fromisoformat(synced), -self.settings.lookback_months)
            first = max(first, resume)
        return first, last

    # -- sync -----------------------------------------------------------------------
    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        # A refused token fails the source (one line); anything else fails its own unit.
        return self._failures.guard(KEY, self.name, self._records(), self.logger)

    def _records(self) -> Iterator[dict[str, Any]]:
        bookmarks: dict[str, Any] = self.stream_state.setdefault(BOOKMARKS_KEY, {})
        self._known = KnownDocuments(self._store, self.stream_state.setdefault(DOCUMENTS_KEY, {}))
        graph = MetaGraph(self.settings, retry=retry_policy(self.config))
        workers = int(self.config.get("max_workers") or 4)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meta")
        try:
            for business in self.settings.business_ids:
                yield from self._business(graph, pool, business, bookmarks)
                self.checkpoint()  # after its records: a killed run keeps this business
        finally:
            # A refused token ends the source: queued PDF and campaign calls are dropped.
            pool.shutdown(wait=True, cancel_futures=True)
        if self._known.reused:
            self.logger.info("Meta: %d PDF(s) stored by earlier runs reused", self._known.reused)
        self._known.forget(lambda key, entry: self._before_lookback(key, entry, bookmarks))

    def _before_lookback(
        self, key: str, entry: Mapping[str, Any], bookmarks: Mapping[str, Any]
    ) -> bool:
        """Whether the next run's look-back starts after this document's issue date."""
        synced = (bookmarks.get(key.split("/", 1)[0]) or {}).get("issued_through")
        if not synced:
            return False
        first = add_months(dt.date.fromisoformat(synced), -self.settings.lookback_months)
        return str(entry.get("issue_date") or "") < first.isoformat()

    def _business(
        self,
        graph: MetaGraph,
        pool: ThreadPoolExecutor,
        business: str,
        bookmarks: dict[str, Any],
    ) -> Iterator[dict[str, Any]]:
        first, last = self._issue_window(business, bookmarks)
        if first > last:
            return
        item = f"business {business}"
        with item_errors(self.logger, item) as listing:
            raws = graph.business_invoices(
                business,
                first.isoformat(),
                (last + dt.timedelta(days=1)).isoformat(),  # issue_end_date is exclusive
                add_months(first, -BILLING_PERIOD_REACH_MONTHS).isoformat(),
            )
        if listing.failed:
            if isinstance(listing.error, GraphError) and listing.error.not_invoiced:
                # No bookmark: if it moves to monthly invoicing, its history counts.
                self.logger.warning("Skipped %s (no monthly invoicing): %s", item, listing.error)
            else:
                self._failures.record(self.name, item, listing.reason, self.logger)
            return
        self.logger.info(
            "Meta business %s: %d invoice(s) issued %s to %s", business, len(raws), first, last
        )
        pending, complete = self._start(graph, pool, business, raws)
        for invoice in pending:
            complete &= self._finish(invoice, business)
            yield invoice.record
        if self.campaigns.selected:
            self.logger.info(
                "Meta business %s: %d campaign line(s) so far", business, self.campaigns.emitted
            )
        synced = (bookmarks.get(business) or {}).get("issued_through") or ""
        if complete and last.isoformat() > synced:  # a backfill (earlier end_date) keeps it
            bookmarks[business] = {"issued_through": last.isoformat()}

    def _start(
        self,
        graph: MetaGraph,
        pool: ThreadPoolExecutor,
        business: str,
        raws: list[dict[str, Any]],
    ) -> tuple[list[Pending], bool]:
        """Convert every invoice and start its PDF and campaign calls; (in order, all ok)."""
        complete = True
        pending: list[Pending] = []
        for raw in raws:
            # Amounts that disagree fail this invoice: never a guess.
            with self._failures.unit(self.name, _label(business, raw), self.logger) as converting:
                record = invoice_record(raw, business)
            if converting.failed:
                complete = False
                continue
            pdf = lines = None
            if self.settings.download_pdfs:
                pdf = pool.submit(self._download, graph, business, raw)
            if self.campaigns.selected:
                lines = pool.submit(graph.invoice_campaigns, business, record["id"])
            pending.append(Pending(raw, record, pdf, lines))
        pending.sort(key=lambda p: (p.record["issue_date"] or "", p.record["id"]))
        return pending, complete

    def _download(self, graph: MetaGraph, business: str, raw: Mapping[str, Any]) -> StoredDocument:
        name = str(raw.get("invoice_id") or raw["id"])
        # A PDF stored by an earlier run costs no call. Meta does not say whether the PDF
        # changes once the invoice is paid, so it is reused only while the status holds.
        key = _document_key(business, raw)
        unchanged = {"payment_status": raw.get("payment_status")}
        known = self._known.reuse(
            key, source="meta", account=business, name=name, unchanged=unchanged
        )
        if known is not None:
            return known
        what = f"PDF of invoice {name}"
        data = graph.download_pdf(raw, business, self.documents.max_bytes, what)
        pdf = unwrap_pdf(data, self.documents.max_bytes, what)
        return self._store.store(pdf, source="meta", account=business, name=name)

    def _finish(self, item: Pending, business: str) -> bool:
        """Attach the PDF, write the campaign lines; False when either failed."""
        ok = True
        label = _label(business, item.raw)
        if item.lines is not None:
            with self._failures.unit(self.name, f"{label}, campaign lines", self.logger) as lines:
                rows = campaign_records(item.lines.result(), item.record)
            if lines.failed:
                ok = False
            else:
                for row in rows:
                    self.campaigns.emit(row)
        if item.pdf is not None:
            # One document fails alone; the record still goes out, without pdf_* fields.
            with self._failures.unit(self.name, label, self.logger) as download:
                document = item.pdf.result()
            if download.failed:
                return False
            item.record.update(pdf_fields(document))
            key = _document_key(business, item.raw)
            self._known.note(
                key,
                document,
                issue_date=item.record.get("issue_date"),
                payment_status=item.raw.get("payment_status"),
            )
        return ok


def _document_key(business: str, raw: Mapping[str, Any]) -> str:
    return f"{business}/{raw['id']}"


def _label(business: str, raw: Mapping[str, Any]) -> str:
    return f"business {business}, invoice {raw.get('invoice_id') or '?'} (id {raw.get('id')})"


def build_streams(tap: TapAdInvoices, settings: MetaSettings) -> list[Stream]:
    campaigns = MetaInvoiceCampaignsStream(tap)
    return [MetaInvoicesStream(tap, settings, campaigns), campaigns]
