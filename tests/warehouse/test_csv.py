"""The demo's path: `meltano run tap-ad-invoices target-csv`, twice, with the emulator's
data changed in between, with meltano.yml's target-csv settings.

Measured with target-csv 0.5.0: `overwrite_behavior` is read by nobody; the sink's
setup() writes the header with open(path, "w") on every run, so a single file per
stream would hold only the look-back's rows after an incremental run. meltano.yml
therefore names a file per stream and run. Together the files are a log of what
each run saw: the look-back's rows appear again in each later file, and a reader
keeps the last row per primary key.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from typing import Any

import pytest

from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.amazon_ads.streams import rereads_from
from tests.warehouse.conftest import CSV, Pipeline, Warehouse
from tests.warehouse.expectations import amazon_ads_rows, today_utc
from tests.warehouse.test_incremental import add_open_ads_invoice

pytestmark = pytest.mark.warehouse

ADS = "amazon_ads_billing_statements"

Key = tuple[str, str]


def read_stream(pipeline: Pipeline, stream: str) -> list[dict[str, str]]:
    """Every row of the stream's files, oldest file first (timestamps sort by name)."""
    rows: list[dict[str, str]] = []
    for path in sorted(pipeline.csv_dir.glob(f"{stream}*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def key(row: dict[str, str]) -> Key:
    return (row["account_id"], row["invoice_key"])


def truth_rows(warehouse: Warehouse) -> dict[Key, dict[str, Any]]:
    start = dt.date.fromisoformat(warehouse.tap_config["start_date"][:10])
    return amazon_ads_rows(warehouse.truth("amazon_ads"), start, today_utc())


def two_runs(
    warehouse: Warehouse, pipeline: Pipeline
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Rows after a first run, and after a second one that follows a payment and a new
    invoice."""
    add_open_ads_invoice(warehouse, "IN-WH-OPEN-1", days_ago=10)
    pipeline.run(CSV)
    first = read_stream(pipeline, ADS)
    assert Counter(map(key, first)).most_common(1)[0][1] == 1
    assert set(map(key, first)) == set(truth_rows(warehouse))

    warehouse.control.mutate("amazon_ads", {"op": "pay", "invoice_number": "IN-WH-OPEN-1"})
    add_open_ads_invoice(warehouse, "IN-WH-NEW-2", days_ago=1)
    pipeline.run(CSV)
    return first, read_stream(pipeline, ADS)


def assert_log_of_runs(
    warehouse: Warehouse, first: list[dict[str, str]], second: list[dict[str, str]]
) -> None:
    assert second[: len(first)] == first  # nothing earlier was lost or rewritten
    # What the second run added is exactly the look-back's rows, as they are now: the
    # re-read rows are duplicates of earlier ones.
    settings = AmazonAdsSettings.from_section(warehouse.tap_config["amazon_ads"])
    today = today_utc()  # the first run synced through today: the look-back starts here
    lookback_start = rereads_from(dt.date.min, today, today, settings)
    truth = truth_rows(warehouse)
    reread = {k for k, row in truth.items() if row["invoice_date"] >= lookback_start}
    assert Counter(map(key, second[len(first) :])) == Counter(reread)
    # The last row per key is the current one.
    current = {key(row): row for row in second}
    assert set(current) == set(truth)
    for k, row in truth.items():
        assert current[k]["invoice_status"] == row["invoice_status"], k
        assert current[k]["total_amount"] == str(row["total_amount"]), k
    paid = next(r for k, r in current.items() if k[1] == "IN-WH-OPEN-1")
    assert (paid["invoice_status"], paid["remaining_amount"]) == ("Paid", "0.00")


def test_incremental_csv_runs_keep_every_earlier_row(warehouse: Warehouse) -> None:
    pipeline = warehouse.pipeline()  # meltano.yml's target-csv settings, as the demo runs
    first, second = two_runs(warehouse, pipeline)
    assert_log_of_runs(warehouse, first, second)
