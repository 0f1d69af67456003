"""The asynchronous report lifecycle, written once: start, poll together, fetch, hand over.

Amazon Ads billing statements and Amazon Business document reports have the
same shape: ask for a report, poll its status, fetch what it produced from a
short-lived link. One `AsyncJobRunner` runs any number of such jobs on one
thread; each API supplies only its calls:

- `start(spec) -> job id` (createReport, POST /billingStatements),
- `poll(spec, job id) -> JobUpdate`, mapping the API's own status words onto
  `JobStatus` (raise `JobLost` when the API no longer knows the id),
- optionally `fetch(job) -> result`, a rate-limited step after DONE
  (getReportDocument and the download); without it a DONE job is handed over
  as it is and the caller downloads it.

Nothing blocks on a rate limit: each step has an optional limit (a token bucket
with `wait_time()`); a step runs when its limit has a token, and the loop sleeps
only until the next thing can happen. So creating new jobs, polling running
ones and fetching finished ones overlap, and the wall time approaches the
slowest limit (the floor) instead of their sum.

Job ids are reported through `on_started` the moment they exist, so the caller
can put them in state: a run that stops (deadline, budget of new jobs, a crash)
leaves them for the next run to resume instead of re-requesting them.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from tap_ad_invoices.errors import item_errors

LOGGER = logging.getLogger("tap_ad_invoices.jobs")

SpecT = TypeVar("SpecT")

# The three calls of a job, each of which may have a rate limit of its own.
START, POLL, FETCH = "start", "poll", "fetch"


class JobLost(Exception):
    """The API no longer knows a job id (expired, purged): start the job again, once."""


class JobStatus(enum.Enum):
    PENDING = "PENDING"  # running when the run had to stop; never started if job_id is None
    DONE = "DONE"
    FAILED = "FAILED"  # the API's verdict: the report itself failed
    CANCELLED = "CANCELLED"  # the API's verdict: nothing to report (no such document, yet)
    ERROR = "ERROR"  # a call of ours failed (start, poll or fetch)


@dataclass
class JobUpdate:
    status: JobStatus
    result: Any = None  # what the API returned for a finished job (a link, a document id)
    detail: str = ""
    api_status: str = ""  # the API's own word (SUCCESS, FATAL, ...), for records and logs


@dataclass
class Job(Generic[SpecT]):
    spec: SpecT
    job_id: str | None = None
    resumed: bool = False
    update: JobUpdate = field(default_factory=lambda: JobUpdate(JobStatus.PENDING))
    polls: int = 0
    restarts: int = 0
    fetched: Any = None  # what `fetch` returned
    # An ERROR raised by a poll or a fetch says nothing about the job itself: its id
    # is still good, and the next run can poll it again instead of paying a new start.
    keep_id: bool = False
    failed_step: str | None = None  # START, POLL or FETCH when the status is ERROR
    next_poll: float = 0.0


class RateLimit(Protocol):
    """What the runner needs of a token bucket: is a token free, and the sustained rate."""

    rate: float

    def wait_time(self) -> float: ...


@dataclass
class Progress:
    """Where a run of jobs stands, handed to `on_progress` every `progress_interval`."""

    done: int
    failed: int
    waiting: int  # not started yet
    running: list[Job[Any]]
    ready: int  # finished on the API's side, not fetched yet
    elapsed: float
    eta: float | None  # seconds, from the rate limits and the pace so far; None if unknown
    final: bool = False

    @property
    def pending(self) -> int:
        return self.waiting + len(self.running) + self.ready


def duration(seconds: float) -> str:
    """`1h05m` or `3m07s`: how long, for a log line."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class AsyncJobRunner(Generic[SpecT]):
    def __init__(
        self,
        *,
        start: Callable[[SpecT], str],
        poll: Callable[[SpecT, str], JobUpdate],
        poll_interval: float,
        fetch: Callable[[Job[SpecT]], Any] | None = None,
        limits: Mapping[str, RateLimit | None] | None = None,
        max_outstanding: int = 10,
        deadline: float | None = None,
        max_new_jobs: int | None = None,
        budget_setting: str = "the budget of new jobs",
        step_names: Mapping[str, str] | None = None,
        on_started: Callable[[Job[SpecT]], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_interval: float = 60.0,
        describe: Callable[[SpecT], str] = str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._start = start
        self._poll = poll
        self._fetch = fetch
        self._limits = dict(limits or {})
        self.poll_interval = max(0.0, poll_interval)
        self.max_outstanding = max(1, max_outstanding)
        self.deadline = deadline
        self.max_new_jobs = max_new_jobs
        self._budget_setting = budget_setting  # named in the detail of jobs never started
        # The API's name of each call ("createReport"), for the line naming what failed.
        self._step_names = {START: START, POLL: POLL, FETCH: FETCH, **(step_names or {})}
        self._on_started = on_started or (lambda job: None)
        self._on_progress = on_progress
        self.progress_interval = progress_interval
        self._describe = describe
        self._clock = clock
        self._sleep = sleep
        self.started = 0  # jobs this run started (the budget counts these)
        self.done = self.failed = 0

    # -- the loop -------------------------------------------------------------------
    def run(self, specs: Iterable[tuple[SpecT, str | None]]) -> Iterator[Job[SpecT]]:
        """Yield every job once: DONE/FAILED/CANCELLED/ERROR, or PENDING if the run stopped.

        Each spec comes with the id of a job started by an earlier run, or None;
        those are polled, not started again. An exception in one job's call fails
        that job only; a `SourceUnavailable` (refused credentials, a host gone)
        ends the whole run of jobs.
        """
        began = self._clock()
        self._next_progress = began + self.progress_interval
        waiting: deque[Job[SpecT]] = deque()
        running: list[Job[SpecT]] = []
        ready: deque[Job[SpecT]] = deque()
        for spec, job_id in specs:
            if job_id is None:
                waiting.append(Job(spec))
            else:  # already running on the API's side: poll it at once
                running.append(Job(spec, job_id, resumed=True, next_poll=began))
        first = True
        while waiting or running or ready:
            if not first and self._past_deadline():
                yield from self._stop(waiting, running, ready)
                return
            first = False
            if waiting and self._budget_spent():
                for job in waiting:
                    job.update = JobUpdate(
                        JobStatus.PENDING, detail=f"{self._budget_setting} reached"
                    )
                    yield job
                waiting.clear()
                continue
            acted = False
            # Fetch first: its limit is usually the scarcest, keep it busy.
            if ready and self._free(FETCH):
                yield self._finish(self._fetched(ready.popleft()))
                acted = True
            while self._may_start(waiting, running, ready):
                job = waiting.popleft()
                acted = True
                if self._started(job):
                    running.append(job)
                else:
                    yield self._finish(job)
            for job in sorted((j for j in running if j.next_poll <= self._clock()), key=_due):
                if not self._free(POLL):
                    break
                acted = True
                running.remove(job)
                where = self._polled(job, waiting)
                if where == "running":
                    running.append(job)
                elif where == "ready":
                    ready.append(job)
                elif where == "over":
                    yield self._finish(job)
            self._report(waiting, running, ready, began)
            if not acted and (waiting or running or ready):
                self._sleep(self._idle_time(waiting, running, ready))
        self._report(waiting, running, ready, began, final=True)

    # -- one job's steps --------------------------------------------------------------
    def _started(self, job: Job[SpecT]) -> bool:
        with item_errors(
            LOGGER, f"{self._step_names[START]} for {self._describe(job.spec)}"
        ) as call:
            job.job_id = self._start(job.spec)
        if call.failed:
            self._failed(job, START, call.reason)
            return False
        self.started += 1
        job.next_poll = self._clock() + self.poll_interval
        self._on_started(job)
        return True

    def _polled(self, job: Job[SpecT], waiting: deque[Job[SpecT]]) -> str:
        """Where the job goes next: running, ready, over, or restarted (back to waiting)."""
        assert job.job_id is not None
        with item_errors(LOGGER, f"{self._step_names[POLL]} {job.job_id}") as call:
            job.update = self._poll(job.spec, job.job_id)
        if isinstance(call.error, JobLost):
            if job.restarts == 0:
                LOGGER.warning("%s: %s; requesting it again", self._describe(job.spec), call.error)
                job.job_id, job.resumed, job.restarts = None, False, 1
                waiting.appendleft(job)
                return "restarted"
            self._failed(job, POLL, str(call.error))
            return "over"
        if call.failed:
            # The job itself may be fine: its id stays good for the next run.
            self._failed(job, POLL, call.reason, keep_id=True)
            return "over"
        job.polls += 1
        if job.update.status is JobStatus.PENDING:
            job.next_poll = self._clock() + self.poll_interval
            return "running"
        if job.update.status is JobStatus.DONE and self._fetch is not None:
            return "ready"
        return "over"

    def _fetched(self, job: Job[SpecT]) -> Job[SpecT]:
        assert self._fetch is not None
        with item_errors(
            LOGGER, f"{self._step_names[FETCH]} for {self._describe(job.spec)}"
        ) as call:
            job.fetched = self._fetch(job)
        if call.failed:
            # Finished on the API's side: the next run fetches it again, no new start.
            self._failed(job, FETCH, call.reason, keep_id=True)
        return job

    def _failed(self, job: Job[SpecT], step: str, reason: str, *, keep_id: bool = False) -> None:
        previous = job.update
        job.update = JobUpdate(
            JobStatus.ERROR,
            previous.result,
            f"{self._step_names[step]}: {reason}",
            previous.api_status,
        )
        job.failed_step, job.keep_id = step, keep_id

    def _finish(self, job: Job[SpecT]) -> Job[SpecT]:
        if job.update.status is JobStatus.DONE:
            self.done += 1
        elif job.update.status in (JobStatus.FAILED, JobStatus.ERROR):
            self.failed += 1
        return job

    def _stop(
        self, waiting: deque[Job[SpecT]], running: list[Job[SpecT]], ready: deque[Job[SpecT]]
    ) -> Iterator[Job[SpecT]]:
        LOGGER.info(
            "time budget of this run used up: %d job(s) still running or not fetched keep "
            "their ids for the next run; %d not started are planned again next run",
            len(running) + len(ready),
            len(waiting),
        )
        for job in [*running, *ready]:
            job.update = JobUpdate(JobStatus.PENDING, detail="time budget of this run used up")
            yield job
        for job in waiting:
            job.update = JobUpdate(JobStatus.PENDING, detail="time budget of this run used up")
            yield job

    # -- scheduling -------------------------------------------------------------------
    def _past_deadline(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def _budget_spent(self) -> bool:
        return self.max_new_jobs is not None and self.started >= self.max_new_jobs

    def _wait(self, step: str) -> float:
        limit = self._limits.get(step)
        return 0.0 if limit is None else limit.wait_time()

    def _free(self, step: str) -> bool:
        return self._wait(step) == 0

    def _may_start(
        self,
        waiting: deque[Job[SpecT]],
        running: list[Job[SpecT]],
        ready: deque[Job[SpecT]],
        *,
        ignore_limit: bool = False,
    ) -> bool:
        return (
            bool(waiting)
            and not self._budget_spent()
            and len(running) + len(ready) < self.max_outstanding
            and (ignore_limit or self._free(START))
        )

    def _idle_time(
        self, waiting: deque[Job[SpecT]], running: list[Job[SpecT]], ready: deque[Job[SpecT]]
    ) -> float:
        """Until the next thing can happen: a token, a poll falling due, progress, deadline."""
        now = self._clock()
        moments = []
        if self._on_progress is not None:
            moments.append(self._next_progress)
        if self.deadline is not None:
            moments.append(self.deadline)
        if ready:
            moments.append(now + self._wait(FETCH))
        if (
            waiting
            and not self._budget_spent()
            and len(running) + len(ready) < self.max_outstanding
        ):
            moments.append(now + self._wait(START))
        if running:
            due = min(j.next_poll for j in running)
            moments.append(max(due, now + self._wait(POLL)))
        if not moments:
            return self.poll_interval
        return min(max(0.001, min(moments) - now), max(self.poll_interval, 0.001))

    # -- progress ---------------------------------------------------------------------
    def _report(
        self,
        waiting: deque[Job[SpecT]],
        running: list[Job[SpecT]],
        ready: deque[Job[SpecT]],
        began: float,
        *,
        final: bool = False,
    ) -> None:
        if self._on_progress is None:
            return
        now = self._clock()
        if not final and now < self._next_progress:
            return
        self._next_progress = now + self.progress_interval
        self._on_progress(
            Progress(
                done=self.done,
                failed=self.failed,
                waiting=len(waiting),
                running=list(running),
                ready=len(ready),
                elapsed=now - began,
                eta=self._eta(len(waiting), len(running), len(ready), now - began),
                final=final,
            )
        )

    def _eta(self, waiting: int, running: int, ready: int, elapsed: float) -> float | None:
        """The larger of what the rate limits allow and the pace seen so far."""
        if not waiting + running + ready:
            return 0.0
        bounds = []
        # Each waiting job needs a start, and every unfinished one a fetch.
        for step, jobs in ((START, waiting), (FETCH, waiting + running + ready)):
            limit = self._limits.get(step)
            if limit is not None and jobs:
                bounds.append(jobs / limit.rate)
        finished = self.done + self.failed
        if finished:
            bounds.append(elapsed / finished * (waiting + running + ready))
        return max(bounds) if bounds else None


def _due(job: Job[Any]) -> float:
    return job.next_poll
