"""The "Querying your invoices" SQL runs on a warehouse loaded through Meltano and returns
what the emulator's truth implies; the README shows exactly this SQL."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_ad_invoices.emulator.amazon_ads import UNAVAILABLE_DOCUMENT
from tests.warehouse.conftest import Pipeline, Warehouse
from tests.warehouse.expectations import INVOICES, amazon_ads_rows, today_utc
from tests.warehouse.harness import REPO_ROOT

pytestmark = pytest.mark.warehouse

QUERIES_FILE = Path(__file__).with_name("queries.sql")
DOCS = REPO_ROOT / "README.md"


def named_queries() -> dict[str, str]:
    """`-- name: x` blocks of queries.sql, each up to its closing semicolon."""
    text = QUERIES_FILE.read_text(encoding="utf-8")
    blocks = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)[1:]
    return {name: body.strip() for name, body in zip(blocks[::2], blocks[1::2], strict=True)}


QUERIES = named_queries()


def ads_truth(warehouse: Warehouse) -> dict[tuple[Any, ...], dict[str, Any]]:
    start = dt.date.fromisoformat(warehouse.tap_config["start_date"][:10])
    return INVOICES.rows(warehouse.truth("amazon_ads"), start, today_utc())


def run(pipeline: Pipeline, name: str) -> list[dict[str, Any]]:
    return pipeline.query(QUERIES[name])


def test_the_documentation_shows_the_tested_sql() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for name, sql in QUERIES.items():
        assert sql in docs, f"README.md does not show query {name} as tested"


def test_spend_by_platform_and_month(loaded: tuple[Warehouse, Pipeline]) -> None:
    warehouse, pipeline = loaded
    rows = run(pipeline, "spend_by_platform_and_month")
    expected: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for row in ads_truth(warehouse).values():
        month = row["issue_date"].replace(day=1).isoformat()
        expected[(month, row["currency"])][0] += row["total_amount"]
        expected[(month, row["currency"])][1] += 1
    got = {
        (r["month"], r["currency"]): [r["total_amount"], r["documents"]]
        for r in rows
        if r["platform"] == "amazon_ads"
    }
    assert got == dict(expected)
    # Credit memos net out: some month is below the sum of its invoices alone.
    assert any(r["total_amount"] < 0 for r in ads_truth(warehouse).values())


def test_unpaid_past_due(loaded: tuple[Warehouse, Pipeline]) -> None:
    warehouse, pipeline = loaded
    today = today_utc()
    rows = run(pipeline, "unpaid_past_due")
    expected = sorted(
        (row["due_date"].isoformat(), key[1], key[2])
        for key, row in ads_truth(warehouse).items()
        if row["status"] in ("unpaid", "partially_paid") and row["due_date"] < today
    )
    got = [
        (r["due_date"], r["account_id"], r["invoice_number"])
        for r in rows
        if r["platform"] == "amazon_ads"
    ]
    assert got == expected  # the same invoices, oldest first
    assert all(r["days_overdue"] > 0 for r in rows)


def test_unpaid_past_due_amounts(loaded: tuple[Warehouse, Pipeline]) -> None:
    warehouse, pipeline = loaded
    today = today_utc()
    start = dt.date.fromisoformat(warehouse.tap_config["start_date"][:10])
    expected = {
        key: row["remaining_amount"]
        for key, row in amazon_ads_rows(warehouse.truth("amazon_ads"), start, today).items()
        if row["remaining_amount"] > 0 and row["due_date"] < today
    }
    rows = run(pipeline, "unpaid_past_due_amounts")
    assert {(r["account_id"], r["invoice_number"]): r["remaining_amount"] for r in rows} == expected


def test_invoices_without_stored_pdf(loaded: tuple[Warehouse, Pipeline]) -> None:
    warehouse, pipeline = loaded
    rows = run(pipeline, "invoices_without_stored_pdf")
    listed = {(r["platform"], r["account_id"], r["invoice_number"]) for r in rows}
    # Amazon Ads' PDFs come with amazon_ads_invoices: only the one the emulator has not
    # issued yet is missing.
    ads = {key[1:] for key in listed if key[0] == "amazon_ads"}
    assert ads == {key[1:3] for key in ads_truth(warehouse) if key[2] == UNAVAILABLE_DOCUMENT}
    # Every platform: exactly its rows without a document, as stored.
    stored = pipeline.query(
        "SELECT platform, account_id, invoice_number FROM ad_invoices.invoices "
        "WHERE document_uri IS NULL"
    )
    assert listed == {(r["platform"], r["account_id"], r["invoice_number"]) for r in stored}


def test_statement_columns_as_written(loaded: tuple[Warehouse, Pipeline]) -> None:
    warehouse, pipeline = loaded
    start = dt.date.fromisoformat(warehouse.tap_config["start_date"][:10])
    truth = amazon_ads_rows(warehouse.truth("amazon_ads"), start, today_utc())
    credit_notes = sorted(k for k, row in truth.items() if row["document_type"] == "Credit Note")
    rows = run(pipeline, "statement_columns_as_written")
    assert [(r["account_id"], r["invoice_number"]) for r in rows] == credit_notes
    assert {r["document_type"] for r in rows} == {"Credit Note"}
