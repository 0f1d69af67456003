"""Benchmark Amazon Ads statement emission and waiting against their floors.

Three measurements, each in one run of this script on the emulator (loopback):

1. Rows per second of the real tap reading one long statement (the emulator's
   `ads_synthetic_rows`), with both streams selected and with only the statement
   stream, against the singer-sdk ceiling measured beside it: a minimal SDK stream
   emitting the same records in a process of its own; and a raw `json.dumps` loop.
2. Peak RSS of the tap process at each row count (from wait4's rusage).
3. Waiting on statements: 1 / 5 / 20 accounts whose statements each take
   `--generation` seconds to generate, against the floor max(generation time, calls / rate)
   (the emulator sets no rate, so the floor is the generation time), measured
   after the tap's start-up cost, which is measured separately.

    python scripts/bench_throughput.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from tap_ad_invoices.emulator.amazon_ads import ACCOUNTS, bench_account_ids

STATEMENTS = "amazon_ads_billing_statements"
WINDOW = (dt.date(2026, 7, 1), dt.date(2026, 9, 28))  # one 90-day statement


class EmulatorProcess:
    """The emulator in a process of its own: its memory (a million-row statement is a few
    hundred MB) must not be inherited by the tap's fork and counted as the tap's peak."""

    def __init__(self, workdir: Path, knobs: dict[str, Any]) -> None:
        self.config_path = workdir / "emulator-config.json"
        self.config_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tap_ad_invoices.emulator.cli",
                "--port",
                "0",
                "--knobs",
                json.dumps(knobs),
                "--write-config",
                str(self.config_path),
                "--certificate-file",
                str(workdir / "emulator.pem"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # printed once the config is written
        self.base_url = line.rsplit(" ", 1)[-1].strip()
        self.config = json.loads(self.config_path.read_text())

    def counters(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.base_url}/_emulator/counters") as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@contextlib.contextmanager
def emulator_process(workdir: Path, knobs: dict[str, Any]) -> Iterator[EmulatorProcess]:
    emulator = EmulatorProcess(workdir, knobs)
    try:
        yield emulator
    finally:
        emulator.stop()


def run_process(command: list[str], stdout_path: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr tail) of one child process."""
    with open(stdout_path, "wb") as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-2000:]
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} exited {process.returncode}:\n{tail}")
    return wall, usage.ru_maxrss / 1024, tail


def count_records(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith('{"type":"RECORD"'):
                stream = json.loads(line)["stream"]
                counts[stream] = counts.get(stream, 0) + 1
    return counts


def tap_config(emulator: EmulatorProcess, workdir: Path) -> Path:
    section = dict(emulator.config["amazon_ads"])
    section.update(account_ids=[ACCOUNTS[0][0]], poll_interval_seconds=0.05)
    config = {
        "start_date": WINDOW[0].isoformat(),
        "end_date": WINDOW[1].isoformat(),
        "amazon_ads": section,
    }
    path = workdir / "config.json"
    path.write_text(json.dumps(config))
    return path


def statements_only_catalog(config: Path, workdir: Path) -> Path:
    out = subprocess.run(
        [sys.executable, "-m", "tap_ad_invoices", "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    catalog = json.loads(out)
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] == STATEMENTS
    path = workdir / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def sample_records(path: Path, limit: int = 200) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.startswith('{"type":"RECORD"') and f'"stream":"{STATEMENTS}"' in line:
                records.append(json.loads(line, parse_float=Decimal)["record"])
                if len(records) == limit:
                    break
    return records


def measure_rows(rows: int, workdir: Path) -> dict[str, float]:
    # The emulator renders the statement when it starts, so the tap never waits for it.
    with emulator_process(workdir, {"ads_synthetic_rows": rows}) as emulator:
        config = tap_config(emulator, workdir)
        catalog = statements_only_catalog(config, workdir)
        tap = [sys.executable, "-m", "tap_ad_invoices", "--config", str(config)]
        both_wall, both_rss, _ = run_process(tap, workdir / "both.jsonl")
        only_wall, only_rss, _ = run_process(
            [*tap, "--catalog", str(catalog)], workdir / "only.jsonl"
        )
    counts = count_records(workdir / "both.jsonl")
    assert counts.get(STATEMENTS) == rows, counts
    samples = workdir / "samples.json"
    samples.write_text(json.dumps(sample_records(workdir / "both.jsonl"), default=str))
    ceiling_wall, _, _ = run_process(
        [sys.executable, __file__, "--ceiling", str(rows), "--samples", str(samples)],
        workdir / "ceiling.jsonl",
    )
    fast_wall, _, _ = run_process(
        [sys.executable, __file__, "--ceiling", str(rows), "--samples", str(samples), "--msgspec"],
        workdir / "ceiling-msgspec.jsonl",
    )
    raw_rate = raw_json_rate(json.loads(samples.read_text()), min(rows, 200_000))
    return {
        "rows": rows,
        "both": rows / both_wall,
        "only": rows / only_wall,
        "ceiling": rows / ceiling_wall,
        "ceiling_msgspec": rows / fast_wall,
        "raw": raw_rate,
        "rss_both": both_rss,
        "rss_only": only_rss,
    }


def raw_json_rate(samples: list[dict[str, Any]], rows: int) -> float:
    started = time.perf_counter()
    sink = 0
    for n in range(rows):
        record = samples[n % len(samples)]
        sink += len(json.dumps({"type": "RECORD", "stream": STATEMENTS, "record": record}))
    return rows / (time.perf_counter() - started)


def measure_waiting(accounts: int, generation: float, workdir: Path) -> float:
    """Wall time for one 90-day statement of each of `accounts` accounts, each ready
    `generation` seconds after it was requested."""
    knobs = {"ads_generation_seconds": generation, "ads_extra_accounts": accounts}
    with emulator_process(workdir, knobs) as emulator:
        section = dict(emulator.config["amazon_ads"])
        section.update(account_ids=bench_account_ids(accounts), poll_interval_seconds=0.1)
        config = {
            "start_date": WINDOW[0].isoformat(),
            "end_date": WINDOW[1].isoformat(),
            "amazon_ads": section,
        }
        path = workdir / f"wait{accounts}.json"
        path.write_text(json.dumps(config))
        wall, _, _ = run_process(
            [sys.executable, "-m", "tap_ad_invoices", "--config", str(path)],
            workdir / f"wait{accounts}.jsonl",
        )
        assert emulator.counters()["ads.statements.create"] == accounts
    return wall


def ceiling(rows: int, samples_path: str, msgspec: bool) -> None:
    """A minimal singer-sdk tap emitting `rows` records shaped like the tap's."""
    from singer_sdk import Stream, Tap
    from singer_sdk.contrib.msgspec import MsgSpecWriter
    from singer_sdk.singerlib.encoding import SimpleSingerWriter

    from tap_ad_invoices.amazon_ads.streams import SCHEMA

    samples = json.loads(Path(samples_path).read_text(), parse_float=Decimal)

    class Statements(Stream):
        name = STATEMENTS
        schema = SCHEMA
        primary_keys = ("account_id", "invoice_key")

        def get_records(self, context: Any) -> Any:
            for n in range(rows):
                record = dict(samples[n % len(samples)])
                record["invoice_key"] = f"SYN-{n:09d}"
                yield record

    class Ceiling(Tap):
        name = "ceiling"
        config_jsonschema: dict[str, Any] = {"type": "object", "properties": {}}
        message_writer_class = MsgSpecWriter if msgspec else SimpleSingerWriter

        def discover_streams(self) -> list[Stream]:
            return [Statements(self)]

    Ceiling(config={}).sync_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--accounts", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--generation", type=float, default=3.0)
    parser.add_argument("--ceiling", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--samples", help=argparse.SUPPRESS)
    parser.add_argument("--msgspec", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ceiling:
        ceiling(args.ceiling, args.samples, args.msgspec)
        return

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print(
            "| rows | tap, both streams (rows/s) | tap, statements only | SDK ceiling, default "
            "writer (rec/s) | both / ceiling | only / ceiling | SDK ceiling, msgspec writer "
            "| both / that | raw json.dumps (rec/s) | peak RSS both / only |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for rows in args.rows:
            m = measure_rows(rows, workdir)
            print(
                f"| {rows:,} | {m['both']:,.0f} | {m['only']:,.0f} | {m['ceiling']:,.0f} "
                f"| {m['both'] / m['ceiling']:.0%} | {m['only'] / m['ceiling']:.0%} "
                f"| {m['ceiling_msgspec']:,.0f} | {m['both'] / m['ceiling_msgspec']:.0%} "
                f"| {m['raw']:,.0f} | {m['rss_both']:.0f} / {m['rss_only']:.0f} MB |",
                flush=True,
            )
        print()
        print(
            f"Waiting on statements, each ready {args.generation:g} s after it is requested. "
            "The floor is max(generation time, calls / rate) = the generation time (the "
            "emulator sets no rate); the tap's own work is the same run with no generation "
            "time (median of 3), so the ratio is the time spent waiting over the floor:"
        )
        print()
        print("| accounts | wall (s) | tap's own work (s) | waiting (s) | floor (s) | ratio |")
        print("|---:|---:|---:|---:|---:|---:|")
        for count in args.accounts:
            own = statistics.median(measure_waiting(count, 0.0, workdir) for _ in range(3))
            wall = measure_waiting(count, args.generation, workdir)
            floor = args.generation
            print(
                f"| {count} | {wall:.2f} | {own:.2f} | {wall - own:.2f} | {floor:.2f} "
                f"| {(wall - own) / floor:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
