"""Run the real tap as a subprocess and parse what it writes, as a target would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any


@dataclass
class TapRun:
    returncode: int
    stderr: str
    messages: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    state: dict[str, Any] | None = None

    def keys(self, stream: str, key_properties: list[str]) -> list[tuple[Any, ...]]:
        return [tuple(r[k] for k in key_properties) for r in self.records.get(stream, [])]


def run_tap(
    config: dict[str, Any],
    workdir: Path,
    *,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    args: list[str] | None = None,
) -> TapRun:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "tap_ad_invoices", "--config", str(config_path)]
    if state is not None:
        (workdir / "state.json").write_text(json.dumps(state))
        command += ["--state", str(workdir / "state.json")]
    if catalog is not None:
        (workdir / "catalog.json").write_text(json.dumps(catalog))
        command += ["--catalog", str(workdir / "catalog.json")]
    command += args or []
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_AD_INVOICES")}
    process_env.update(env or {})
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=process_env, check=False
    )
    return parse_output(done.returncode, done.stdout, done.stderr)


def parse_output(returncode: int, stdout: str, stderr: str) -> TapRun:
    messages = [json.loads(line, parse_float=Decimal) for line in stdout.splitlines() if line]
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    state = None
    for message in messages:
        if message["type"] == "RECORD":
            records[message["stream"]].append(message["record"])
        elif message["type"] == "STATE":
            state = message["value"]
    return TapRun(returncode, stderr, messages, dict(records), state)


class WatchedTap:
    """The real tap as a subprocess whose STATE messages are watched as they are written,
    so a test can kill it at an exact point of a run (no sleeps): `reached` is set by the
    first STATE for which `until(state)` is true."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        until: Callable[[dict[str, Any]], bool],
        *,
        catalog: dict[str, Any] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(json.dumps(config))
        command = [
            sys.executable,
            "-m",
            "tap_ad_invoices",
            "--config",
            str(workdir / "config.json"),
        ]
        if catalog is not None:
            (workdir / "catalog.json").write_text(json.dumps(catalog))
            command += ["--catalog", str(workdir / "catalog.json")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_AD_INVOICES")}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.until = until
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self.reached = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            message = json.loads(line)
            if message["type"] == "STATE" and self.until(message["value"]):
                self.reached.set()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def stderr_tail(self, chars: int = 3000) -> str:
        return "".join(self.stderr)[-chars:]

    def kill(self) -> TapRun:
        """SIGKILL, as a crash would; what the tap had written until then."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=10)
        return parse_output(self.process.returncode, "".join(self.lines), "".join(self.stderr))
