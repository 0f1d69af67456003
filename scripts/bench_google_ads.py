"""Benchmark google_ads_invoices against the emulator with a per-call latency.

Runs the real tap (a subprocess, the real google-ads client over gRPC+TLS) over
many serving accounts and issue months, then prints the measured wall time
against the sequential time (calls x latency) and the ideal (calls x latency /
workers). Example:

    python scripts/bench_google_ads.py --customers 100 --months 24 --latency 0.02 --workers 8

With --quota it measures quota instead: the tap runs twice against the emulator (run 2
from run 1's state, nothing changed) over 50 customers of a paying manager, a mix of
active, card-paid (BILLING_SETUP_NOT_ON_MONTHLY_INVOICING) and lapsed (stopped serving)
accounts, and prints run 2's calls per endpoint against the floor. `google_quota_run2`
is the importable core (scripts/bench_quota.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


# The quota benchmark's world: with the emulator's fixed accounts (4 active, 1 card-paid,
# 1 not invoiced, 3 lapsed with final invoices, 1 cancelled before the range), 50 customers.
QUOTA_EXTRA = {"google_extra_customers": 24, "google_extra_card_paid": 8, "google_extra_lapsed": 8}
QUOTA_LOOKBACK_MONTHS = 2
CALLS_LINE = "API calls of google_ads: "
# Emulator counters -> the names the tap's own count line uses.
ENDPOINTS = {"google.list_invoices": "ListInvoices", "google.search": "Search"}


def tap_run(config: dict[str, Any], workdir: Path, state: dict[str, Any] | None) -> dict[str, Any]:
    """One tap run (subprocess); its last STATE and the counts of its "API calls" line."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config))
    command = [sys.executable, "-m", "tap_ad_invoices", "--config", str(workdir / "config.json")]
    if state is not None:
        (workdir / "state.json").write_text(json.dumps(state))
        command += ["--state", str(workdir / "state.json")]
    # Settings from the environment (Meltano's TAP_AD_INVOICES_*) would change the world.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_AD_INVOICES")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"the tap failed with exit code {done.returncode}")
    states = [m["value"] for m in map(json.loads, done.stdout.splitlines()) if m["type"] == "STATE"]
    counted: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if CALLS_LINE in line:
            endpoints = line.split(CALLS_LINE, 1)[1].split(";", 1)[0]
            for part in endpoints.split(", "):
                name, _, number = part.rpartition(" ")
                counted[name] = int(number)
    return {"state": states[-1] if states else None, "counted": counted, "stderr": done.stderr}


def google_quota_run2(tmp_dir: Path | str) -> dict[str, tuple[int, int]]:
    """Run 2's Google Ads calls per endpoint, {endpoint: (measured, floor)}.

    Floors: ListInvoices, lookback_months + 1 per active billing setup (the re-read closed
    months and the month in progress) and 0 per setup known to be card-paid, not invoiced
    or not serving; Search, the customer_client query plus one billing_setup query per
    customer; token, one refresh. Measured on the emulator's side, and checked against the
    tap's own "API calls of google_ads" line.
    """
    tmp = Path(tmp_dir)
    with Emulator(port=0, knobs=dict(QUOTA_EXTRA)) as emulator:
        google = emulator.sources["google_ads"]
        config = {
            "start_date": "2025-01-01",  # no end_date: runs as a daily schedule does
            "max_workers": 8,
            "google_ads": {
                **google.tap_config()["google_ads"],
                "lookback_months": QUOTA_LOOKBACK_MONTHS,
            },
        }
        first = tap_run(config, tmp / "run1", None)
        emulator.counters.clear()
        second = tap_run(config, tmp / "run2", first["state"])
        measured = {name: emulator.counters[counter] for counter, name in ENDPOINTS.items()}
        measured["token"] = emulator.counters["google.token"]
        truth = google.truth()
    for name, count in measured.items():
        if second["counted"].get(name, 0) != count:
            raise SystemExit(
                f"the tap counted {second['counted'].get(name, 0)} {name} call(s), "
                f"the emulator answered {count}"
            )
    customers = [a for a in google.accounts if not a.manager]
    active = [
        s
        for s, v in truth["billing_setups"].items()
        if v["status"] == "APPROVED"
        and v["monthly_invoicing"]
        and v["invoiced"]
        and s.split("/")[1] not in truth["lapsed_customers"]
    ]
    floors = {
        "ListInvoices": (QUOTA_LOOKBACK_MONTHS + 1) * len(active),
        "Search": 1 + len(customers),
        "token": 1,
    }
    return {name: (measured[name], floors[name]) for name in floors}


def quota_mix() -> dict[str, int]:
    """How many customers of each kind the quota benchmark reads."""
    with Emulator(port=0, knobs=dict(QUOTA_EXTRA)) as emulator:
        google = emulator.sources["google_ads"]
        truth = google.truth()
        setups = truth["billing_setups"]
        kinds: dict[str, int] = {}
        for account in google.accounts:
            if account.manager:
                continue
            own = [v for s, v in setups.items() if s.split("/")[1] == account.customer_id]
            approved = [v for v in own if v["status"] == "APPROVED"]
            if account.customer_id in truth["lapsed_customers"]:
                kind = "lapsed (final invoices, then NON_SERVING_CUSTOMER)"
            elif not approved:
                kind = "no approved billing setup"
            elif not all(v["monthly_invoicing"] for v in approved):
                kind = "card-paid (NOT_ON_MONTHLY_INVOICING)"
            elif not all(v["invoiced"] for v in approved):
                kind = "not invoiced (NOT_INVOICED_CUSTOMER)"
            else:
                kind = "active"
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def print_quota() -> None:
    mix = quota_mix()
    print(
        f"Google Ads, {sum(mix.values())} customers: "
        + ", ".join(f"{n} {k}" for k, n in mix.items())
    )
    print(f"lookback_months={QUOTA_LOOKBACK_MONTHS}; run 2 from run 1's state, nothing changed")
    with tempfile.TemporaryDirectory() as workdir:
        result = google_quota_run2(workdir)
    print(f"{'endpoint':<14}{'run 2':>8}{'floor':>8}")
    for name, (measured, floor) in result.items():
        verdict = "at floor" if measured == floor else ("below" if measured < floor else "ABOVE")
        print(f"{name:<14}{measured:>8}{floor:>8}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--months", type=int, default=24, help="issue months up to 2026-10")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every call")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--quota", action="store_true", help="run 2's calls per endpoint against the floor"
    )
    args = parser.parse_args()
    if args.quota:
        print_quota()
        return

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
