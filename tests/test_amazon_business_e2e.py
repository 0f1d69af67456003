"""Amazon Business end to end: the real tap (subprocess) against the emulator on loopback."""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_ad_invoices.emulator import Emulator, Fault
from tap_ad_invoices.emulator import amazon_business as ab_emulator
from tests.tap_runner import TapRun, WatchedTap, run_tap

DOCS = "amazon_business_invoice_documents"
TXNS = "amazon_business_transactions"
PK = ["invoice_number", "document_type"]

# Emulated limits scaled so each run takes about a second; the client follows them
# through x-amzn-RateLimit-Limit as it would follow Amazon's.
FAST_KNOBS: dict[str, Any] = {
    "rate_limits": {
        ab_emulator.ROUTE_TRANSACTIONS: [200.0, 10],
        ab_emulator.ROUTE_INVOICES: [200.0, 10],
        ab_emulator.ROUTE_CREATE: [100.0, 15],
        ab_emulator.ROUTE_GET_REPORT: [400.0, 15],
        ab_emulator.ROUTE_GET_DOCUMENT: [100.0, 15],
    },
    "ab_report_delay_seconds": 0.2,
}


@pytest.fixture
def ab() -> Iterator[Emulator]:
    with Emulator(port=0, knobs=json.loads(json.dumps(FAST_KNOBS))) as running:
        yield running


def config_for(emulator: Emulator, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    section = emulator.sources["amazon_business"].tap_config()["amazon_business"]
    section.update({"poll_interval_seconds": 0.05, "window_days": 120}, **overrides)
    return {
        "start_date": "2025-01-01",
        "amazon_business": section,
        "documents": {"destination": str(tmp_path / "pdfs")},
    }


def truth_hashes(emulator: Emulator) -> dict[tuple[str, str], str]:
    truth = emulator.sources["amazon_business"].truth()
    return {(d["invoice_number"], d["document_type"]): d["sha256"] for d in truth["documents"]}


def done_hashes(run: TapRun) -> dict[tuple[str, str], str]:
    return {
        (r["invoice_number"], r["document_type"]): r["sha256"]
        for r in run.records.get(DOCS, [])
        if r["processing_status"] == "DONE"
    }


def doc_state(run: TapRun) -> dict[str, Any]:
    assert run.state is not None
    return dict(run.state["bookmarks"][DOCS])


def sandboxed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty TMPDIR for the tap: nothing may be written there."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    return tmp, {"TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}


def test_full_sync_second_run_and_new_transaction(ab: Emulator, tmp_path: Path) -> None:
    config = config_for(ab, tmp_path)
    tmp, env = sandboxed(tmp_path)
    first = run_tap(config, tmp_path / "run1", env=env)
    assert first.returncode == 0, first.stderr

    # Every document exactly once, byte-identical to what the emulator served.
    expected = truth_hashes(ab)
    assert sorted(first.keys(DOCS, PK)) == sorted(expected)
    assert done_hashes(first) == expected
    for record in first.records[DOCS]:
        stored = Path(record["uri"]).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == record["sha256"]
        assert record["page_count"] >= 1 and record["report_document_id"]
        assert record["order_ids"] and record["shipment_ids"] and record["transaction_ids"]
    credit = [r for r in first.records[DOCS] if r["document_type"] == "Credits"]
    assert credit and all(r["invoice_type"] == "CREDIT_MEMO" for r in credit if r["invoice_type"])

    # The zip member named "../../escape/evil.pdf" was never used as a path.
    assert not any(p.name == "escape" for p in tmp_path.rglob("*"))
    assert list(tmp.iterdir()) == []  # nothing written unencrypted to a temporary file

    # Transactions: exact decimals from the API's strings.
    truth = ab.sources["amazon_business"].truth()["transactions"]
    by_id = {r["transaction_id"]: r for r in first.records[TXNS]}
    assert set(by_id) == {t["transactionId"] for t in truth}
    for txn in truth:
        record = by_id[txn["transactionId"]]
        assert record["amount"] == Decimal(txn["amount"]["amount"])
        for line, api_line in zip(record["line_items"], txn["transactionLineItems"], strict=True):
            assert line["total_amount"]["amount"] == Decimal(api_line["totalAmount"]["amount"])
            if api_line["discount"]:
                assert line["discount"]["amount"] == Decimal(api_line["discount"]["amount"])

    # No secret in the logs: config secrets and every access token minted.
    secrets = [ab_emulator.CLIENT_SECRET, ab_emulator.REFRESH_TOKEN, *ab.access_tokens]
    assert not [s for s in secrets if s in first.stderr]
    assert "X-Amz-Signature=" not in first.stderr or "X-Amz-Signature=***" in first.stderr

    # Second run, nothing new: the look-back window is re-read, no report is created.
    with ab.lock:
        ab.counters.clear()
    second = run_tap(config, tmp_path / "run2", state=first.state, env=env)
    assert second.returncode == 0, second.stderr
    assert ab.counters[ab_emulator.ROUTE_TRANSACTIONS] > 0
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 0
    assert ab.counters[ab_emulator.ROUTE_DOWNLOAD] == 0
    assert second.records.get(DOCS, []) == []

    # A new transaction: exactly its document is requested.
    added = ab.sources["amazon_business"].mutate({"op": "add_transaction", "carry_invoice": True})
    with ab.lock:
        ab.counters.clear()
    third = run_tap(config, tmp_path / "run3", state=second.state, env=env)
    assert third.returncode == 0, third.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == len(added["invoice_numbers"])
    assert {k[0] for k in done_hashes(third)} == set(added["invoice_numbers"])
    assert done_hashes(third).items() <= truth_hashes(ab).items()
    assert list(tmp.iterdir()) == []


def test_killed_while_reports_pending_resumes_without_recreating(
    ab: Emulator, tmp_path: Path
) -> None:
    ab.knobs["ab_report_delay_seconds"] = 600  # every report stays pending until we say so
    expected = truth_hashes(ab)
    config = config_for(ab, tmp_path)
    # Killed once the server has created every report and the tap has said so in STATE.
    tap = WatchedTap(
        config,
        tmp_path / "killed",
        until=lambda state: (
            len(state.get("bookmarks", {}).get(DOCS, {}).get("pending_reports", {}))
            == len(expected)
        ),
    )
    try:
        assert tap.reached.wait(timeout=60), tap.stderr_tail()
        assert ab.counters[ab_emulator.ROUTE_CREATE] == len(expected)
    finally:
        killed = tap.kill()
    assert killed.returncode == -signal.SIGKILL
    assert done_hashes(killed) == {}

    ab.knobs["ab_report_delay_seconds"] = 0.1  # the reports finish while the tap is down
    with ab.lock:
        ab.counters.clear()
    resumed = run_tap(config, tmp_path / "resumed", state=killed.state)
    assert resumed.returncode == 0, resumed.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 0  # resumed, not re-created
    keys = resumed.keys(DOCS, PK) + killed.keys(DOCS, PK)
    assert sorted(keys) == sorted(expected)  # every document exactly once
    assert done_hashes(resumed) == expected
    assert doc_state(resumed)["pending_reports"] == {}


def test_survives_429_storms_expired_links_tokens_and_5xx(ab: Emulator, tmp_path: Path) -> None:
    # The server allows far less than the client's burst of 15: a storm of 429s.
    ab.knobs["rate_limits"][ab_emulator.ROUTE_CREATE] = [10.0, 2]
    ab.knobs["rate_limits"][ab_emulator.ROUTE_GET_DOCUMENT] = [10.0, 2]
    ab.knobs["rate_limits"][ab_emulator.ROUTE_TRANSACTIONS] = [20.0, 1]
    for fault in (
        Fault(ab_emulator.ROUTE_DOWNLOAD, kind="expire_link", count=2),
        Fault(ab_emulator.ROUTE_GET_REPORT, kind="expire_token", count=1),
        Fault(ab_emulator.ROUTE_INVOICES, kind="status", status=503, count=1),
        Fault(ab_emulator.ROUTE_CREATE, kind="drop", count=1),
        Fault(ab_emulator.ROUTE_GET_REPORT, kind="status", status=429, count=2, retry_after=0.05),
    ):
        ab.add_fault(fault)
    run = run_tap(config_for(ab, tmp_path), tmp_path / "storm")
    assert run.returncode == 0, run.stderr
    assert done_hashes(run) == truth_hashes(ab)
    assert ab.counters[f"{ab_emulator.ROUTE_CREATE}.throttled"] > 0
    assert ab.counters[f"{ab_emulator.ROUTE_GET_DOCUMENT}.throttled"] > 0
    assert "asking for a new one" in run.stderr  # expired links were replaced
    assert ab.counters["lwa.token"] == 2  # one refresh after the revoked token
    assert not ab.faults


def test_fatal_and_cancelled_are_recorded_and_hold_the_bookmark(
    ab: Emulator, tmp_path: Path
) -> None:
    truth = ab.sources["amazon_business"].truth()
    documents = truth["documents"]
    fatal, cancelled = documents[1]["invoice_number"], documents[3]["invoice_number"]
    ab.knobs["ab_fatal_invoices"] = [fatal]
    ab.knobs["ab_cancelled_invoices"] = [cancelled]
    # CANCELLED documents are asked again on a schedule (1, 7, 30 days); here at once.
    config = config_for(ab, tmp_path, cancelled_retry_days=[0])
    first = run_tap(config, tmp_path / "run1")
    assert first.returncode == 1
    assert f"FAILED {DOCS} [invoice {fatal}" in first.stderr
    assert "1 item(s) failed" in first.stderr
    status = {r["invoice_number"]: r["processing_status"] for r in first.records[DOCS]}
    assert status[fatal] == "FATAL" and status[cancelled] == "CANCELLED"
    assert sum(1 for s in status.values() if s == "DONE") == len(documents) - 2

    # The bookmark stays at or before the earliest transaction behind either document.
    feed_dates = [
        t["feedDate"]
        for t in truth["transactions"]
        for line in t["transactionLineItems"]
        for d in documents
        if d["invoice_number"] in (fatal, cancelled)
        and [line["orderId"], line["orderLineItemId"], line["shipmentId"]] in d["line_items"]
    ]
    state = doc_state(first)
    assert state["feed_date_bookmark"] <= min(feed_dates)
    assert state["pending_reports"] == {}

    ab.knobs["ab_fatal_invoices"] = []
    ab.knobs["ab_cancelled_invoices"] = []
    with ab.lock:
        ab.counters.clear()
    second = run_tap(config, tmp_path / "run2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 2  # only the two, nothing delivered again
    assert {k[0] for k in done_hashes(second)} == {fatal, cancelled}
    assert doc_state(second)["feed_date_bookmark"] > state["feed_date_bookmark"]


def test_bounded_runs_work_through_a_backlog(ab: Emulator, tmp_path: Path) -> None:
    expected = truth_hashes(ab)
    config = config_for(ab, tmp_path, max_documents_per_run=4, progress_interval_seconds=0.05)
    seen: list[tuple[str, str]] = []
    state = None
    for attempt in range(1, 6):
        run = run_tap(config, tmp_path / f"run{attempt}", state=state)
        assert run.returncode == 0, run.stderr
        assert len(done_hashes(run)) <= 4
        seen += list(done_hashes(run))
        state = run.state
        if len(seen) >= len(expected):
            break
    assert sorted(seen) == sorted(expected)  # all of them, none twice
    assert attempt == 4
    assert "documents: " in run.stderr and " left at createReport " in run.stderr


def test_time_budget_leaves_pending_reports_for_the_next_run(ab: Emulator, tmp_path: Path) -> None:
    ab.knobs["ab_report_delay_seconds"] = 600
    config = config_for(ab, tmp_path, time_budget_seconds=0.5)
    first = run_tap(config, tmp_path / "run1")
    assert first.returncode == 0, first.stderr
    pending = doc_state(first)["pending_reports"]
    assert pending and first.records.get(DOCS, []) == []
    ab.knobs["ab_report_delay_seconds"] = 0
    created = ab.counters[ab_emulator.ROUTE_CREATE]
    second = run_tap(config_for(ab, tmp_path), tmp_path / "run2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert done_hashes(second) == truth_hashes(ab)
    # Only documents never requested before got a new report.
    assert ab.counters[ab_emulator.ROUTE_CREATE] - created == len(truth_hashes(ab)) - len(pending)


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"client_secret": None}, "amazon_business.client_secret"),
        ({"region": "MARS"}, "amazon_business.region"),
        ({"document_types": ["Receipt"]}, "amazon_business.document_types"),
        ({"lookback_days": -1}, "amazon_business.lookback_days"),
        ({"api_url": "ftp://x"}, "amazon_business.api_url"),
    ],
)
def test_bad_config_is_one_line_naming_the_setting(
    ab: Emulator, tmp_path: Path, change: dict[str, Any], setting: str
) -> None:
    config = config_for(ab, tmp_path)
    section = config["amazon_business"]
    for key, value in change.items():
        if value is None:
            section.pop(key)
        else:
            section[key] = value
    run = run_tap(config, tmp_path / "bad")
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if setting in line]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert sum(ab.counters.values()) == 0  # no network call


def test_links_expiring_before_download_keep_the_report_for_the_next_run(
    ab: Emulator, tmp_path: Path
) -> None:
    ab.knobs["ab_link_ttl_seconds"] = -1  # every presigned URL is already expired
    config = config_for(ab, tmp_path)
    first = run_tap(config, tmp_path / "run1")
    assert first.returncode == 1
    assert done_hashes(first) == {}
    assert "asking for a new one" in first.stderr
    expected = truth_hashes(ab)
    assert len(doc_state(first)["pending_reports"]) == len(expected)  # reports kept, not lost

    ab.knobs["ab_link_ttl_seconds"] = 300
    with ab.lock:
        ab.counters.clear()
    second = run_tap(config, tmp_path / "run2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 0
    assert done_hashes(second) == expected
