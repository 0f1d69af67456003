"""Stream `invoices`: every invoice and credit memo of every platform, in one shape.

It is fed by the source streams from the data they fetch anyway, never by API
calls of its own: a source stream hands each of its records to `to_invoices`
(its source's mapping) and the rows are written at once, before the STATE that
covers the source record, so a killed run loses nothing here either. When
only `invoices` is selected the source streams still run (the SDK runs a
deselected stream that has a selected child) but write nothing of their own.

Sign convention: credit memos carry negative amounts, on every platform.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream, metrics
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

if TYPE_CHECKING:
    from tap_ad_invoices.tap import TapAdInvoices

STREAM = "invoices"
INVOICE, CREDIT_MEMO = "invoice", "credit_memo"
DATE_FIELDS = ("issue_date", "due_date", "service_start_date", "service_end_date")
# amount_status when a source says nothing: its API gave the total, or gave none.
AS_REPORTED, NOT_SUPPLIED = "as_reported", "missing: the platform supplies no amount here"

SCHEMA = th.PropertiesList(
    th.Property(
        "platform",
        th.StringType,
        required=True,
        description="amazon_ads, google_ads, amazon_business or meta.",
    ),
    th.Property("account_id", th.StringType, required=True),
    th.Property("account_name", th.StringType),
    th.Property("invoice_number", th.StringType, required=True),
    th.Property(
        "document_kind",
        th.StringType,
        required=True,
        description="invoice, credit_memo, debit_memo (Meta) or pro_forma (Meta; null amounts).",
    ),
    th.Property("issue_date", th.DateType),
    th.Property("due_date", th.DateType),
    th.Property("service_start_date", th.DateType),
    th.Property("service_end_date", th.DateType),
    th.Property("currency", th.StringType),
    th.Property("subtotal_amount", th.NumberType, description="Exact; negative for credit memos."),
    th.Property("tax_amount", th.NumberType, description="Exact; negative for credit memos."),
    th.Property("total_amount", th.NumberType, description="Exact; negative for credit memos."),
    th.Property(
        "amount_status",
        th.StringType,
        description="How total_amount was obtained: as_reported; derived (an exact sum of "
        "the source's own columns); or 'missing: <why>' with the total null, never guessed.",
    ),
    th.Property("status", th.StringType, description="paid, unpaid, partially_paid, … or null."),
    th.Property("purchase_order", th.StringType),
    th.Property("document_uri", th.StringType),
    th.Property("document_sha256", th.StringType),
    th.Property("source_stream", th.StringType, required=True),
    th.Property(
        "source_key",
        th.ObjectType(additional_properties=th.StringType),
        required=True,
        description="Primary key of the source record, to join back.",
    ),
).to_dict()


def signed(amount: Decimal | int | None, kind: str) -> Decimal | int | None:
    """Apply the sign convention: a credit memo's amounts are negative."""
    if amount is None:
        return None
    if kind == CREDIT_MEMO and amount > 0:
        return -amount
    return amount


def status_name(text: str | None) -> str | None:
    """'Partially Paid' -> 'partially_paid'; platforms write statuses their own way."""
    if not text:
        return None
    return "_".join(text.strip().lower().replace("-", " ").split())


def source_key(stream: Stream, record: Mapping[str, Any]) -> dict[str, str]:
    return {key: str(record.get(key)) for key in stream.primary_keys or ()}


class ResumableProgressFilter(logging.Filter):
    """Drops the SDK's "progress is not resumable if interrupted" warning.

    Every stream here is declared unsorted (is_sorted = False), so the SDK warns, once
    per stream and run, that an interrupted run cannot resume. Ours resume from their
    own bookmarks (windows, months, pending report ids), so the line would send a
    reader looking for a problem that is not there.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "progress is not resumable" not in record.getMessage()


logging.getLogger("singer_sdk").addFilter(ResumableProgressFilter())


class InvoicesStream(Stream):
    name = STREAM
    primary_keys = ("platform", "account_id", "invoice_number", "document_kind")
    # Fed incrementally by incremental source streams: declared so, never FULL_TABLE,
    # or activate-version would soft-delete every row a run did not re-read.
    replication_key = "issue_date"
    is_sorted = False
    schema = SCHEMA
    # Every row is built here from typed source records (str, date, Decimal, a dict of
    # str); `emit` makes dates dates, so the SDK's second conformance pass is skipped.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapAdInvoices) -> None:
        super().__init__(tap)
        self._schema_written = False
        self.emitted = 0
        self._record_counter: metrics.Counter | None = None

    def emit(self, row: dict[str, Any]) -> None:
        if not self._schema_written:
            self._write_schema_message()
            self._schema_written = True
        # Every row has every field; what a platform cannot supply is null.
        if row.get("amount_status") is None:
            row["amount_status"] = (
                AS_REPORTED if row.get("total_amount") is not None else NOT_SUPPLIED
            )
        record = {key: row.get(key) for key in self.schema["properties"]}
        for key in DATE_FIELDS:
            value = record[key]
            if isinstance(value, dt.datetime):
                record[key] = value.date()
        self._write_record_message(record)
        self.emitted += 1

    def get_record_counter(self, **kwargs: Any) -> metrics.Counter:
        self._record_counter = super().get_record_counter(**kwargs)
        return self._record_counter

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        # Rows were written while the source streams ran: count them in this stream's
        # record_count metric, which would otherwise say 0.
        self.logger.info("invoices: %d row(s) written alongside the source streams", self.emitted)
        if self._record_counter is not None:
            self._record_counter.increment(self.emitted)
        return iter(())


class FeedsInvoices(Stream):
    """Mixin for a source stream whose records map to rows of `invoices`."""

    invoices_stream: InvoicesStream | None = None

    def to_invoices(self, record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def feed(self, invoices: InvoicesStream) -> None:
        self.invoices_stream = invoices
        # As a child, `invoices` makes the SDK run this stream even when deselected.
        self.child_streams.append(invoices)

    def generate_child_contexts(
        self, record: Mapping[str, Any], context: Mapping[str, Any] | None
    ) -> Iterable[Mapping[str, Any] | None]:
        return ()  # `invoices` is fed row by row in post_process, never synced per record

    def post_process(
        self, row: dict[str, Any], context: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        processed = super().post_process(row, context)
        invoices = self.invoices_stream
        if processed is not None and invoices is not None and invoices.selected:
            for invoice in self.to_invoices(processed):
                invoice["source_stream"] = self.name
                invoice["source_key"] = source_key(self, processed)
                invoices.emit(invoice)
        return processed
