"""The normalized `invoices` stream: exact mapping, selection, no extra API calls."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.amazon_ads import ACCOUNTS
from tests.reconcile import assert_reconciles, line_item_sums
from tests.tap_runner import run_tap

ADS = "amazon_ads_billing_statements"
PK = ("platform", "account_id", "invoice_number", "document_kind")


@pytest.fixture
def ads_config(emulator: Emulator) -> dict:
    from tap_ad_invoices.emulator.cli import tap_config

    full = tap_config(emulator)
    full["amazon_ads"]["poll_interval_seconds"] = 0
    return {"start_date": "2025-01-01", "end_date": "2026-11-15", "amazon_ads": full["amazon_ads"]}


def catalog_selecting(config: dict, workdir: Path, selected: set[str]) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "discover.json").write_text(json.dumps(config))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tap_ad_invoices",
            "--config",
            str(workdir / "discover.json"),
            "--discover",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    catalog = json.loads(out)
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in selected
    return catalog


def test_amazon_ads_rows_map_exactly_with_credit_memos_negative(emulator, ads_config, tmp_path):
    run = run_tap(ads_config, tmp_path)
    assert run.returncode == 0, run.stderr
    rows = run.records["invoices"]
    keys = [tuple(r[k] for k in PK) for r in rows]
    assert len(keys) == len(set(keys))
    truth = {
        (i.account_id, i.invoice_number): i
        for i in emulator.sources["amazon_ads"].invoices
        if i.invoice_date.isoformat() <= "2026-11-15"
    }
    assert {(r["account_id"], r["invoice_number"]) for r in rows} == set(truth)
    for row in rows:
        inv = truth[(row["account_id"], row["invoice_number"])]
        credit = inv.document_type == "Credit Note"
        assert row["platform"] == "amazon_ads"
        assert row["document_kind"] == ("credit_memo" if credit else "invoice")
        assert row["issue_date"] == inv.invoice_date.isoformat()
        assert row["due_date"] == inv.due_date.isoformat()
        assert row["service_start_date"] == inv.period_start.isoformat()
        assert row["currency"] == inv.currency
        assert row["subtotal_amount"] == inv.billable_amount
        assert row["tax_amount"] == inv.tax_amount
        assert row["total_amount"] == inv.total_amount
        assert (row["total_amount"] < 0) == credit
        assert row["status"] == inv.status.lower().replace(" ", "_")
        assert row["source_stream"] == ADS
        assert row["source_key"] == {
            "account_id": inv.account_id,
            "invoice_key": inv.invoice_number,
        }


def test_selecting_only_invoices_fetches_once_and_emits_only_invoices(
    emulator, ads_config, tmp_path
):
    both = run_tap(ads_config, tmp_path / "both")
    calls_for_both = Counter(emulator.counters)
    emulator.counters.clear()

    catalog = catalog_selecting(ads_config, tmp_path / "only", {"invoices"})
    only = run_tap(ads_config, tmp_path / "only", catalog=catalog)
    assert only.returncode == 0, only.stderr
    assert set(only.records) == {"invoices"}
    assert not [m for m in only.messages if m.get("stream") == ADS and m["type"] == "RECORD"]
    assert sorted(map(str, only.records["invoices"])) == sorted(map(str, both.records["invoices"]))
    # The same API calls as a run that emits both streams: nothing is fetched twice.
    assert Counter(emulator.counters) == calls_for_both
    assert emulator.counters["ads.statements.create"] > 0


def test_deselecting_invoices_emits_only_the_source(emulator, ads_config, tmp_path):
    catalog = catalog_selecting(ads_config, tmp_path, {ADS})
    run = run_tap(ads_config, tmp_path, catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert set(run.records) == {ADS}
    assert len({r["account_id"] for r in run.records[ADS]}) == len(ACCOUNTS)


def test_every_platform_maps_exactly_in_one_run(emulator, emulator_config, tmp_path):
    config = {**emulator_config, "documents": {"destination": str(tmp_path / "pdfs")}}
    config["amazon_ads"]["poll_interval_seconds"] = 0
    config["google_ads"]["download_pdfs"] = True
    run = run_tap(config, tmp_path / "run")
    assert run.returncode == 0, run.stderr
    rows = run.records["invoices"]
    keys = [tuple(r[k] for k in PK) for r in rows]
    assert len(keys) == len(set(keys))
    by_platform: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_platform.setdefault(row["platform"], {})[row["invoice_number"]] = row

    # Google Ads: amounts are micros / 10^6, exactly; credit memos negative; no status.
    google = emulator.sources["google_ads"].truth()
    served = {
        i["id"]: i
        for i in google["invoices"]
        if any(s.split("/")[1] in google["serving_customers"] for s in i["_setups"])
    }
    assert set(by_platform["google_ads"]) == set(served)
    for number, row in by_platform["google_ads"].items():
        invoice = served[number]
        credit = invoice["type"] == "CREDIT_MEMO"
        for field in ("subtotal", "tax", "total"):
            micros = invoice[f"{field}_amount_micros"]
            expected = Decimal(micros) / 1_000_000
            assert row[f"{field}_amount"] == (-abs(expected) if credit else expected), field
        assert row["document_kind"] == ("credit_memo" if credit else "invoice")
        assert row["issue_date"] == invoice["issue_date"]
        assert row["due_date"] == invoice["due_date"]
        assert row["service_start_date"] == invoice["service_date_range"]["start_date"]
        assert row["service_end_date"] == invoice["service_date_range"]["end_date"]
        assert row["currency"] == invoice["currency_code"]
        assert row["account_id"] == invoice["payments_account_id"]
        assert row["status"] is None
        assert row["document_sha256"] == google["pdf_sha256"][number]

    # Amazon Business: one row per delivered PDF; amounts derived from the line items.
    business = emulator.sources["amazon_business"].truth()["documents"]
    assert set(by_platform["amazon_business"]) == {d["invoice_number"] for d in business}
    for document in business:
        row = by_platform["amazon_business"][document["invoice_number"]]
        credit = document["document_type"] == "Credits"
        assert row["document_kind"] == ("credit_memo" if credit else "invoice")
        assert row["document_sha256"] == document["sha256"]
        assert row["document_uri"].startswith(str(tmp_path / "pdfs"))
        assert row["amount_status"] == "derived"
        assert row["subtotal_amount"] + row["tax_amount"] == row["total_amount"]
        assert (row["total_amount"] < 0) == credit

    # Amazon Ads: one row per statement row (mapped field by field in the test above).
    assert len(by_platform["amazon_ads"]) == len(run.records[ADS])
    # Every platform reconciles per currency with its source stream, to the cent.
    ads_sums = assert_reconciles(
        run,
        "amazon_ads",
        ADS,
        source_total=lambda r: r["total_amount"],
        source_keys=("account_id", "invoice_key"),
    )
    assert len(ads_sums) > 3  # several currencies, each checked
    google_sums = assert_reconciles(
        run,
        "google_ads",
        "google_ads_invoices",
        source_total=lambda r: (
            -abs(r["total_amount"]) if r["type"] == "CREDIT_MEMO" else r["total_amount"]
        ),
        source_currency="currency_code",
        source_keys=("id",),
    )
    assert google_sums
    business_sums = assert_reconciles(
        run,
        "amazon_business",
        "amazon_business_invoice_documents",
        source_total=lambda r: r["total_amount"],
        source_keys=tuple(next(iter(by_platform["amazon_business"].values()))["source_key"]),
    )
    # ... and the documents' amounts add up to the transactions' line items.
    assert business_sums == line_item_sums(run.records["amazon_business_transactions"]) != {}
    meta_sums = assert_reconciles(
        run,
        "meta",
        "meta_invoices",
        source_total=lambda r: (
            None
            if r["type"] == "PRO_FORMA"
            else (-1 if r["type"] == "CM" else 1) * abs(r["billed_amount_details"]["total_amount"])
        ),
        source_keys=("business_id", "id"),
    )
    assert set(meta_sums) == {"USD", "JPY"}
    assert len(rows) == sum(len(v) for v in by_platform.values())


def test_invoices_record_count_metric_counts_the_rows_written(ads_config, tmp_path):
    run = run_tap(ads_config, tmp_path)
    assert run.returncode == 0, run.stderr
    counts = [
        json.loads(line.split("METRIC: ", 1)[1])
        for line in run.stderr.splitlines()
        if '"record_count"' in line and '"stream":"invoices"' in line.replace(" ", "")
    ]
    assert counts and counts[-1]["value"] == len(run.records["invoices"]) > 0
