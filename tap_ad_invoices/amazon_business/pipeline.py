"""Document reports, pipelined within Amazon's rate limits.

createReport and getReportDocument each allow about one call a minute after a
burst of 15, from separate buckets. A create-poll-download loop pays both limits
plus the report time for every document; here the three kinds of work overlap
on one thread: a report is created whenever the createReport bucket has a token,
outstanding reports are polled when due, and a finished report's document is
fetched and downloaded as soon as the getReportDocument bucket allows, so the
wall time approaches the slower of the two buckets (the rate-limit floor).

Nothing blocks on a bucket: each step checks `wait_time()` and the loop sleeps
only until the next thing can happen. (The shared `jobs.AsyncJobRunner` blocks
in `start` and hands finished jobs to a caller that then blocks on
getReportDocument, which serialises the two limits.)
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tap_ad_invoices.documents import DocumentStore, StoredDocument, unwrap_pdf
from tap_ad_invoices.errors import ApiError, item_errors

from .client import AmazonBusinessClient
from .conversion import DocumentRequest

LOGGER = logging.getLogger("tap_ad_invoices.amazon_business")

DONE, CANCELLED, FATAL = "DONE", "CANCELLED", "FATAL"
FAILED = "FAILED"  # an API or document error on our side of the report
PENDING = "PENDING"  # the report is still running (or done, not downloaded) when the run stops
NOT_STARTED = "NOT_STARTED"  # the run's budget ran out before its report was created
LINK_ATTEMPTS = 3  # presigned URLs expire after 5 minutes: ask for a fresh one this often


@dataclass
class Outcome:
    request: DocumentRequest
    status: str
    report_id: str | None = None
    report_document_id: str | None = None
    stored: StoredDocument | None = None
    detail: str = ""
    keep_report: bool = False  # FAILED after DONE: the next run downloads again, no new report


@dataclass
class _Report:
    request: DocumentRequest
    report_id: str
    next_poll: float
    resumed: bool = False
    report_document_id: str | None = None


class Progress:
    """One log line per `interval`: done, pending, failed, and the time left."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self._clock = clock
        self.next_at = clock() + interval
        self.done = self.failed = 0

    def maybe_log(
        self,
        *,
        waiting: int,
        running: int,
        ready: int,
        create_rate: float,
        document_rate: float,
        force: bool = False,
    ) -> None:
        now = self._clock()
        if not force and now < self.next_at:
            return
        self.next_at = now + self.interval
        # Each waiting document needs a createReport call and every unfinished one a
        # getReportDocument call; the two buckets run side by side.
        left = max(waiting / create_rate, (waiting + running + ready) / document_rate)
        LOGGER.info(
            "amazon_business documents: %d done, %d pending (%d waiting to start, %d running, "
            "%d ready to download), %d failed; about %s left at createReport %.3g/s and "
            "getReportDocument %.3g/s",
            self.done,
            waiting + running + ready,
            waiting,
            running,
            ready,
            self.failed,
            _duration(left),
            create_rate,
            document_rate,
        )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class DocumentPipeline:
    def __init__(
        self,
        client: AmazonBusinessClient,
        store: DocumentStore,
        *,
        max_bytes: int,
        poll_interval: float,
        progress_interval: float = 60.0,
        deadline: float | None = None,
        max_new_reports: int | None = None,
        max_outstanding: int = 500,
        on_created: Callable[[DocumentRequest, str], None] = lambda request, report_id: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.store = store
        self.max_bytes = max_bytes
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_new_reports = max_new_reports
        self.max_outstanding = max_outstanding
        self.on_created = on_created
        self._clock = clock
        self._sleep = sleep
        self.progress = Progress(progress_interval, clock)
        self.created = 0

    def _wait(self, operation: str) -> float:
        return self.client.buckets[operation].wait_time()

    def run(
        self, todo: list[DocumentRequest], resumed: list[tuple[DocumentRequest, str]]
    ) -> Iterator[Outcome]:
        """Yield one Outcome per document: resumed report ids are polled, not re-created."""
        now = self._clock()
        waiting: deque[DocumentRequest] = deque(todo)
        running: list[_Report] = [_Report(r, rid, now, resumed=True) for r, rid in resumed]
        ready: deque[_Report] = deque()
        while waiting or running or ready:
            now = self._clock()
            if self.deadline is not None and now >= self.deadline:
                LOGGER.info(
                    "amazon_business: time budget used up; unfinished reports resume next run"
                )
                yield from self._stop(waiting, running, ready, "time budget of this run used up")
                return
            if waiting and self._budget_spent():
                for request in waiting:
                    yield Outcome(request, NOT_STARTED, detail="max_documents_per_run reached")
                waiting.clear()
                continue
            acted = False

            if ready and self._wait("getReportDocument") == 0:
                report = ready.popleft()
                outcome = self._fetch(report)
                self._count(outcome)
                yield outcome
                acted = True

            if (
                waiting
                and len(running) + len(ready) < self.max_outstanding
                and self._wait("createReport") == 0
            ):
                request = waiting.popleft()
                with item_errors(LOGGER, f"createReport for {request.describe()}") as creation:
                    report_id = self.client.create_report(
                        request.invoice_number, request.document_type, request.marketplace_id
                    )
                if creation.failed:
                    outcome = Outcome(request, FAILED, detail=f"createReport: {creation.reason}")
                    self._count(outcome)
                    yield outcome
                else:
                    self.created += 1
                    self.on_created(request, report_id)
                    running.append(_Report(request, report_id, now + self.poll_interval))
                acted = True

            for report in sorted(
                (r for r in running if r.next_poll <= now), key=lambda r: r.next_poll
            ):
                if self._wait("getReport") > 0:
                    break
                acted = True
                outcome_or_none = self._poll(report, waiting, ready)
                running.remove(report)
                if outcome_or_none is None:
                    continue
                if outcome_or_none.status == PENDING:
                    report.next_poll = self._clock() + self.poll_interval
                    running.append(report)
                    continue
                self._count(outcome_or_none)
                yield outcome_or_none

            self.progress.maybe_log(
                waiting=len(waiting),
                running=len(running),
                ready=len(ready),
                create_rate=self.client.rate("createReport"),
                document_rate=self.client.rate("getReportDocument"),
            )
            if not acted:
                self._sleep(self._idle_time(waiting, running, ready))
        self.progress.maybe_log(
            waiting=0,
            running=0,
            ready=0,
            create_rate=self.client.rate("createReport"),
            document_rate=self.client.rate("getReportDocument"),
            force=True,
        )

    def _budget_spent(self) -> bool:
        return self.max_new_reports is not None and self.created >= self.max_new_reports

    def _count(self, outcome: Outcome) -> None:
        if outcome.status == DONE:
            self.progress.done += 1
        elif outcome.status in (FAILED, FATAL):
            self.progress.failed += 1

    def _idle_time(
        self, waiting: deque[DocumentRequest], running: list[_Report], ready: deque[_Report]
    ) -> float:
        now = self._clock()
        moments = [self.progress.next_at]
        if self.deadline is not None:
            moments.append(self.deadline)
        if ready:
            moments.append(now + self._wait("getReportDocument"))
        if (
            waiting
            and not self._budget_spent()
            and len(running) + len(ready) < self.max_outstanding
        ):
            moments.append(now + self._wait("createReport"))
        if running:
            due = min(r.next_poll for r in running)
            moments.append(max(due, now + self._wait("getReport")))
        return min(max(0.001, min(moments) - now), max(self.poll_interval, 0.001))

    def _stop(
        self,
        waiting: deque[DocumentRequest],
        running: list[_Report],
        ready: deque[_Report],
        why: str,
    ) -> Iterator[Outcome]:
        for report in [*running, *ready]:
            yield Outcome(report.request, PENDING, report.report_id, detail=why)
        for request in waiting:
            yield Outcome(request, NOT_STARTED, detail=why)

    def _poll(
        self, report: _Report, waiting: deque[DocumentRequest], ready: deque[_Report]
    ) -> Outcome | None:
        """PENDING to poll again, None when moved to `ready` or back to `waiting`."""
        request = report.request
        with item_errors(LOGGER, f"getReport {report.report_id}") as poll:
            body = self.client.get_report(report.report_id)
        if poll.failed:
            exc = poll.error
            if isinstance(exc, ApiError) and exc.status == 404 and report.resumed:
                # A report from an earlier run is gone (Amazon keeps them 30-90 days).
                LOGGER.warning(
                    "%s: report %s no longer exists; requesting a new one",
                    request.describe(),
                    report.report_id,
                )
                waiting.appendleft(request)
                return None
            # The report itself may be fine: keep its id, the next run polls it again.
            return Outcome(
                request,
                FAILED,
                report.report_id,
                detail=f"getReport: {poll.reason}",
                keep_report=True,
            )
        status = str(body.get("processingStatus"))
        if status == DONE:
            if not body.get("reportDocumentId"):
                return Outcome(
                    request,
                    FAILED,
                    report.report_id,
                    detail="getReport: DONE without reportDocumentId",
                )
            report.report_document_id = str(body["reportDocumentId"])
            ready.append(report)
            return None
        if status == CANCELLED:
            return Outcome(
                request,
                CANCELLED,
                report.report_id,
                detail="report CANCELLED: Amazon has no such document (yet)",
            )
        if status == FATAL:
            return Outcome(request, FATAL, report.report_id, detail="report processing FATAL")
        return Outcome(request, PENDING, report.report_id)  # IN_QUEUE, IN_PROGRESS

    def _fetch(self, report: _Report) -> Outcome:
        """getReportDocument, then the presigned download at once; a fresh link if expired."""
        request = report.request
        assert report.report_document_id is not None
        what = f"{request.describe()} report document {report.report_document_id}"
        with item_errors(LOGGER, what) as fetch:
            stored = self._download_and_store(report, what)
        if fetch.failed or stored is None:
            return Outcome(
                request,
                FAILED,
                report.report_id,
                report.report_document_id,
                detail=fetch.reason or "no download link worked",
                keep_report=True,
            )
        return Outcome(request, DONE, report.report_id, report.report_document_id, stored)

    def _download_and_store(self, report: _Report, what: str) -> StoredDocument | None:
        request = report.request
        assert report.report_document_id is not None
        for attempt in range(1, LINK_ATTEMPTS + 1):
            document = self.client.get_report_document(report.report_document_id)
            try:
                raw = self.client.download(str(document["url"]), self.max_bytes, what)
            except ApiError as exc:
                if exc.status == 403 and attempt < LINK_ATTEMPTS:
                    LOGGER.warning(
                        "%s: download link refused (expired?); asking for a new one", what
                    )
                    continue
                raise
            # Never trust compressionAlgorithm: sniff gzip / zip / %PDF in memory.
            pdf = unwrap_pdf(raw, self.max_bytes, what)
            return self.store.store(
                pdf,
                source="amazon_business",
                account=request.marketplace_id,
                name=f"{request.invoice_number}-{request.document_type}",
            )
        return None
