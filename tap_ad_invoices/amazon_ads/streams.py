"""Stream `amazon_ads_billing_statements`: one record per row of the global invoicing report.

State (custom keys, written after every statement so a killed run loses nothing):
    {"accounts": {"<global account id>": {
        "synced_through": "2026-11-21",     # every window up to here was emitted
        "pending": [{"start": ..., "end": ..., "billing_statement_id": ...}]}},
     "request_form": "model"}               # the statement request form the API accepted
A pending statement is polled again by the next run, never re-created. With
`amazon_ads.regions` the same keys live in one partition per region (`regions`).
"""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import requests
import urllib3
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_ad_invoices import jobs
from tap_ad_invoices.amazon_ads.client import AmazonAdsClient, StatementRequest
from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.amazon_ads.conversion import StatementColumns, row_to_record, to_invoice
from tap_ad_invoices.amazon_ads.invoice_streams import summaries_selected
from tap_ad_invoices.amazon_ads.regions import Region, RegionalStream
from tap_ad_invoices.checkpoint import CheckpointingStream
from tap_ad_invoices.csvstream import iter_csv_rows
from tap_ad_invoices.errors import ApiError
from tap_ad_invoices.invoices import FeedsInvoices
from tap_ad_invoices.keycount import OccurrenceCounter
from tap_ad_invoices.redaction import redact
from tap_ad_invoices.regional import part_label
from tap_ad_invoices.settings import sync_range
from tap_ad_invoices.windows import Window, contiguous_end, plan_windows

if TYPE_CHECKING:
    from tap_ad_invoices.tap import TapAdInvoices

STREAM = "amazon_ads_billing_statements"
DOWNLOAD_ATTEMPTS = 5  # links expire and bodies get cut off: a fresh link each time
# What a body cut off mid-stream raises, from urllib3 up through gzip.
BROKEN_DOWNLOAD = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    EOFError,
    gzip.BadGzipFile,
    zlib.error,  # a corrupt or cut-off gzip stream
)  # a link can expire between poll and download: ask for a fresh one

SCHEMA = th.PropertiesList(
    th.Property(
        "account_id",
        th.StringType,
        required=True,
        description="Global account id (amzn1.ads-account.g.…).",
    ),
    th.Property(
        "region",
        th.StringType,
        description="The API host the statement was requested on: NA, EU or FE.",
    ),
    th.Property(
        "invoice_key",
        th.StringType,
        required=True,
        description="The invoice number; a row digest when the statement has none.",
    ),
    th.Property("invoice_number", th.StringType),
    th.Property("document_type", th.StringType, description="Invoice or credit note, as written."),
    th.Property("invoice_status", th.StringType, description="Paid, Unpaid, …, as written."),
    th.Property("invoice_date", th.DateType),
    th.Property("due_date", th.DateType),
    th.Property("service_start_date", th.DateType),
    th.Property("service_end_date", th.DateType),
    th.Property("country_code", th.StringType),
    th.Property("currency", th.StringType),
    th.Property("billable_amount", th.NumberType, description="Exact decimal."),
    th.Property("tax_amount", th.NumberType, description="Exact decimal."),
    th.Property("total_amount", th.NumberType, description="Exact decimal."),
    th.Property("amount_paid", th.NumberType, description="Exact decimal."),
    th.Property("remaining_amount", th.NumberType, description="Exact decimal."),
    th.Property(
        "amount_status",
        th.StringType,
        description="as_reported, derived (an exact sum of two columns), or missing: why.",
    ),
    th.Property("purchase_order", th.StringType),
    th.Property("advertiser_name", th.StringType),
    th.Property("payment_method", th.StringType),
    th.Property("statement_start_date", th.DateType, required=True),
    th.Property("statement_end_date", th.DateType, required=True),
    th.Property("billing_statement_id", th.StringType, required=True),
    th.Property(
        "columns",
        th.ObjectType(additional_properties=th.StringType),
        required=True,
        description="Every column of the row under its original header.",
    ),
).to_dict()


def waiting_line(logger: logging.Logger) -> Callable[[jobs.Progress], None]:
    """The lifecycle's progress, as Amazon Ads says it: what is pending on which account."""

    def log(progress: jobs.Progress) -> None:
        if progress.final or not progress.running:
            return
        per_account = Counter(job.spec.account_id for job in progress.running)
        left = "" if progress.eta is None else f"; about {jobs.duration(progress.eta)} left"
        logger.info(
            "Amazon Ads: waiting %.0f s so far on %d statement(s) being generated (%s); "
            "%d not requested yet, %d done%s",
            progress.elapsed,
            len(progress.running),
            ", ".join(f"{account}: {n}" for account, n in sorted(per_account.items())),
            progress.waiting,
            progress.done,
            left,
        )

    return log


def rereads_from(
    start: dt.date, end: dt.date, bookmark: dt.date, settings: AmazonAdsSettings
) -> dt.date:
    """Where a run that has synced through `bookmark` starts: the look-back, sliver-free."""
    start = max(start, bookmark - dt.timedelta(days=settings.lookback_days))
    return skip_lookback_sliver(start, end, bookmark, settings.window_days)


def skip_lookback_sliver(start: dt.date, end: dt.date, bookmark: dt.date, window: int) -> dt.date:
    """Drop the oldest few look-back days when they alone would cost a statement.

    With lookback_days 90 and window_days 90 the re-read is 91 days: one full
    statement and a one-day sliver on every run. A sliver of at most a thirtieth of a
    window (3 days of 90), made only of days already synced, is not worth a statement.
    """
    days = (end - start).days + 1
    sliver = days % window
    if days <= window or sliver == 0 or sliver > max(1, window // 30):
        return start
    trimmed = start + dt.timedelta(days=sliver)
    return trimmed if trimmed <= bookmark + dt.timedelta(days=1) else start


class BillingStatementsStream(FeedsInvoices, CheckpointingStream, RegionalStream):
    name = STREAM
    primary_keys = ("account_id", "invoice_key")
    # Incremental, and declared so: the catalog says INCREMENTAL, so a target never treats
    # a run's look-back re-read as the whole table (activate-version would soft-delete
    # the rest). The real bookmarks are the per-account windows in `accounts` below.
    replication_key = "statement_end_date"
    is_sorted = False
    creates_reports = True  # each statement is a report Amazon generates: synced after readers
    schema = SCHEMA
    # Records are typed by construction (str, date, Decimal, a dict of str), so the SDK's
    # per-value conformance pass is pure cost: a quarter of the emission time measured.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapAdInvoices, regions: list[Region]) -> None:
        super().__init__(tap, regions)
        self._described: set[tuple[str, tuple[str, ...]]] = set()  # (account, header) logged

    def to_invoices(self, record: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
        if self._summaries_feed_invoices:  # precedence: README, amazon_ads_invoices
            return ()
        return [to_invoice(record)]

    @functools.cached_property
    def _summaries_feed_invoices(self) -> bool:
        return summaries_selected(self._tap)

    # -- state ----------------------------------------------------------------------
    def _account_state(self, state: dict[str, Any], account_id: str) -> dict[str, Any]:
        return self.account_state(state, account_id, {"synced_through": None, "pending": []})

    def _remember_pending(
        self, state: dict[str, Any], client: AmazonAdsClient, job: jobs.Job[StatementRequest]
    ) -> None:
        request = job.spec
        self._account_state(state, request.account_id)["pending"].append(
            {
                "start": request.start.isoformat(),
                "end": request.end.isoformat(),
                "billing_statement_id": job.job_id,
            }
        )
        # The form the API just accepted: later runs start with it and pay no refusal.
        state["request_form"] = client.form.name
        self.checkpoint()

    def _forget_pending(self, state: dict[str, Any], request: StatementRequest) -> None:
        account = self._account_state(state, request.account_id)
        account["pending"] = [
            p
            for p in account["pending"]
            if (p["start"], p["end"]) != (request.start.isoformat(), request.end.isoformat())
        ]

    # -- planning -------------------------------------------------------------------
    def _plan(
        self, state: dict[str, Any], account_id: str, start: dt.date, end: dt.date
    ) -> list[tuple[Window, str | None]]:
        account = self._account_state(state, account_id)
        if account.get("synced_through"):
            bookmark = dt.date.fromisoformat(account["synced_through"])
            start = rereads_from(start, end, bookmark, self.settings)
        pending = {
            Window(dt.date.fromisoformat(p["start"]), dt.date.fromisoformat(p["end"])): p[
                "billing_statement_id"
            ]
            for p in account["pending"]
        }
        windows = plan_windows(start, end, self.settings.window_days, pending)
        return [(window, pending.get(window)) for window in windows]

    # -- sync -----------------------------------------------------------------------
    def part_records(
        self, region: Region, context: Mapping[str, Any] | None
    ) -> Iterable[dict[str, Any]]:
        if not self.selected and self._summaries_feed_invoices:
            return  # run only for `invoices`, which amazon_ads_invoices feeds instead
        client = region.client
        state = self.region_state(context)
        client.start_with(state.get("request_form"))
        start_at, end_at = sync_range(self.config)
        account_ids = region.account_ids(self._failures, STREAM, self.logger)
        if account_ids is None:
            return
        self.logger.info(
            "Amazon Ads: %s%d account(s): %s",
            part_label(region),
            len(account_ids),
            ", ".join(account_ids),
        )

        plans = {a: self._plan(state, a, start_at.date(), end_at.date()) for a in account_ids}
        done: dict[str, set[Window]] = {a: set() for a in account_ids}
        specs = [
            (StatementRequest(a, w.start, w.end), statement_id)
            for a in account_ids
            for w, statement_id in plans[a]
        ]

        runner: jobs.AsyncJobRunner[StatementRequest] = jobs.AsyncJobRunner(
            start=client.create_billing_statement,
            poll=lambda request, statement_id: self._poll(client, request, statement_id),
            poll_interval=self.settings.poll_interval_seconds,
            max_outstanding=self.settings.max_statements_in_flight,
            deadline=time.monotonic() + self.settings.max_wait_seconds,
            on_started=lambda job: self._remember_pending(state, client, job),
            on_progress=waiting_line(self.logger),
            progress_interval=self.settings.progress_interval_seconds,
        )
        still_running: list[StatementRequest] = []
        not_started: list[StatementRequest] = []
        for job in runner.run(specs):
            request = job.spec
            window = Window(request.start, request.end)
            if job.update.status is jobs.JobStatus.DONE:
                item = f"{request.account_id} {request.start}..{request.end}"
                with self._failures.unit(STREAM, item, self.logger) as statement:
                    yield from self._emit_statement(region, job)
                if not statement.failed:  # a failed statement's window is read again next run
                    done[request.account_id].add(window)
                    self._forget_pending(state, request)
            elif job.update.status is jobs.JobStatus.PENDING:
                (still_running if job.job_id is not None else not_started).append(request)
            else:
                self._forget_pending(state, request)  # FAILED: requested anew next run
                self._fail(
                    request,
                    f"statement {job.update.status.value}: {job.update.detail or 'no details'}",
                )
            self._advance_bookmark(
                state,
                request.account_id,
                [w for w, _ in plans[request.account_id]],
                done[request.account_id],
            )
            self.checkpoint()
        if still_running or not_started:
            self.logger.warning(
                "Amazon Ads: stopped waiting after amazon_ads.max_wait_seconds=%g: %d statement(s) "
                "still generating (%s; their ids are in state and the next run polls them) and "
                "%d not requested yet (accounts %s; the next run requests them)",
                self.settings.max_wait_seconds,
                len(still_running),
                "; ".join(str(r) for r in still_running) or "none",
                len(not_started),
                ", ".join(sorted({r.account_id for r in not_started})) or "none",
            )

    def _poll(
        self, client: AmazonAdsClient, request: StatementRequest, statement_id: str
    ) -> jobs.JobUpdate:
        try:
            return client.get_billing_statement(request, statement_id)
        except ApiError as exc:
            if exc.status == 404:
                raise jobs.JobLost("the API no longer knows this statement id") from exc
            raise

    def _fail(self, request: StatementRequest, reason: str) -> None:
        self._failures.record(
            STREAM,
            f"{request.account_id} {request.start}..{request.end}",
            redact(reason),
            self.logger,
        )

    def _advance_bookmark(
        self, state: dict[str, Any], account_id: str, windows: list[Window], done: set[Window]
    ) -> None:
        end = contiguous_end(windows, done)
        account = self._account_state(state, account_id)
        current = account.get("synced_through")
        if end is not None and (current is None or end.isoformat() > current):
            account["synced_through"] = end.isoformat()

    def _emit_statement(
        self, region: Region, job: jobs.Job[StatementRequest]
    ) -> Iterator[dict[str, Any]]:
        client = region.client
        request, statement_id = job.spec, job.job_id
        assert statement_id is not None
        link = job.update.result
        emitted = 0  # rows yielded by earlier attempts: the same statement, row for row
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                for record in self._statement_records(region, request, statement_id, link):
                    if record["row_number"] > emitted:
                        emitted = record.pop("row_number")
                        yield record
                self.logger.info("Amazon Ads: %s: %d row(s)", request, emitted)
                return
            except (ApiError, *BROKEN_DOWNLOAD) as exc:
                refused = isinstance(exc, ApiError) and exc.status in (400, 403)
                if attempt == DOWNLOAD_ATTEMPTS or not (refused or not isinstance(exc, ApiError)):
                    raise
                # Presigned links expire (X-Amz-Expires) and bodies get cut off: poll the
                # statement again for a fresh link and read it from the start, skipping
                # the rows already emitted.
                self.logger.warning(
                    "Amazon Ads: %s: download %s after %d row(s), asking for a new link "
                    "(attempt %d/%d)",
                    request,
                    f"refused ({exc.status})" if isinstance(exc, ApiError) else "interrupted",
                    emitted,
                    attempt + 1,
                    DOWNLOAD_ATTEMPTS,
                )
                update = client.get_billing_statement(request, statement_id)
                link = update.result

    def _statement_records(
        self, region: Region, request: StatementRequest, statement_id: str, link: str
    ) -> Iterator[dict[str, Any]]:
        """Every row of one statement download as a record, with its `row_number`."""
        with (
            region.client.open_download(link, str(request)) as raw,
            OccurrenceCounter() as occurrences,
        ):
            columns: StatementColumns | None = None
            for row in iter_csv_rows(raw):
                if columns is None or columns.header != row.header:
                    columns = StatementColumns(
                        row.header, self.settings.locale, self.settings.column_map
                    )
                    self._describe_columns(request.account_id, columns)
                    self._select_columns_like_their_object(row.header)
                record = row_to_record(
                    columns,
                    row.cells,
                    account_id=request.account_id,
                    statement_start=request.start,
                    statement_end=request.end,
                    row_number=row.number,
                )
                record["billing_statement_id"] = statement_id
                record["region"] = region.settings.region
                record["row_number"] = row.number
                # One invoice on several rows keeps every row: the n-th repeat gets "#n".
                repeat = occurrences.add(record["invoice_key"])
                if repeat > 1:
                    record["invoice_key"] += f"#{repeat}"
                yield record

    def _select_columns_like_their_object(self, header: list[str]) -> None:
        """Resolve each header's selection once, not on every row.

        The SDK looks up every key of every record in the selection mask; a free-form
        `columns` key is never there, so each lookup walks up to its parent. Entering
        the parent's answer for this header's keys keeps the result and the cost flat.
        """
        mask = self.mask
        parent = ("properties", "columns")
        for name in header:
            mask[(*parent, "properties", name)] = mask[parent]

    def _describe_columns(self, account_id: str, columns: StatementColumns) -> None:
        """Once per run and account: what the statement's header could not fill."""
        key = (account_id, tuple(columns.header))
        if key in self._described:
            return
        self._described.add(key)
        mapping = columns.mapping
        for field, (winner, losers) in mapping.conflicts.items():
            self.logger.info(
                "Amazon Ads: %s: %s is read from %r, not %s (column priority, README)",
                account_id,
                field,
                winner,
                ", ".join(repr(h) for h in losers),
            )
        if "invoice_number" not in mapping.positions:
            self.logger.warning(
                "Amazon Ads: %s: no invoice number column; rows are keyed by their content",
                account_id,
            )
        unmapped = ", ".join(repr(h) for h in mapping.unmapped_headers) or "none"
        if mapping.empty_amount_fields:  # loud: amounts will be derived or missing
            self.logger.warning(
                "Amazon Ads: %s: money field(s) with no column: %s; column(s) mapped to no "
                "typed field (kept under `columns`): %s. Map them with amazon_ads.column_map.",
                account_id,
                ", ".join(mapping.empty_amount_fields),
                unmapped,
            )
        elif mapping.unmapped_headers:
            self.logger.info(
                "Amazon Ads: %s: column(s) mapped to no typed field (kept under `columns`): %s",
                account_id,
                unmapped,
            )
