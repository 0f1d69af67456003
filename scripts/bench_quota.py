"""Benchmark: what a second, no-change run spends, per source and endpoint, against the floor.

Quota is the scarce resource (Amazon Business: one createReport a minute after a burst
of 15; Google Ads Explorer access: 2,880 operations a day). Each source's script runs the
tap twice against the emulator, the second time from the first's state with no data
changed, and counts on the emulator's side what run 2 asked for:

- Amazon Ads, 20 accounts (`bench_amazon_ads_quota.py`): statement requests no more than
  the windows the look-back needs;
- Google Ads, 50 customers, active, card-paid and lapsed (`bench_google_ads.py --quota`):
  ListInvoices lookback_months + 1 per active billing setup, 0 per known card-paid one;
- Amazon Business, 100 documents, some CANCELLED (`bench_amazon_business_quota.py`):
  createReport 0.

Prints one Markdown table (the README's) and exits 1 if any line is above its floor.

Usage: python scripts/bench_quota.py
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_amazon_ads_quota import amazon_ads_quota_run2
from bench_amazon_business_quota import amazon_business_quota_run2
from bench_google_ads import google_quota_run2

Run2 = Callable[[str], dict[str, tuple[int, int]]]
SOURCES: list[tuple[str, Run2]] = [
    ("Amazon Ads (20 accounts)", amazon_ads_quota_run2),
    ("Google Ads (50 customers)", google_quota_run2),
    ("Amazon Business (100 documents)", amazon_business_quota_run2),
]


def main() -> int:
    print("| source | endpoint | calls in run 2 | floor | |")
    print("|---|---|---:|---:|---|")
    above = 0
    for label, run2 in SOURCES:
        with tempfile.TemporaryDirectory() as workdir:
            table = run2(workdir)
        for endpoint, (measured, floor) in table.items():
            verdict = "at floor" if measured == floor else "below" if measured < floor else "ABOVE"
            above += measured > floor
            print(f"| {label} | {endpoint} | {measured} | {floor} | {verdict} |")
    return 1 if above else 0


if __name__ == "__main__":
    sys.exit(main())
