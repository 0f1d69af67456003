"""Through real Meltano: what a data engineer relies on besides the data (issue 11)."""

from __future__ import annotations

import pytest

from tests.warehouse.conftest import POSTGRES, Warehouse
from tests.warehouse.harness import EXTRACTOR

pytestmark = pytest.mark.warehouse

# Calls that create something on the vendor's side or spend its scarce quota.
CREATING = ("ads.statements.create", "ab.reports.create")


def test_config_test_creates_nothing(warehouse: Warehouse) -> None:
    pipeline = warehouse.pipeline()
    warehouse.control.reset_counters()
    result = pipeline.meltano.invoke("config", "test", EXTRACTOR, label="config-test")
    assert result.returncode == 0, result.log
    assert "successfully" in result.log.lower() or "valid" in result.log.lower(), result.log
    counters = warehouse.control.counters()
    assert {name: counters.get(name, 0) for name in CREATING} == dict.fromkeys(CREATING, 0)
    assert sum(counters.values()) > 0  # it did reach the emulator: a reader ran first


def test_activate_version_never_soft_deletes_what_a_run_did_not_reread(
    warehouse: Warehouse,
) -> None:
    pipeline = warehouse.pipeline(TAP_AD_INVOICES_EMIT_ACTIVATE_VERSION_MESSAGES="true")
    pipeline.run()
    counts = {table: len(pipeline.rows(table)) for table in pipeline.tables()}
    second = pipeline.run()  # a look-back re-read: most rows are not read again
    assert "in full_table mode" not in second.log
    for table in pipeline.tables():
        rows = pipeline.rows(table)
        assert len(rows) >= counts.get(table, 0), table
        deleted = [r for r in rows if r.get("_sdc_deleted_at") is not None]
        assert deleted == [], f"{table}: {len(deleted)} row(s) soft-deleted"


def test_full_refresh_rereads_from_start_date(warehouse: Warehouse) -> None:
    pipeline = warehouse.pipeline()
    control = warehouse.control
    control.reset_counters()
    pipeline.run()
    first = control.counters()["ads.statements.create"]
    control.reset_counters()
    pipeline.run()
    incremental = control.counters().get("ads.statements.create", 0)
    assert incremental < first  # the look-back only
    control.reset_counters()
    result = pipeline.meltano.invoke(
        "run", "--no-install", "--full-refresh", EXTRACTOR, POSTGRES, label="full-refresh"
    )
    assert result.returncode == 0, result.log
    assert control.counters()["ads.statements.create"] == first


def test_failed_lines_are_errors_in_meltano_run(warehouse: Warehouse) -> None:
    pipeline = warehouse.pipeline(TAP_AD_INVOICES_GOOGLE_ADS_REFRESH_TOKEN="1//revoked")
    result = pipeline.run(check=False)
    assert result.returncode != 0
    failed = [line for line in result.log.splitlines() if "FAILED google_ads" in line]
    assert failed, result.log[-3000:]
    assert all("[error" in line for line in failed), failed
