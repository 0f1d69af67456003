"""Exceptions shared by every source, and the per-run failure ledger."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting is missing or malformed. The message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class AuthorizationExpired(RuntimeError):
    """The refresh token no longer works: a human must re-authorise the app."""


class ApiError(RuntimeError):
    """An API answered with an error that retrying will not fix."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


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

    def record(self, stream: str, item: str, reason: str, logger: logging.Logger) -> None:
        reason = " ".join(str(reason).split())  # one line, whatever the API sent
        logger.error("FAILED %s [%s]: %s", stream, item, reason)
        with self._lock:
            self._failures.append(Failure(stream, item, reason))

    @property
    def failures(self) -> list[Failure]:
        with self._lock:
            return list(self._failures)

    def summary(self) -> str:
        lines = [f"{len(self._failures)} item(s) failed; their bookmarks did not advance:"]
        lines += [f"  - {f.stream} [{f.item}]: {f.reason}" for f in self._failures]
        return "\n".join(lines)
