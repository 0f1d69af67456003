"""Benchmark: the Amazon Ads calls of a second, no-change run against their floor (issue 12).

Runs the emulator (20 global accounts: its three with invoices plus 17 empty ones,
`ads_extra_accounts`; an API that takes only the OpenAPI model's statement request
form) and the tap twice, the second run from the first's state with no data
changed, and counts the calls the emulator served in run 2 per endpoint.

Floors for run 2: the statements the look-back needs (ceil(lookback_days /
window_days) per account: the bookmark's own day was read by run 1), one poll and
one download per statement, one token, no account listing (the accounts are
configured), and no refused statement request (the accepted form is in state).

`amazon_ads_quota_run2(tmp_dir)` returns {endpoint: (measured, floor)};
`scripts/bench_quota.py` imports it. Usage: python scripts/bench_amazon_ads_quota.py
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.amazon_ads import ACCOUNTS, bench_account_ids

ACCOUNT_COUNT = 20
START_DATE, END_DATE = "2025-01-01", "2026-11-15"
LOOKBACK_DAYS = WINDOW_DAYS = 90  # the defaults
ENDPOINTS = {
    "POST /billingStatements": "ads.statements.create",
    "GET /billingStatements/{id}": "ads.statements.get",
    "statement download (S3)": "ads.statements.download",
    "POST /adsAccounts/list": "ads.accounts.list",
    "Login with Amazon token": "lwa.token",
}
REFUSED = "refused statement requests (400/415)"


def _run_tap(config: dict[str, Any], workdir: Path, state: dict[str, Any] | None) -> dict:
    """One tap run (a subprocess, as Meltano runs it); its last STATE."""
    # The Google benchmark's runner, imported beside this file however this one is loaded.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_google_ads import tap_run

    return tap_run(config, workdir, state)["state"] or {}


def amazon_ads_quota_run2(tmp_dir: str | Path) -> dict[str, tuple[int, int]]:
    """{endpoint: (calls served in run 2, floor)} for 20 Amazon Ads accounts."""
    tmp = Path(tmp_dir)
    extra = ACCOUNT_COUNT - len(ACCOUNTS)
    knobs = {"ads_extra_accounts": extra, "ads_statement_request_form": "model"}
    with Emulator(port=0, knobs=knobs) as emulator:
        ads = emulator.sources["amazon_ads"]
        section = {
            **ads.tap_config()["amazon_ads"],
            "account_ids": [a[0] for a in ACCOUNTS] + bench_account_ids(extra),
            "poll_interval_seconds": 0,
            "lookback_days": LOOKBACK_DAYS,
            "window_days": WINDOW_DAYS,
        }
        config = {"start_date": START_DATE, "end_date": END_DATE, "amazon_ads": section}
        state = _run_tap(config, tmp / "run1", None)
        emulator.counters.clear()
        bodies, statements = len(ads.create_requests), len(ads.statements)
        _run_tap(config, tmp / "run2", state)
        counters = dict(emulator.counters)
        refused = (len(ads.create_requests) - bodies) - (len(ads.statements) - statements)
    statements_floor = ACCOUNT_COUNT * math.ceil(LOOKBACK_DAYS / WINDOW_DAYS)
    floors = {
        "POST /billingStatements": statements_floor,
        "GET /billingStatements/{id}": statements_floor,
        "statement download (S3)": statements_floor,
        "POST /adsAccounts/list": 0,
        "Login with Amazon token": 1,
    }
    table = {name: (counters.get(route, 0), floors[name]) for name, route in ENDPOINTS.items()}
    table[REFUSED] = (refused, 0)
    return table


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ads-quota-") as tmp:
        table = amazon_ads_quota_run2(tmp)
    print(f"Amazon Ads, run 2 from run 1's state, no data changed, {ACCOUNT_COUNT} accounts:")
    print("| endpoint | calls in run 2 | floor | at floor |")
    print("|---|---:|---:|---|")
    for name, (measured, floor) in table.items():
        print(f"| {name} | {measured} | {floor} | {'yes' if measured <= floor else 'NO'} |")


if __name__ == "__main__":
    main()
