"""Exceptions shared by every source, the per-run failure ledger, and the failure boundary.

The boundary is written once and used by every unit of work of every source (an
account window, a customer partition, a transactions window, a document):

- `FailureLedger.unit(stream, item, logger)` wraps one unit. Any exception in it
  becomes one ERROR line `FAILED <stream> [<item>]: <Type>: <message>` (redacted,
  the traceback at DEBUG only) and `unit.failed` tells the caller not to advance
  that unit's bookmark.
- `item_errors()` is the same catch for code that reports failures itself (the
  document pipeline turns them into outcomes).
- `FailureLedger.guard(source, stream, records)` wraps a whole stream. A
  `SourceUnavailable` (refused credentials, an unreachable host) fails the
  source once: one line naming what to fix, the source's other streams are
  skipped, and the other sources run to completion.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tap_ad_invoices.redaction import redact

T = TypeVar("T")


class SourceUnavailable(Exception):
    """Every remaining item of a source would fail the same way: stop the source, not the run.

    Raised (or mixed in) by errors a user fixes once for the whole source:
    refused credentials, a host that cannot be reached.
    """


class ConfigError(ValueError):
    """A setting is missing or malformed. The message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class AuthorizationExpired(SourceUnavailable, RuntimeError):
    """The refresh token no longer works: a human must re-authorise the app."""


class ApiError(RuntimeError):
    """An API answered with an error that retrying will not fix."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def fails_source(exc: BaseException) -> bool:
    return isinstance(exc, SourceUnavailable)


def describe(exc: BaseException) -> str:
    """`Type: message`, on one line, secrets masked: what a FAILED line says about an error."""
    message = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, KeyError) and exc.args:
        message = f"missing {exc.args[0]!r}"  # str(KeyError) is just the quoted key
    return redact(f"{type(exc).__name__}: {message}")


@dataclass
class Caught:
    """What `item_errors` caught, if anything."""

    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def reason(self) -> str:
        return describe(self.error) if self.error is not None else ""


@contextlib.contextmanager
def item_errors(logger: logging.Logger, what: str) -> Iterator[Caught]:
    """Catch whatever fails only this item; source-level failures go on up.

    The traceback is logged at DEBUG: a user reads the one-line reason, a
    developer turns on DEBUG to see where it came from.
    """
    caught = Caught()
    try:
        yield caught
    except Exception as exc:
        if fails_source(exc):
            raise
        logger.debug("%s failed", what, exc_info=True)
        caught.error = exc


@dataclass(frozen=True)
class Failure:
    stream: str
    item: str
    reason: str


class FailureLedger:
    """Failures of single items (an account, a partition, a document).

    Items fail alone: the run goes on with the others, and at the end the tap
    prints this summary and exits non-zero.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self._down: set[str] = set()  # sources whose credentials or host failed

    def record(self, stream: str, item: str, reason: str, logger: logging.Logger) -> None:
        reason = redact(" ".join(str(reason).split()))  # one line, whatever the API sent
        logger.error("FAILED %s [%s]: %s", stream, item, reason)
        with self._lock:
            self._failures.append(Failure(stream, item, reason))

    @contextlib.contextmanager
    def unit(self, stream: str, item: str, logger: logging.Logger) -> Iterator[Caught]:
        """One unit of work: an exception in it is recorded as this item's failure.

        Use as `with ledger.unit(stream, item, log) as unit: ...`, then advance the
        unit's bookmark only `if not unit.failed`. A `SourceUnavailable` is not
        caught here: `guard` fails the whole source with it.
        """
        with item_errors(logger, f"{stream} [{item}]") as caught:
            yield caught
        if caught.failed:
            self.record(stream, item, caught.reason, logger)

    def guard(
        self, source: str, stream: str, records: Iterable[T], logger: logging.Logger
    ) -> Iterator[T]:
        """A stream's records; whatever escapes its units fails the stream, not the run.

        A `SourceUnavailable` fails the source once ("every item"), and the source's
        later streams are skipped without another call to the refused host.
        """
        if source in self._down:
            logger.warning("%s skipped: %s failed earlier in this run (see above)", stream, source)
            return
        try:
            yield from records
        except Exception as exc:
            logger.debug("%s stopped", stream, exc_info=True)
            if fails_source(exc):
                self._down.add(source)
                self.record(source, "every item", describe(exc), logger)
            else:
                self.record(stream, "the rest of the stream", describe(exc), logger)

    def source_failed(self, source: str) -> bool:
        return source in self._down

    @property
    def failures(self) -> list[Failure]:
        with self._lock:
            return list(self._failures)

    def summary(self) -> str:
        lines = [f"{len(self._failures)} item(s) failed; their bookmarks did not advance:"]
        lines += [f"  - {f.stream} [{f.item}]: {f.reason}" for f in self._failures]
        return "\n".join(lines)
