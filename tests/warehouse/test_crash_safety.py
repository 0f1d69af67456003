"""SIGKILL the tap at several points of a `meltano run`, run again: the tables equal those of
an uninterrupted run. Every kill is synchronised on the emulator's counters."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.warehouse.checks import (
    accepted_calls,
    assert_matches_truth,
    snapshot_differences,
    warehouse_snapshot,
)
from tests.warehouse.conftest import (
    POSTGRES,
    MeltanoSetup,
    Pipeline,
    Warehouse,
    open_warehouse,
)
from tests.warehouse.expectations import EXPECTATIONS, amazon_ads_statement_windows
from tests.warehouse.harness import (
    EXTRACTOR,
    EmulatorControl,
    PostgresCluster,
    find_tap_process,
    kill_tree,
    tail,
    wait_for,
)

pytestmark = pytest.mark.warehouse

ADS = "amazon_ads_billing_statements"
DOCUMENTS = "amazon_business_invoice_documents"
NEVER_READY = 10**9  # ads_polls_until_ready: statements stay IN_PROGRESS


@dataclass
class Reference:
    warehouse: Warehouse
    snapshot: dict[str, Any]
    statements: int  # statements a first run creates
    counters: dict[str, int]  # the emulator's calls during the uninterrupted run


@pytest.fixture(scope="module")
def reference(
    postgres: PostgresCluster, meltano_setup: MeltanoSetup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reference]:
    """One emulator for the module, and the tables of an uninterrupted run against it."""
    with open_warehouse(postgres, meltano_setup, tmp_path_factory.mktemp("crash")) as opened:
        pipeline = opened.pipeline("uninterrupted")
        opened.control.reset_counters()
        pipeline.run()
        accounts = {r["account_id"] for r in opened.truth("amazon_ads")}
        yield Reference(
            opened,
            warehouse_snapshot(pipeline, opened),
            amazon_ads_statement_windows(opened.tap_config, accounts),
            opened.control.counters(),
        )


def kill_tap_when(
    pipeline: Pipeline,
    ready: Callable[[dict[str, int]], bool],
    what: str,
    control: EmulatorControl,
) -> int:
    """Start a run, wait until the counters say `ready`, SIGKILL the tap; returns the
    number of rows the interrupted run left."""
    process, log_path = pipeline.meltano.start(
        "run", "--no-install", EXTRACTOR, POSTGRES, label="killed"
    )
    try:
        wait_for(
            lambda: ready(control.counters()) or process.poll() is not None, timeout=120, what=what
        )
        assert process.poll() is None, f"the run ended before {what}:\n{tail(log_path.read_text())}"
        tap = wait_for(lambda: find_tap_process(process.pid), timeout=30, what="the tap's pid")
        os.kill(tap, signal.SIGKILL)
        returncode = process.wait(timeout=120)
    finally:
        if process.poll() is None:  # a failed wait: leave no tap or target behind
            kill_tree(process.pid)
            process.wait()
    assert returncode != 0, "meltano reported success for a run whose tap was killed"
    if ADS not in pipeline.tables():
        return 0
    return len(pipeline.rows(ADS))


def assert_recovered(pipeline: Pipeline, reference: Reference) -> None:
    warehouse = reference.warehouse
    pipeline.run()
    differences = snapshot_differences(warehouse_snapshot(pipeline, warehouse), reference.snapshot)
    assert not differences, "not as after an uninterrupted run:\n" + "\n".join(differences)
    assert_matches_truth(pipeline, warehouse, ADS, check_types=False)


def test_killed_during_the_first_stream(reference: Reference) -> None:
    warehouse = reference.warehouse
    control = warehouse.control
    pipeline = warehouse.pipeline("killed-mid-stream")
    control.reset_counters()
    # Every request takes 50 ms, so "after three statements" is a point the run stays at.
    control.knobs(latency_seconds=0.05)
    try:
        left = kill_tap_when(
            pipeline,
            lambda c: c.get("ads.statements.download", 0) >= 3,
            "three statements downloaded",
            control,
        )
    finally:
        control.knobs(latency_seconds=0.0)
    assert left < len(reference.snapshot[ADS])  # the kill did interrupt the stream
    assert_recovered(pipeline, reference)


def test_killed_while_statements_are_pending(reference: Reference) -> None:
    warehouse = reference.warehouse
    control = warehouse.control
    pipeline = warehouse.pipeline("killed-pending")
    outstanding = int(warehouse.tap_config.get("max_workers", 4))
    control.reset_counters()
    control.knobs(ads_polls_until_ready=NEVER_READY)
    try:
        kill_tap_when(
            pipeline,
            lambda c: (
                c.get("ads.statements.create", 0) >= outstanding
                and c.get("ads.statements.get", 0) >= outstanding
            ),
            f"{outstanding} statements created and polled",
            control,
        )
    finally:
        control.knobs(ads_polls_until_ready=1)
    created_before_kill = control.counters()["ads.statements.create"]

    # The statement ids reached Meltano's state through the target before the kill ...
    accounts = pipeline.state()["singer_state"]["bookmarks"][ADS]["accounts"]
    pending = [p for account in accounts.values() for p in account["pending"]]
    assert len(pending) == created_before_kill

    # ... so the next run polls them instead of asking for them again.
    control.reset_counters()
    assert_recovered(pipeline, reference)
    counters = control.counters()
    assert counters.get("ads.statements.create", 0) == reference.statements - len(pending)
    assert counters["ads.statements.download"] == reference.statements


def test_killed_between_streams(reference: Reference) -> None:
    """After Amazon Ads, before the next source stream (the API-fed ones only: `invoices`
    is written alongside its sources and has no moment of its own)."""
    warehouse = reference.warehouse
    sources = {EXPECTATIONS[s].source for s in reference.snapshot if s in EXPECTATIONS}
    if sources <= {"amazon_ads"}:
        pytest.skip(
            f"only Amazon Ads reaches the warehouse through Meltano "
            f"({sorted(reference.snapshot)}): no source stream runs after it"
        )
    control = warehouse.control
    pipeline = warehouse.pipeline("killed-between-streams")
    control.reset_counters()

    def next_stream_started(counters: dict[str, int]) -> bool:
        ads_done = counters.get("ads.statements.download", 0) >= reference.statements
        others = [n for n, v in counters.items() if v and not n.startswith(("ads.", "lwa.", "_"))]
        return ads_done and bool(others)

    kill_tap_when(pipeline, next_stream_started, "the source stream after Amazon Ads", control)
    assert_recovered(pipeline, reference)


def test_killed_while_amazon_business_reports_are_pending(reference: Reference) -> None:
    warehouse = reference.warehouse
    if DOCUMENTS not in reference.snapshot:
        pytest.skip(f"{DOCUMENTS} does not reach the warehouse through Meltano")
    control = warehouse.control
    pipeline = warehouse.pipeline("killed-reports-pending")
    control.reset_counters()
    delay = control.knobs()["ab_report_delay_seconds"]
    control.knobs(ab_report_delay_seconds=NEVER_READY)  # reports stay IN_QUEUE
    try:
        kill_tap_when(
            pipeline,
            lambda c: c.get("ab.reports.create", 0) >= 1 and c.get("ab.reports.get", 0) >= 1,
            "an Amazon Business report created and polled",
            control,
        )
    finally:
        control.knobs(ab_report_delay_seconds=delay)

    bookmark = pipeline.state()["singer_state"]["bookmarks"].get(DOCUMENTS, {})
    pending = bookmark.get("pending_reports", {})
    assert pending, f"no pending report id reached Meltano's state: {bookmark}"

    control.reset_counters()
    assert_recovered(pipeline, reference)
    # The pending reports were polled again, not requested again.
    created = accepted_calls(control.counters(), "ab.reports.create")
    assert created == accepted_calls(reference.counters, "ab.reports.create") - len(pending)
