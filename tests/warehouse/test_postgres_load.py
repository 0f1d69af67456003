"""A full `meltano run tap-ad-invoices target-postgres` against the emulator: the tables
equal the ground truth, typed for analysts, and Meltano keeps the state."""

from __future__ import annotations

import pytest

from tests.warehouse.checks import assert_matches_truth
from tests.warehouse.conftest import Pipeline, Warehouse
from tests.warehouse.expectations import amazon_ads_statement_windows, today_utc
from tests.warehouse.harness import SCHEMA

pytestmark = pytest.mark.warehouse

ADS = "amazon_ads_billing_statements"


def test_amazon_ads_table_equals_truth(loaded: tuple[Warehouse, Pipeline]) -> None:
    warehouse, pipeline = loaded
    assert ADS in pipeline.tables()
    count = assert_matches_truth(pipeline, warehouse, ADS)
    assert count > 100  # the emulator's 22 months x 3 accounts, not an empty table


def test_every_loaded_stream_has_unique_keys_and_the_truths_rows(
    loaded: tuple[Warehouse, Pipeline],
) -> None:
    warehouse, pipeline = loaded
    tables = pipeline.tables()
    for stream in warehouse.streams:
        if stream in tables:
            assert_matches_truth(pipeline, warehouse, stream)


def test_every_stream_the_emulator_configures_lands(loaded: tuple[Warehouse, Pipeline]) -> None:
    """Every stream the tap offers for the emulator's full config has a table.

    A stream missing here while its tests pass elsewhere means Meltano never handed
    the tap that source's settings: meltano.yml must declare them (Meltano passes
    declared settings only, and ignores TAP_AD_INVOICES_* variables for the others).
    """
    warehouse, pipeline = loaded
    missing = sorted(set(warehouse.streams) - pipeline.tables())
    sections = sorted({s.split(".")[0] for s in _settings(warehouse.tap_config)})
    assert not missing, (
        f"no table for {missing}; check that meltano.yml declares the settings of "
        f"{sections} (tap-ad-invoices settings:) so Meltano passes them"
    )


def _settings(config: dict, prefix: str = "") -> list[str]:
    names = []
    for key, value in config.items():
        if isinstance(value, dict):
            names += _settings(value, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return [n for n in names if "." in n]


def test_amounts_are_numeric_and_exact(loaded: tuple[Warehouse, Pipeline]) -> None:
    _, pipeline = loaded
    # Exactness in SQL too: tax plus billable is the total to the cent (or yen), and
    # the stored scale is the currency's (no float residue such as 12.340000001).
    rows = pipeline.query(
        f"SELECT invoice_key, currency, scale(total_amount) AS scale, "
        f"billable_amount + tax_amount = total_amount AS adds_up "
        f"FROM {SCHEMA}.{ADS}"
    )
    assert rows
    assert all(r["adds_up"] for r in rows), [r for r in rows if not r["adds_up"]][:5]
    assert {r["scale"] for r in rows if r["currency"] == "JPY"} <= {0}
    assert {r["scale"] for r in rows if r["currency"] != "JPY"} == {2}


def test_dates_are_dates(loaded: tuple[Warehouse, Pipeline]) -> None:
    _, pipeline = loaded
    rows = pipeline.query(
        f"SELECT count(*) AS n FROM {SCHEMA}.{ADS} "
        f"WHERE due_date - invoice_date <> 30 OR invoice_date > current_date"
    )
    assert rows == [{"n": 0}]  # date arithmetic works on the stored type


def test_nested_columns_are_queryable_as_jsonb(loaded: tuple[Warehouse, Pipeline]) -> None:
    _, pipeline = loaded
    rows = pipeline.query(
        f"""SELECT jsonb_typeof(columns) AS kind,
                  columns->>'Invoice Number' = invoice_number AS same_number,
                  columns ? 'Notes' AS has_notes,
                  columns->>'Notes' AS notes,
                  document_type
           FROM {SCHEMA}.{ADS}"""
    )
    assert {r["kind"] for r in rows} == {"object"}
    assert all(r["same_number"] and r["has_notes"] for r in rows)
    # A multi-line, comma-holding cell survives CSV parsing and JSONB storage intact.
    assert {r["notes"] for r in rows if r["document_type"] == "Credit Note"} == {
        "Adjusted for invalid traffic,\nsee credit note"
    }


def test_meltano_stores_the_state(loaded: tuple[Warehouse, Pipeline]) -> None:
    warehouse, pipeline = loaded
    bookmarks = pipeline.state()["singer_state"]["bookmarks"]
    accounts = {row["account_id"] for row in warehouse.truth("amazon_ads")}
    ads = bookmarks[ADS]["accounts"]
    assert set(ads) == accounts
    for account_state in ads.values():
        assert account_state == {"synced_through": today_utc().isoformat(), "pending": []}
    for stream in set(warehouse.streams) & pipeline.tables():
        assert "progress_markers" not in str(bookmarks.get(stream, {})), stream


def test_first_run_requests_each_statement_window_once(
    loaded: tuple[Warehouse, Pipeline],
) -> None:
    warehouse, _ = loaded
    counters = warehouse.control.counters()
    accounts = {row["account_id"] for row in warehouse.truth("amazon_ads")}
    windows = amazon_ads_statement_windows(warehouse.tap_config, accounts)
    assert counters["ads.statements.create"] == windows
    assert counters["ads.statements.download"] == windows
    # ads_polls_until_ready is 1: a statement is ready at its first poll.
    assert counters["ads.statements.get"] == windows
    assert counters["lwa.token"] >= 1


def test_nested_arrays_are_queryable_as_jsonb(loaded: tuple[Warehouse, Pipeline]) -> None:
    """Arrays of objects land as jsonb[]: each element is a JSONB value SQL can open."""
    warehouse, pipeline = loaded
    opened = 0
    for stream in set(warehouse.streams) & pipeline.tables():
        for column, kind in pipeline.columns(stream).items():
            if kind != "jsonb[]":
                continue
            rows = pipeline.query(
                "SELECT count(*) AS n, "
                "count(*) FILTER (WHERE jsonb_typeof(e) = 'object') AS objects "
                f'FROM {SCHEMA}."{stream}" CROSS JOIN LATERAL unnest("{column}") AS e'
            )
            assert rows[0]["n"] == rows[0]["objects"], (stream, column, rows)
            opened += 1
    if "google_ads_invoices" in pipeline.tables():
        truth = warehouse.truth("google_ads")["invoices"]
        expected = sum(len(i["account_budget_summaries"]) for i in truth)
        rows = pipeline.query(
            f"SELECT count(*) AS n FROM {SCHEMA}.google_ads_invoices "
            "CROSS JOIN LATERAL unnest(account_budget_summaries) AS s "
            "WHERE s->>'customer' IS NOT NULL"
        )
        assert rows == [{"n": expected}]
    if not opened:
        pytest.skip("no stream that reaches the warehouse has an array of objects yet")
