"""Singer streams of Amazon Business: transactions and their invoice documents.

State of `amazon_business_invoice_documents` (custom keys in its bookmark):
- feed_date_bookmark: transactions fed before it are fully handled. It never
  passes the earliest transaction of a document that failed, was CANCELLED,
  is still pending, or was not started because the run was bounded.
- pending_reports: {invoice|type: {report_id, request}}, written the moment a
  report exists, so the next run polls it instead of creating it again.
- delivered: {invoice|type: last feed date}, documents already emitted inside
  the look-back window, so re-read transactions cause no createReport call.
- open_invoices: {invoice|Invoice: {request, report ids, document, payment_status,
  payment_due_date}}, delivered invoices not Closed yet: their payment status is asked
  every run and the record rebuilt from here (no download) when it changed.
- cancelled: {invoice|type: {first_cancelled, last_cancelled, retries, gave_up,
  request}}, documents whose report came back CANCELLED: asked again
  `cancelled_retry_days` (1, 7, 30) after the first, then given up (a warning names it).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream
from singer_sdk import typing as th

from tap_ad_invoices.calls import CALLS
from tap_ad_invoices.checkpoint import CheckpointingStream
from tap_ad_invoices.documents import DocumentSettings, DocumentStore, StoredDocument
from tap_ad_invoices.errors import FailureLedger
from tap_ad_invoices.invoices import CREDIT_MEMO, INVOICE, FeedsInvoices, signed
from tap_ad_invoices.regional import PerRegionStream
from tap_ad_invoices.settings import retry_policy

from . import pipeline
from .client import (
    MAX_INVOICES_PER_PAYMENT_CALL,
    MAX_LINE_ITEMS_PER_CALL,
    AmazonBusinessClient,
    iso_utc,
)
from .config import KEY, AmazonBusinessSettings, stores_from_config
from .conversion import (
    CLOSED,
    INVOICE_STATUS,
    DocumentRequest,
    PaymentStatus,
    consolidation_pending,
    details_by_line_item,
    document_record,
    feed_date,
    line_items_needing_details,
    payment_statuses,
    plan_documents,
    transaction_record,
)

if TYPE_CHECKING:
    from tap_ad_invoices.tap import TapAdInvoices

LOGGER = logging.getLogger("tap_ad_invoices.amazon_business")


CONSOLIDATION_WAIT = dt.timedelta(days=62)  # consolidated invoices are monthly
KEEP_GIVEN_UP_DAYS = 365  # a given-up CANCELLED document stays in state this long


def retry_due(entry: Mapping[str, Any], today: dt.date, days: tuple[int, ...]) -> bool:
    """Is a CANCELLED document due to be asked again today (`cancelled_retry_days`)?"""
    if entry.get("gave_up"):
        return False
    retries = min(int(entry.get("retries", 0)), len(days) - 1)
    first = dt.date.fromisoformat(entry["first_cancelled"])
    return today >= first + dt.timedelta(days=days[retries])


MONEY = th.ObjectType(
    th.Property("amount", th.NumberType),
    th.Property("currency_code", th.StringType),
)
PERSON = th.ObjectType(
    th.Property("id", th.StringType),
    th.Property("name", th.StringType),
    th.Property("email", th.StringType),
)
LINE_ITEM = th.ObjectType(
    th.Property("order_id", th.StringType),
    th.Property("order_line_item_id", th.StringType),
    th.Property("shipment_id", th.StringType),
    th.Property("shipment_date", th.DateTimeType),
    th.Property("purchase_order_number", th.StringType),
    th.Property("purchase_order_line_item_id", th.StringType),
    th.Property("asin", th.StringType),
    th.Property("unspsc", th.StringType),
    th.Property("product_title", th.StringType),
    th.Property("item_quantity", th.IntegerType),
    th.Property("tax_rate", th.NumberType),
    th.Property("refund_reason", th.StringType),
    th.Property("merchant_legal_name", th.StringType),
    th.Property("budget_id", th.StringType),
    th.Property("business_order_info", th.ObjectType(additional_properties=True)),
    th.Property("total_amount", MONEY),
    th.Property("principal_amount", MONEY),
    th.Property("shipping_charge", MONEY),
    th.Property("regulatory_fee", MONEY),
    th.Property("gift_wrapping_charge", MONEY),
    th.Property("discount", MONEY),
    th.Property("tax", MONEY),
    th.Property("unit_price", MONEY),
)


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def feed_windows(
    start: dt.datetime, end: dt.datetime, days: int, *, origin: dt.datetime | None = None
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """The windows of `days` covering [start, end), on a grid anchored at `origin` (or start).

    Anchored, so that both streams ask for the very same windows whatever their
    bookmarks: each window is read (and, if it fails, reported) once per run.
    """
    step = dt.timedelta(days=days)
    origin = start if origin is None else origin
    window_start = origin + step * max(0, (start - origin) // step)
    while window_start < end:
        yield window_start, min(window_start + step, end)
        window_start += step


@dataclass
class FeedRead:
    transactions: list[dict[str, Any]]  # as the API sent them, fed at or after the start
    records: list[dict[str, Any]]  # the same, as records
    read_until: dt.datetime  # the end, or the start of the first window that failed


@dataclass
class _Window:
    transactions: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False


class TransactionFeed:
    """Reconciliation transactions, window by window, shared by the two streams.

    A window is one unit of work: read every page, convert every transaction.
    Anything wrong in it (a page answered with HTML, a transaction without
    feedDate, an amount "abc") fails that window alone, once; neither stream's
    bookmark passes it, and the windows after it wait for the next run.
    """

    def __init__(
        self, settings: AmazonBusinessSettings, client: AmazonBusinessClient, ledger: FailureLedger
    ) -> None:
        self.settings = settings
        self.client = client
        self.ledger = ledger
        self._windows: dict[tuple[dt.datetime, dt.datetime], _Window] = {}

    @cached_property
    def run_end(self) -> dt.datetime:
        """One end for both streams, so they read the same last window."""
        return self.settings.end_date or dt.datetime.now(dt.timezone.utc)

    def read(self, start: dt.datetime, logger: logging.Logger) -> FeedRead:
        found = FeedRead([], [], self.run_end)
        for bounds in feed_windows(
            start, self.run_end, self.settings.window_days, origin=self.settings.start_date
        ):
            window = self._window(bounds, logger)
            if window.failed:
                found.read_until = max(start, bounds[0])
                break
            for txn, record in zip(window.transactions, window.records, strict=True):
                fed = feed_date(txn)
                if fed is not None and fed >= start:
                    found.transactions.append(txn)
                    found.records.append(record)
        return found

    def _window(self, bounds: tuple[dt.datetime, dt.datetime], logger: logging.Logger) -> _Window:
        if bounds in self._windows:
            return self._windows[bounds]
        fed = f"{iso_utc(bounds[0])}..{iso_utc(bounds[1])}"
        item = f"{store_label(self.settings)}transactions fed {fed}"
        window = _Window()
        # Named for the source: the window is read once for both streams.
        with self.ledger.unit(KEY, item, logger) as unit:
            window.transactions = list(self.client.transactions(*bounds))
            window.records = [transaction_record(txn) for txn in window.transactions]
        window.failed = unit.failed
        self._windows[bounds] = window
        return window


def store_label(settings: AmazonBusinessSettings) -> str:
    """Prefix of failure items, naming the store when there are several."""
    return f"store {settings.region}: " if settings.one_of_stores else ""


@dataclass
class Store:
    """One regional store: its own login, rate-limit buckets, transactions and state."""

    settings: AmazonBusinessSettings
    client: AmazonBusinessClient
    feed: TransactionFeed
    down: bool = False  # its credentials or host failed in this run: its streams skip it
    noun = "store"

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def one_of_several(self) -> bool:
        return self.settings.one_of_stores


class AmazonBusinessStream(PerRegionStream[Store]):
    """Base of both streams: one state partition per store in the `stores` form.

    The single-store form has no partitions, so its state stays where it always was.
    """

    source_key = KEY

    @property
    def stores(self) -> list[Store]:
        return self.parts

    @property
    def failures(self) -> FailureLedger:
        return self._failures

    def record_failure(self, item: str, reason: str) -> None:
        self.failures.record(self.name, item, reason, self.logger)


class TransactionsStream(AmazonBusinessStream):
    """Reconciliation transactions with their line items; finance reconciles against it."""

    name = "amazon_business_transactions"
    primary_keys = ("transaction_id",)
    replication_key = "feed_date"
    is_sorted = False

    schema = th.PropertiesList(
        th.Property("transaction_id", th.StringType, required=True),
        th.Property("region", th.StringType, description="The store: NA, EU or JP."),
        th.Property("transaction_type", th.StringType, description="CHARGE, REFUND, OVERREFUND"),
        th.Property("transaction_date", th.DateTimeType),
        th.Property("feed_date", th.DateTimeType, required=True),
        th.Property("marketplace_id", th.StringType),
        th.Property("invoice_number", th.StringType),
        th.Property("charge_identifier", th.StringType),
        th.Property("amount", th.NumberType, description="Authorised amount until settled."),
        th.Property("currency_code", th.StringType),
        th.Property("ship_tax_rate", th.NumberType),
        th.Property("gift_wrap_tax_rate", th.NumberType),
        th.Property("legal_entity_name", th.StringType),
        th.Property("purchasing_customer_group_name", th.StringType),
        th.Property("payment_instrument_type", th.StringType),
        th.Property("payment_instrument_last4_digits", th.StringType),
        th.Property("buyer", PERSON),
        th.Property("payer", PERSON),
        th.Property("associated_transaction_ids", th.ArrayType(th.StringType)),
        th.Property("line_items", th.ArrayType(LINE_ITEM)),
    ).to_dict()

    def part_records(
        self, store: Store, context: Mapping[str, Any] | None
    ) -> Iterable[dict[str, Any]]:
        start = store.settings.start_date
        bookmark = self.get_starting_timestamp(context)
        if bookmark is not None and bookmark > start:
            # Re-read the look-back window: late-settling amounts change transactions.
            start = max(start, bookmark - dt.timedelta(days=store.settings.lookback_days))
        for record in store.feed.read(start, self.logger).records:
            yield {**record, "region": store.settings.region}


class InvoiceDocumentsStream(AmazonBusinessStream, FeedsInvoices, CheckpointingStream):
    """One record per invoice / credit memo PDF (and per CANCELLED or FATAL report)."""

    name = "amazon_business_invoice_documents"
    primary_keys = ("invoice_number", "document_type")
    # Declared incremental (the real bookmarks are the feed windows and pending reports
    # in state), so activate-version never treats one run's documents as the table.
    replication_key = "invoice_date"
    is_sorted = False
    creates_reports = True  # one createReport each: synced after the streams that only read

    schema = th.PropertiesList(
        th.Property("invoice_number", th.StringType, required=True),
        th.Property("document_type", th.StringType, required=True, description="Invoice, Credits"),
        th.Property("region", th.StringType, description="The store: NA, EU or JP."),
        th.Property("marketplace_id", th.StringType),
        th.Property("invoice_type", th.StringType, description="STANDARD, CREDIT_MEMO if known"),
        th.Property("invoice_date", th.DateType, description="Day of the invoice details' date."),
        th.Property("order_ids", th.ArrayType(th.StringType)),
        th.Property("order_line_item_ids", th.ArrayType(th.StringType)),
        th.Property("shipment_ids", th.ArrayType(th.StringType)),
        th.Property("transaction_ids", th.ArrayType(th.StringType)),
        th.Property("last_feed_date", th.DateTimeType),
        th.Property("report_id", th.StringType),
        th.Property("report_document_id", th.StringType),
        th.Property("processing_status", th.StringType, description="DONE, CANCELLED, FATAL"),
        th.Property(
            "next_request_date",
            th.DateType,
            description="CANCELLED: the day the document is asked for again (1, 7 and 30 "
            "days after the first CANCELLED); null once given up.",
        ),
        th.Property(
            "payment_status",
            th.StringType,
            description="Invoices: Closed, Past Due, Issued or Payment Processing "
            "(getBatchInvoicePaymentDetails); re-emitted when it changes.",
        ),
        th.Property("payment_due_date", th.DateType),
        th.Property("sha256", th.StringType),
        th.Property("size", th.IntegerType),
        th.Property("page_count", th.IntegerType),
        th.Property("uri", th.StringType),
        th.Property("content_base64", th.StringType),
        th.Property("currency", th.StringType),
        th.Property(
            "subtotal_amount",
            th.NumberType,
            description="Principal + shipping + fees + discounts of its line items, exactly.",
        ),
        th.Property("tax_amount", th.NumberType),
        th.Property("total_amount", th.NumberType),
        th.Property(
            "amount_status",
            th.StringType,
            description="derived (summed from every line item naming it) or 'missing: <why>'.",
        ),
    ).to_dict()

    def to_invoices(self, record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        """A row of `invoices` per delivered PDF.

        Amazon Business has no account id in these APIs: the marketplace stands in.
        The amounts are those derived from the transactions' line items (or null, with
        amount_status saying why), credit memos negative.
        """
        if record.get("processing_status") != pipeline.DONE:
            return []
        credit = record["document_type"] == "Credits" or record.get("invoice_type") == "CREDIT_MEMO"
        kind = CREDIT_MEMO if credit else INVOICE
        return [
            {
                "platform": "amazon_business",
                "account_id": record["marketplace_id"],
                "invoice_number": record["invoice_number"],
                "document_kind": kind,
                "issue_date": record.get("invoice_date"),
                "currency": record.get("currency"),
                "subtotal_amount": signed(record.get("subtotal_amount"), kind),
                "tax_amount": signed(record.get("tax_amount"), kind),
                "total_amount": signed(record.get("total_amount"), kind),
                "amount_status": record.get("amount_status"),
                "status": INVOICE_STATUS.get(str(record.get("payment_status"))),
                "due_date": record.get("payment_due_date"),
                "document_uri": record.get("uri"),
                "document_sha256": record.get("sha256"),
            }
        ]

    @cached_property
    def document_settings(self) -> DocumentSettings:
        return DocumentSettings.from_config(self.config)

    def part_records(
        self, store: Store, context: Mapping[str, Any] | None
    ) -> Iterable[dict[str, Any]]:
        settings = store.settings
        # Said at the end of the run (calls.py): what createReport quota is left.
        CALLS.note(KEY, "createReport budget left", self._create_budget)
        state = self.get_context_state(context)
        delivered: dict[str, str] = state.setdefault("delivered", {})
        pending: dict[str, dict[str, Any]] = state.setdefault("pending_reports", {})
        cancelled: dict[str, dict[str, Any]] = state.setdefault("cancelled", {})
        bookmark = _parse(state.get("feed_date_bookmark"))
        lookback = dt.timedelta(days=settings.lookback_days)
        start = max(settings.start_date, bookmark - lookback) if bookmark else settings.start_date
        read = store.feed.read(start, self.logger)
        transactions, read_until = read.transactions, read.read_until
        holds: list[str] = []  # feed dates the bookmark may not pass
        details, unresolved, unresolved_orders = self._invoice_details(store, transactions)
        holds += unresolved
        # A consolidated invoice still "Pending": its charges stay in the next run's reads,
        # for at most CONSOLIDATION_WAIT (it is issued after its period closes).
        waited_enough = store.feed.run_end - CONSOLIDATION_WAIT
        for charged in consolidation_pending(transactions, details):
            if (_parse(charged) or waited_enough) >= waited_enough:
                holds.append(charged)
            else:
                LOGGER.warning(
                    "%sthe consolidated invoice of a charge fed %s is still Pending after %d "
                    "days: no longer waited for",
                    store_label(settings),
                    charged,
                    CONSOLIDATION_WAIT.days,
                )
        plan = plan_documents(
            transactions,
            details,
            document_types=settings.document_types,
            marketplace_ids=settings.marketplace_ids,
        )
        for request in plan.values():
            # Lines this run could not see may belong to the document: no sum then.
            if request.order_ids & unresolved_orders:
                request.amount_problems.add("invoice details of some of its orders failed")
            if read_until < store.feed.run_end:
                request.amount_problems.add(f"transactions fed after {iso_utc(read_until)} unread")

        for key, request in plan.items():
            if key in delivered:  # seen again (a later refund, say): keep it out of re-requests
                delivered[key] = max(delivered[key], request.last_feed_date)
        resumed: list[tuple[DocumentRequest, str]] = []
        for key, entry in pending.items():
            request = plan.get(key) or DocumentRequest.from_state(entry["request"])
            resumed.append((request, str(entry["report_id"])))
        today = self.today()
        waiting = {
            key
            for key, entry in cancelled.items()
            if not retry_due(entry, today, settings.cancelled_retry_days)
        }
        due = {
            key: plan.get(key) or DocumentRequest.from_state(entry["request"])
            for key, entry in cancelled.items()
            if key not in waiting and key not in pending
        }
        skip = {*delivered, *pending, *due}
        todo = sorted(
            [
                *(r for key, r in plan.items() if key not in skip),
                *due.values(),
            ],
            key=lambda r: (r.first_feed_date, r.key),
        )
        todo = [r for r in todo if r.key not in waiting]
        # Payment status of the invoices about to be fetched and of those delivered and
        # not Closed yet, 25 per call: new records carry it, changed ones are re-emitted.
        open_invoices: dict[str, dict[str, Any]] = state.setdefault("open_invoices", {})
        asked = {r.invoice_number for r in todo if r.document_type == "Invoice"}
        asked |= {r.invoice_number for r, _ in resumed if r.document_type == "Invoice"}
        asked |= {entry["request"]["invoice_number"] for entry in open_invoices.values()}
        payments, answered = self._payment_statuses(store, sorted(asked))
        for key, entry in list(open_invoices.items()):
            number = entry["request"]["invoice_number"]
            payment = payments.get(number)
            if payment is None:
                if number in answered or _open_too_long(entry, today):
                    # Amazon has no payment status for it (ERROR), or it never closed:
                    # not asked again every run for ever.
                    del open_invoices[key]
                continue
            if payment.fields() != {k: entry.get(k) for k in payment.fields()}:
                # The record rebuilt from state with its new status: no report, no
                # download again (the stored document keeps its uri and sha256).
                entry.update(payment.fields())
                yield self._reemitted(entry, settings.region)
            if payment.status == CLOSED:
                del open_invoices[key]
            self.checkpoint()
        LOGGER.info(
            "amazon_business: %d transactions fed %s..%s lead to %d documents: %d already "
            "delivered, %d reports to resume, %d to request (%d of them CANCELLED before and "
            "due again), %d CANCELLED before and not due again yet",
            len(transactions),
            iso_utc(start),
            iso_utc(read_until),
            len(plan),
            sum(1 for key in plan if key in delivered),
            len(resumed),
            len(todo),
            len(due),
            len(waiting),
        )

        def on_created(request: DocumentRequest, report_id: str) -> None:
            pending[request.key] = {"report_id": report_id, "request": request.to_state()}
            self.checkpoint()

        budget = settings.time_budget_seconds
        runner = pipeline.DocumentPipeline(
            store.client,
            DocumentStore(self.document_settings),
            max_bytes=self.document_settings.max_bytes,
            poll_interval=settings.poll_interval_seconds,
            progress_interval=settings.progress_interval_seconds,
            deadline=time.monotonic() + budget if budget else None,
            max_new_reports=settings.max_documents_per_run,
            request_keys=settings.document_request_keys,
            on_created=on_created,
        )
        for outcome in runner.run(todo, resumed):
            request = outcome.request
            retry = None
            if outcome.status == pipeline.CANCELLED:
                retry = self._cancelled(cancelled, request, today, settings)
            if outcome.status in (pipeline.DONE, pipeline.CANCELLED, pipeline.FATAL):
                record = document_record(
                    request,
                    processing_status=outcome.status,
                    report_id=outcome.report_id,
                    report_document_id=outcome.report_document_id,
                    stored=outcome.stored,
                )
                record = {**record, "region": settings.region, "next_request_date": retry}
                payment = payments.get(request.invoice_number)
                if outcome.status == pipeline.DONE and request.document_type == "Invoice":
                    record.update(payment.fields() if payment else {})
                    has_status = payment is not None or request.invoice_number not in answered
                    if has_status and (payment is None or payment.status != CLOSED):
                        open_invoices[request.key] = _open_invoice(record, request, today)
                yield record
            # The record above is written by now: only then is it safe to remember it.
            if outcome.status == pipeline.DONE:
                delivered[request.key] = request.last_feed_date
                cancelled.pop(request.key, None)
            elif outcome.status == pipeline.CANCELLED:
                # Remembered with its request in `cancelled`: the bookmark need not wait.
                self._explain(outcome, retry)
            else:
                # A CANCELLED document asked again is remembered in `cancelled` whatever
                # happens to the retry: holding the bookmark at its old feed date would
                # re-read (and re-request) everything fed since.
                if request.key not in cancelled:
                    holds.append(request.first_feed_date)
                self._explain(outcome)
            if outcome.status not in (pipeline.PENDING,) and not outcome.keep_report:
                pending.pop(request.key, None)
            self.checkpoint()

        # A failed window inside the look-back re-read does not undo the last run's
        # progress: what was fed before the old bookmark was handled then.
        new_bookmark = read_until if bookmark is None else max(bookmark, read_until)
        if holds:
            held = min(_parse(h) or read_until for h in holds)
            new_bookmark = min(new_bookmark, held)
        state["feed_date_bookmark"] = iso_utc(new_bookmark)
        next_start = max(settings.start_date, new_bookmark - lookback)
        # A bookmark held back below this run's start re-reads what this run skipped:
        # the documents delivered there must stay known, or they would be requested again.
        forget_before = min(next_start, start)
        for key, feed in list(delivered.items()):
            fed = _parse(feed)
            if fed is not None and fed < forget_before:
                del delivered[key]  # outside the next run's look-back: never seen again
        for key, entry in list(cancelled.items()):
            # Given up: kept a year for the record, then dropped once its transactions
            # are no longer re-read (or it would be asked for again).
            fed = _parse(entry["request"].get("last_feed_date"))
            gave_up = dt.date.fromisoformat(entry["last_cancelled"])
            if (
                entry.get("gave_up")
                and (today - gave_up).days > KEEP_GIVEN_UP_DAYS
                and (fed is None or fed < next_start)
            ):
                del cancelled[key]

    def today(self) -> dt.date:
        """The UTC day of this run, which the CANCELLED retry schedule counts in."""
        return dt.datetime.now(dt.timezone.utc).date()

    def _cancelled(
        self,
        cancelled: dict[str, dict[str, Any]],
        request: DocumentRequest,
        today: dt.date,
        settings: AmazonBusinessSettings,
    ) -> str | None:
        """Remember a CANCELLED document; the day it is asked again, or None: given up."""
        days = settings.cancelled_retry_days
        entry = cancelled.get(request.key)
        if entry is None:
            entry = {"first_cancelled": today.isoformat(), "retries": 0}
        else:
            # A retry: counted by the schedule's days passed, so a run skipped for a week
            # does not make the next runs retry day after day to catch up.
            first = dt.date.fromisoformat(entry["first_cancelled"])
            passed = sum(1 for d in days if today >= first + dt.timedelta(days=d))
            entry["retries"] = max(passed, int(entry.get("retries", 0)) + 1)
        entry["last_cancelled"] = today.isoformat()
        entry["request"] = request.to_state()
        cancelled[request.key] = entry
        if entry["retries"] >= len(days):
            entry["gave_up"] = True
            return None
        first = dt.date.fromisoformat(entry["first_cancelled"])
        return (first + dt.timedelta(days=days[entry["retries"]])).isoformat()

    @staticmethod
    def _reemitted(entry: Mapping[str, Any], region: str) -> dict[str, Any]:
        stored = entry["document"]
        record = document_record(
            DocumentRequest.from_state(entry["request"]),
            processing_status=pipeline.DONE,
            report_id=entry.get("report_id"),
            report_document_id=entry.get("report_document_id"),
            stored=StoredDocument(
                stored["sha256"], stored["size"], stored.get("page_count"), stored.get("uri"), None
            ),
        )
        return {
            **record,
            "region": region,
            "next_request_date": None,
            "payment_status": entry.get("payment_status"),
            "payment_due_date": entry.get("payment_due_date"),
        }

    def _payment_statuses(
        self, store: Store, numbers: list[str]
    ) -> tuple[dict[str, PaymentStatus], set[str]]:
        """getBatchInvoicePaymentDetails of these invoices, 25 a call: their statuses, and
        the invoices asked in batches that answered (those missing from the statuses have
        none: Amazon answered ERROR). A failed batch leaves its invoices without a status
        this run (asked again next run)."""
        found: dict[str, PaymentStatus] = {}
        answered: set[str] = set()
        for index in range(0, len(numbers), MAX_INVOICES_PER_PAYMENT_CALL):
            batch = numbers[index : index + MAX_INVOICES_PER_PAYMENT_CALL]
            item = f"{store_label(store.settings)}payment status of invoices {batch}"
            with self.failures.unit(self.name, item, self.logger) as call:
                found.update(payment_statuses(store.client.payment_details(batch)))
            if not call.failed:
                answered.update(batch)
        return found, answered

    def _create_budget(self) -> str:
        if len(self.stores) == 1:
            return self.stores[0].client.create_budget()
        return ", ".join(
            f"{store.settings.region} {store.client.create_budget()}" for store in self.stores
        )

    def _explain(self, outcome: pipeline.Outcome, retry: str | None = None) -> None:
        item = outcome.request.describe()
        if outcome.report_id:
            item += f" report {outcome.report_id}"
        if outcome.status in (pipeline.FATAL, pipeline.FAILED):
            self.record_failure(item, outcome.detail)
        elif outcome.status == pipeline.CANCELLED and retry:
            self.logger.info("%s: %s; asked again on %s", item, outcome.detail, retry)
        elif outcome.status == pipeline.CANCELLED:
            self.logger.warning(
                "%s: %s, also after %s days: given up (it stays in cancelled of this "
                "stream's state with gave_up; delete it there to ask again)",
                item,
                outcome.detail,
                ", ".join(str(d) for d in self.part(None).settings.cancelled_retry_days),
            )
        elif outcome.status == pipeline.PENDING:
            self.logger.info("%s still running: resumed next run", item)

    def _invoice_details(
        self, store: Store, transactions: list[dict[str, Any]]
    ) -> tuple[dict[Any, list[dict[str, Any]]], list[str], set[str]]:
        """Invoice details of every shipped line item, 25 per call.

        Returns the details, the feed dates of transactions whose lookup failed, and
        the orders of those line items.
        """
        keys = line_items_needing_details(transactions)
        results: list[dict[str, Any]] = []
        failed: set[tuple[str, str, str]] = set()
        for index in range(0, len(keys), MAX_LINE_ITEMS_PER_CALL):
            batch = keys[index : index + MAX_LINE_ITEMS_PER_CALL]
            body = [{"orderId": o, "orderLineItemId": li, "shipmentId": s} for o, li, s in batch]
            orders = sorted({k[0] for k in batch})
            item = f"{store_label(store.settings)}invoice details of orders {orders}"
            with self.failures.unit(self.name, item, self.logger) as lookup:
                results.extend(store.client.invoice_details(body))
            if lookup.failed:
                failed.update(batch)
        holds = []
        if failed:
            for txn in transactions:
                for item in txn.get("transactionLineItems") or []:
                    key = (item.get("orderId"), item.get("orderLineItemId"), item.get("shipmentId"))
                    if key in failed:
                        holds.append(str(txn["feedDate"]))
        return details_by_line_item(results), holds, {key[0] for key in failed}


def _open_invoice(
    record: Mapping[str, Any], request: DocumentRequest, today: dt.date
) -> dict[str, Any]:
    """What re-emitting a delivered invoice's record needs, JSON-safe (no PDF content)."""
    return {
        "delivered_on": today.isoformat(),
        "request": request.to_state(),
        "report_id": record.get("report_id"),
        "report_document_id": record.get("report_document_id"),
        "document": {k: record.get(k) for k in ("sha256", "size", "page_count", "uri")},
        "payment_status": record.get("payment_status"),
        "payment_due_date": record.get("payment_due_date"),
    }


OPEN_INVOICE_DAYS = 400  # an invoice open longer is no longer asked about each run


def _open_too_long(entry: Mapping[str, Any], today: dt.date) -> bool:
    delivered = entry.get("delivered_on")
    if not delivered:
        return False
    return (today - dt.date.fromisoformat(delivered)).days > OPEN_INVOICE_DAYS


def build_streams(tap: TapAdInvoices) -> list[Stream]:
    stores = []
    for settings in stores_from_config(tap.config):
        # Its own client: its own login and rate-limit buckets (Amazon's are per store).
        client = AmazonBusinessClient(settings, retry=retry_policy(tap.config))
        stores.append(Store(settings, client, TransactionFeed(settings, client, tap.failures)))
    return [TransactionsStream(tap, stores), InvoiceDocumentsStream(tap, stores)]
