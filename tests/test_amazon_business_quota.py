"""Amazon Business quota of a second, no-change run: at the floor on every endpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench_amazon_business_quota.py"


def test_run_2_spends_no_create_report_and_reads_only_the_look_back(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_amazon_business_quota", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = bench.amazon_business_quota_run2(tmp_path)
    assert table["createReport"] == (0, 0)  # the CANCELLED ones too: not due again today
    assert table["getBatchInvoicePaymentDetails"][1] > 0
    assert all(measured <= floor for measured, floor in table.values()), table
