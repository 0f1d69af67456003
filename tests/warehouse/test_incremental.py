"""Two Meltano runs with the emulator's data changed in between: the second run re-reads
only its look-back, updates changed invoices in place and adds the new ones."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.amazon_ads.streams import rereads_from
from tests.warehouse.checks import accepted_calls, assert_matches_truth
from tests.warehouse.conftest import Pipeline, Warehouse
from tests.warehouse.expectations import amazon_ads_statement_windows, today_utc
from tests.warehouse.harness import SCHEMA

pytestmark = pytest.mark.warehouse

ADS = "amazon_ads_billing_statements"


def add_open_ads_invoice(warehouse: Warehouse, number: str, days_ago: int) -> dict[str, Any]:
    """An unpaid invoice inside the look-back window, whatever day the suite runs on."""
    account = warehouse.truth("amazon_ads")[0]["account_id"]
    return warehouse.control.mutate(
        "amazon_ads",
        {
            "op": "add",
            "account_id": account,
            "invoice_number": number,
            "invoice_date": (today_utc() - dt.timedelta(days=days_ago)).isoformat(),
            "billable_amount": "1234.56",
        },
    )


def ads_row(warehouse_rows: list[dict[str, Any]], number: str) -> dict[str, Any]:
    matches = [r for r in warehouse_rows if r["invoice_number"] == number]
    assert len(matches) == 1, f"{number}: {len(matches)} rows"
    return matches[0]


def mutate_other_sources(warehouse: Warehouse, pipeline: Pipeline) -> dict[str, Any]:
    """The issue's other changes, for the streams that exist: a Google credit memo that
    corrects an invoice, and a new Amazon Business order. Returns what was changed."""
    changed: dict[str, Any] = {}
    tables = pipeline.tables()
    if "google_ads_invoices" in tables:
        truth = warehouse.truth("google_ads")
        original = truth["invoices"][-1]
        setup = next(
            name
            for name, setup in truth["billing_setups"].items()
            if setup["payments_account_id"] == original["payments_account_id"]
            and setup["monthly_invoicing"]
        )
        # The invoice's resource name, as the first run stored it.
        (stored,) = pipeline.query(
            f"SELECT resource_name FROM {SCHEMA}.google_ads_invoices WHERE id = '{original['id']}'"
        )
        changed["google_ads"] = warehouse.control.mutate(
            "google_ads",
            {
                "op": "add",
                "billing_setup": setup,
                "issue_month": f"{today_utc():%Y-%m}",
                "subtotal_micros": -1_000_000,
                "type": "CREDIT_MEMO",
                "corrected_invoice": stored["resource_name"],
            },
        )
    if "amazon_business_transactions" in tables:
        before = {
            (d["invoice_number"], d["document_type"])
            for d in warehouse.truth("amazon_business")["documents"]
        }
        warehouse.control.mutate("amazon_business", {"op": "add_transaction"})
        after = {
            (d["invoice_number"], d["document_type"])
            for d in warehouse.truth("amazon_business")["documents"]
        }
        changed["amazon_business"] = after - before
    return changed


def test_second_run_updates_in_place_and_rereads_only_the_lookback(warehouse: Warehouse) -> None:
    pipeline = warehouse.pipeline()
    control = warehouse.control
    add_open_ads_invoice(warehouse, "IN-WH-OPEN-1", days_ago=10)

    pipeline.run()
    first = pipeline.rows(ADS)
    assert ads_row(first, "IN-WH-OPEN-1")["invoice_status"] == "Unpaid"
    received_first = {(r["account_id"], r["invoice_key"]): r["_sdc_received_at"] for r in first}
    bookmark = dt.date.fromisoformat(
        pipeline.state()["singer_state"]["bookmarks"][ADS]["accounts"][first[0]["account_id"]][
            "synced_through"
        ]
    )

    # Between the runs: the open invoice is paid, one more is issued.
    control.mutate("amazon_ads", {"op": "pay", "invoice_number": "IN-WH-OPEN-1"})
    add_open_ads_invoice(warehouse, "IN-WH-NEW-2", days_ago=1)
    changed = mutate_other_sources(warehouse, pipeline)
    control.reset_counters()

    pipeline.run()

    tables = pipeline.tables()
    for stream in warehouse.streams:
        if stream in tables:
            assert_matches_truth(
                pipeline, warehouse, stream, check_types=False
            )  # the new truth, no duplicates
    second = pipeline.rows(ADS)
    assert len(second) == len(first) + 1
    paid = ads_row(second, "IN-WH-OPEN-1")
    assert (paid["invoice_status"], paid["remaining_amount"]) == ("Paid", 0)
    assert paid["amount_paid"] == paid["total_amount"]
    assert ads_row(second, "IN-WH-NEW-2")["invoice_status"] == "Unpaid"

    # Only the look-back windows were asked for again ...
    accounts = {r["account_id"] for r in warehouse.truth("amazon_ads")}
    windows = amazon_ads_statement_windows(warehouse.tap_config, accounts, since=bookmark)
    counters = control.counters()
    assert counters["ads.statements.create"] == windows
    assert counters["ads.statements.get"] == windows
    assert counters["ads.statements.download"] == windows
    # ... so rows issued before the look-back were not even re-sent to the target.
    settings = AmazonAdsSettings.from_section(warehouse.tap_config["amazon_ads"])
    lookback_start = rereads_from(dt.date.min, today_utc(), bookmark, settings)
    for row in second:
        key = (row["account_id"], row["invoice_key"])
        resent = row["_sdc_received_at"] != received_first.get(key)
        issued = dt.date.fromisoformat(row["invoice_date"])
        assert resent == (issued >= lookback_start), (key, issued, lookback_start)

    # One row per key in SQL terms as well, after the upserts.
    assert (
        pipeline.query(
            f"SELECT account_id, invoice_key FROM {SCHEMA}.{ADS} GROUP BY 1, 2 HAVING count(*) > 1"
        )
        == []
    )

    if "google_ads" in changed:  # the correction landed beside the invoice it corrects
        memo = changed["google_ads"]
        rows = pipeline.query(
            f"SELECT type, corrected_invoice FROM {SCHEMA}.google_ads_invoices "
            f"WHERE id = '{memo['id']}'"
        )
        assert rows == [{"type": "CREDIT_MEMO", "corrected_invoice": memo["corrected_invoice"]}]
    if "amazon_business" in changed:  # a report was asked for the new documents only
        assert accepted_calls(counters, "ab.reports.create") == len(changed["amazon_business"])
