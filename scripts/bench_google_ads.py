"""Benchmark google_ads_invoices against the emulator with a per-call latency.

Runs the real tap (a subprocess, the real google-ads client over gRPC+TLS) over
many serving accounts and issue months, then prints the measured wall time
against the sequential time (calls x latency) and the ideal (calls x latency /
workers). Example:

    python scripts/bench_google_ads.py --customers 100 --months 24 --latency 0.02 --workers 8
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import google_ads as fake

# Serving accounts of the fixed emulator world whose setups all have invoices.
FIXED_INVOICED = ["1111111111", "2222222222", "3333333333", "7777777777"]


def months_back(last: dt.date, count: int) -> dt.date:
    index = last.year * 12 + last.month - 1 - (count - 1)
    return dt.date(index // 12, index % 12 + 1, 1)


def run(customers: int, months: int, latency: float, workers: int) -> dict[str, float]:
    extra = max(0, customers - len(FIXED_INVOICED))
    knobs = {"google_extra_customers": extra, "google_latency_seconds": latency}
    with Emulator(port=0, knobs=knobs) as emulator, tempfile.TemporaryDirectory() as workdir:
        google = emulator.sources["google_ads"]
        section = google.tap_config()["google_ads"]
        section["customer_ids"] = (FIXED_INVOICED + [f"9{n:09d}" for n in range(extra)])[:customers]
        config = {
            "start_date": months_back(fake.LAST_MONTH, months).isoformat(),
            "end_date": "2026-10-31",
            "max_workers": workers,
            "google_ads": section,
        }
        config_path = Path(workdir) / "config.json"
        config_path.write_text(json.dumps(config))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "tap_ad_invoices", "--config", str(config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-2000:])
            raise SystemExit(f"the tap failed with exit code {done.returncode}")
        messages = (json.loads(line) for line in done.stdout.splitlines() if line)
        records = sum(
            1
            for m in messages
            if m.get("type") == "RECORD" and m.get("stream") == "google_ads_invoices"
        )
        calls = emulator.counters["google.list_invoices"] + emulator.counters["google.search"]
    return {"wall": wall, "calls": calls, "records": records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--months", type=int, default=24, help="issue months up to 2026-10")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every call")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()

    # The tap's own start-up (imports, discovery, TLS handshake) with no latency at all.
    baseline = run(1, 1, 0.0, 1)["wall"]
    result = run(args.customers, args.months, args.latency, args.workers)
    calls, wall = int(result["calls"]), result["wall"]
    sequential = calls * args.latency
    ideal = sequential / args.workers
    print(
        f"customers={args.customers} months={args.months} latency={args.latency}s "
        f"workers={args.workers}"
    )
    print(f"gRPC calls:          {calls}  (records: {int(result['records'])})")
    print(f"measured wall time:  {wall:.2f}s  (tap start-up alone: {baseline:.2f}s)")
    print(f"sequential time:     {sequential:.2f}s  (calls x latency)")
    print(f"ideal:               {ideal:.2f}s  (calls x latency / workers)")
    print(
        f"speed-up vs sequential: {sequential / wall:.1f}x "
        f"(without start-up: {sequential / max(wall - baseline, 1e-9):.1f}x)"
    )
    print(
        f"measured / ideal:       {wall / ideal:.2f} "
        f"(without start-up: {(wall - baseline) / ideal:.2f})"
    )


if __name__ == "__main__":
    main()
