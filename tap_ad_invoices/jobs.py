"""The asynchronous report lifecycle, written once: start, poll together, hand over.

Amazon Ads billing statements and Amazon Business document reports have the
same shape: ask for a report, poll its status, download it when done. This
runner keeps up to `max_outstanding` jobs in flight, polls the outstanding ones
in one sweep per `poll_interval`, and yields each job as soon as it finishes.
Job ids are reported through `on_started` the moment they exist, so the caller
can put them in state: a run that has to stop leaves them for the next run to
resume instead of re-requesting them.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tap_ad_invoices.errors import SourceUnavailable

LOGGER = logging.getLogger("tap_ad_invoices.jobs")

SpecT = TypeVar("SpecT")


class JobLost(Exception):
    """The API no longer knows a job id (expired, purged): start the job again, once."""


class JobStatus(enum.Enum):
    PENDING = "PENDING"  # still running when the run had to stop
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass
class JobUpdate:
    status: JobStatus
    result: Any = None  # what the API returned for a finished job (a link, a document id)
    detail: str = ""


@dataclass
class Job(Generic[SpecT]):
    spec: SpecT
    job_id: str | None = None
    resumed: bool = False
    update: JobUpdate = field(default_factory=lambda: JobUpdate(JobStatus.PENDING))
    polls: int = 0
    restarts: int = 0


class AsyncJobRunner(Generic[SpecT]):
    def __init__(
        self,
        *,
        start: Callable[[SpecT], str],
        poll: Callable[[SpecT, str], JobUpdate],
        poll_interval: float,
        max_outstanding: int = 10,
        deadline: float | None = None,
        on_started: Callable[[Job[SpecT]], None] | None = None,
        on_waiting: Callable[[list[Job[SpecT]], int], None] | None = None,
        describe: Callable[[SpecT], str] = str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._start = start
        self._poll = poll
        self.poll_interval = poll_interval
        self.max_outstanding = max(1, max_outstanding)
        self.deadline = deadline
        self._on_started = on_started or (lambda job: None)
        # Called before each wait with the jobs still running and the count not started,
        # so a caller can say what a long silence is spent on.
        self._on_waiting = on_waiting or (lambda running, waiting: None)
        self._describe = describe
        self._clock = clock
        self._sleep = sleep

    def _past_deadline(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline

    def run(self, specs: Iterable[tuple[SpecT, str | None]]) -> Iterator[Job[SpecT]]:
        """Yield every job once: DONE/FAILED/CANCELLED, or PENDING if time ran out.

        Each spec comes with the id of a job started by an earlier run, or None.
        An exception while starting or polling one job fails that job only; a
        `SourceUnavailable` (refused credentials, a host gone) ends the whole run of jobs.
        """
        waiting: deque[Job[SpecT]] = deque(
            Job(spec, job_id, resumed=job_id is not None) for spec, job_id in specs
        )
        outstanding: list[Job[SpecT]] = []
        while waiting or outstanding:
            # Resumed jobs go first: they are already running on the server side.
            while waiting and len(outstanding) < self.max_outstanding:
                job = waiting.popleft()
                if job.job_id is None:
                    try:
                        job.job_id = self._start(job.spec)
                    except SourceUnavailable:
                        raise  # refused credentials, a host gone: every job would fail alike
                    except Exception as exc:
                        job.update = JobUpdate(JobStatus.FAILED, detail=str(exc))
                        yield job
                        continue
                    self._on_started(job)
                outstanding.append(job)

            still_running: list[Job[SpecT]] = []
            for job in outstanding:
                assert job.job_id is not None
                try:
                    job.update = self._poll(job.spec, job.job_id)
                except JobLost as exc:
                    if job.restarts == 0:
                        LOGGER.warning("%s: %s; requesting it again", self._describe(job.spec), exc)
                        job.job_id, job.resumed, job.restarts = None, False, 1
                        waiting.appendleft(job)
                        continue
                    job.update = JobUpdate(JobStatus.FAILED, detail=str(exc))
                except SourceUnavailable:
                    raise
                except Exception as exc:
                    job.update = JobUpdate(JobStatus.FAILED, detail=str(exc))
                job.polls += 1
                if job.update.status is JobStatus.PENDING:
                    still_running.append(job)
                else:
                    yield job
            outstanding = still_running
            if not outstanding:
                continue
            if self._past_deadline():
                for job in outstanding:
                    LOGGER.warning(
                        "%s is still running; its id stays in state for the next run",
                        self._describe(job.spec),
                    )
                    yield job
                yield from waiting  # never started: the next run plans them again
                return
            self._on_waiting(outstanding, len(waiting))
            self._sleep(self.poll_interval)
