"""Amazon Business document reports on the shared report lifecycle (`jobs.AsyncJobRunner`).

This module is only the API adapter: which call starts a report (createReport),
how its status words map (DONE, CANCELLED, FATAL, IN_QUEUE/IN_PROGRESS), and
what fetching a finished report means (getReportDocument, then the presigned
download at once, with a fresh link if it expired). The runner overlaps the
three under their own rate limits, so the wall time approaches the slower of
the createReport and getReportDocument buckets (one a minute each after a burst
of 15): the rate-limit floor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tap_ad_invoices.documents import DocumentStore, StoredDocument, unwrap_pdf
from tap_ad_invoices.errors import ApiError
from tap_ad_invoices.jobs import (
    FETCH,
    POLL,
    START,
    AsyncJobRunner,
    Job,
    JobLost,
    JobStatus,
    JobUpdate,
    Progress,
    duration,
)

from .client import AmazonBusinessClient
from .config import INVOICE_KEYS
from .conversion import DocumentRequest

LOGGER = logging.getLogger("tap_ad_invoices.amazon_business")

# The outcome of one document, in the Document API's words where it has one.
DONE, CANCELLED, FATAL = "DONE", "CANCELLED", "FATAL"
FAILED = "FAILED"  # an API or document error on our side of the report
PENDING = "PENDING"  # the report is still running (or done, not downloaded) when the run stops
NOT_STARTED = "NOT_STARTED"  # the run's budget ran out before its report was created
LINK_ATTEMPTS = 3  # presigned URLs expire after 5 minutes: ask for a fresh one this often

# The operation of each step, whose token bucket paces it.
OPERATIONS = {START: "createReport", POLL: "getReport", FETCH: "getReportDocument"}


@dataclass
class Outcome:
    request: DocumentRequest
    status: str
    report_id: str | None = None
    report_document_id: str | None = None
    stored: StoredDocument | None = None
    detail: str = ""
    keep_report: bool = False  # FAILED after DONE: the next run downloads again, no new report


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
        request_keys: str = INVOICE_KEYS,
        on_created: Callable[[DocumentRequest, str], None] = lambda request, report_id: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.store = store
        self.max_bytes = max_bytes
        self.request_keys = request_keys  # how createReport names a document (by region)
        self._resumed: set[str] = set()  # report ids from earlier runs: a 404 means expired
        self.runner: AsyncJobRunner[DocumentRequest] = AsyncJobRunner(
            start=self._create,
            poll=self._poll,
            fetch=self._fetch,
            limits={step: client.buckets[op] for step, op in OPERATIONS.items()},
            poll_interval=poll_interval,
            max_outstanding=max_outstanding,
            deadline=deadline,
            max_new_jobs=max_new_reports,
            budget_setting="max_documents_per_run",
            step_names=OPERATIONS,
            on_started=lambda job: on_created(job.spec, str(job.job_id)),
            on_progress=self._log_progress,
            progress_interval=progress_interval,
            describe=lambda request: request.describe(),
            clock=clock,
            sleep=sleep,
        )

    @property
    def created(self) -> int:
        return self.runner.started

    def run(
        self, todo: list[DocumentRequest], resumed: list[tuple[DocumentRequest, str]]
    ) -> Iterator[Outcome]:
        """Yield one Outcome per document: resumed report ids are polled, not re-created."""
        self._resumed = {report_id for _, report_id in resumed}
        specs = [*resumed, *((request, None) for request in todo)]
        for job in self.runner.run(specs):
            yield _outcome(job)

    # -- the API's calls ---------------------------------------------------------------
    def _create(self, request: DocumentRequest) -> str:
        if self.request_keys == INVOICE_KEYS:
            return self.client.create_report(
                request.invoice_number, request.document_type, request.marketplace_id
            )
        return self.client.create_report(
            request.invoice_number,
            request.document_type,
            request.marketplace_id,
            report_options=request.report_options(self.request_keys),
        )

    def _poll(self, request: DocumentRequest, report_id: str) -> JobUpdate:
        try:
            body = self.client.get_report(report_id)
        except ApiError as exc:
            if exc.status == 404 and report_id in self._resumed:
                # A report from an earlier run is gone (Amazon keeps them 30-90 days).
                raise JobLost(f"report {report_id} no longer exists") from exc
            raise
        status = str(body.get("processingStatus"))
        if status == DONE:
            if not body.get("reportDocumentId"):
                return JobUpdate(JobStatus.ERROR, detail="getReport: DONE without reportDocumentId")
            return JobUpdate(JobStatus.DONE, str(body["reportDocumentId"]), api_status=DONE)
        if status == CANCELLED:
            why = "report CANCELLED: Amazon has no such document (yet)"
            return JobUpdate(JobStatus.CANCELLED, detail=why, api_status=CANCELLED)
        if status == FATAL:
            return JobUpdate(JobStatus.FAILED, detail="report processing FATAL", api_status=FATAL)
        return JobUpdate(JobStatus.PENDING, api_status=status)  # IN_QUEUE, IN_PROGRESS

    def _fetch(self, job: Job[DocumentRequest]) -> StoredDocument:
        """getReportDocument, then the presigned download at once; a fresh link if expired."""
        request, document_id = job.spec, str(job.update.result)
        what = f"{request.describe()} report document {document_id}"
        for attempt in range(1, LINK_ATTEMPTS + 1):
            document = self.client.get_report_document(document_id)
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
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _log_progress(self, progress: Progress) -> None:
        create_rate = self.client.rate("createReport")
        document_rate = self.client.rate("getReportDocument")
        LOGGER.info(
            "amazon_business documents: %d done, %d pending (%d waiting to start, %d running, "
            "%d ready to download), %d failed; about %s left at createReport %.3g/s and "
            "getReportDocument %.3g/s",
            progress.done,
            progress.pending,
            progress.waiting,
            len(progress.running),
            progress.ready,
            progress.failed,
            duration(progress.eta or 0.0),
            create_rate,
            document_rate,
        )


def _outcome(job: Job[DocumentRequest]) -> Outcome:
    """The lifecycle's verdict on one document, in this source's words."""
    update, request = job.update, job.spec
    if update.status is JobStatus.PENDING:
        status = PENDING if job.job_id is not None else NOT_STARTED
        return Outcome(request, status, job.job_id, detail=update.detail)
    if update.status is JobStatus.ERROR:
        document_id = str(update.result) if job.failed_step == FETCH else None
        return Outcome(
            request,
            FAILED,
            job.job_id,
            document_id,
            detail=update.detail,
            keep_report=job.keep_id,
        )
    stored = job.fetched if update.status is JobStatus.DONE else None
    document_id = str(update.result) if update.status is JobStatus.DONE else None
    return Outcome(request, update.api_status, job.job_id, document_id, stored, update.detail)
