"""Amazon Business with several regional stores in one config (NA and EU), end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import amazon_business as ab_emulator
from tests.reconcile import line_item_sums, sums_by_currency
from tests.tap_runner import TapRun, run_tap
from tests.test_amazon_business_e2e import DOCS, TXNS, ab

__all__ = ["ab"]  # the fixture, shared with the end-to-end tests


def stores_config(emulator: Emulator, tmp_path: Path) -> dict[str, Any]:
    section = emulator.sources["amazon_business"].tap_config_stores()["amazon_business"]
    section.update({"poll_interval_seconds": 0.05, "window_days": 120})
    return {
        "start_date": "2025-01-01",
        "amazon_business": section,
        "documents": {"destination": str(tmp_path / "pdfs")},
    }


def truth_hashes(emulator: Emulator, store: str) -> dict[tuple[str, str], str]:
    truth = emulator.sources["amazon_business"].truth(store)
    return {(d["invoice_number"], d["document_type"]): d["sha256"] for d in truth["documents"]}


def done_by_region(run: TapRun) -> dict[str, dict[tuple[str, str], str]]:
    out: dict[str, dict[tuple[str, str], str]] = {}
    for record in run.records.get(DOCS, []):
        if record["processing_status"] == "DONE":
            key = (record["invoice_number"], record["document_type"])
            out.setdefault(record["region"], {})[key] = record["sha256"]
    return out


def partitions(run: TapRun, stream: str) -> dict[str, dict[str, Any]]:
    assert run.state is not None
    bookmark = run.state["bookmarks"][stream]
    return {p["context"]["region"]: p for p in bookmark["partitions"]}


def test_two_stores_sync_in_one_run_each_with_its_own_state(ab: Emulator, tmp_path: Path) -> None:
    config = stores_config(ab, tmp_path)
    first = run_tap(config, tmp_path / "run1")
    assert first.returncode == 0, first.stderr

    # Each store's documents, from its own data, exactly once.
    assert done_by_region(first) == {"NA": truth_hashes(ab, "NA"), "EU": truth_hashes(ab, "EU")}
    assert len(first.keys(DOCS, ["invoice_number", "document_type"])) == len(
        truth_hashes(ab, "NA")
    ) + len(truth_hashes(ab, "EU"))
    for region in ("NA", "EU"):
        truth = ab.sources["amazon_business"].truth(region)
        ids = {r["transaction_id"] for r in first.records[TXNS] if r["region"] == region}
        assert ids == {t["transactionId"] for t in truth["transactions"]}
        rows = [r for r in first.records["invoices"] if r["account_id"] == truth["marketplace_id"]]
        assert len(rows) == len(truth["documents"])

    # Amounts per currency: USD from NA, EUR from EU, each equal to its line items.
    invoice_sums = sums_by_currency(
        first.records["invoices"], "currency", lambda r: r["total_amount"]
    )
    assert set(invoice_sums) == {"USD", "EUR"}
    assert invoice_sums == line_item_sums(first.records[TXNS])
    assert all(r["amount_status"] == "derived" for r in first.records["invoices"])

    # State per store; the secrets of both stores appear nowhere.
    assert set(partitions(first, DOCS)) == set(partitions(first, TXNS)) == {"NA", "EU"}
    assert ab.counters[ab_emulator.ROUTE_EU_TOKEN] == 1 and ab.counters["lwa.token"] == 1
    secrets = [ab_emulator.CLIENT_SECRET, ab_emulator.REFRESH_TOKEN, ab_emulator.REFRESH_TOKEN_EU]
    secrets += list(ab.access_tokens)
    for text in (first.stderr, str(first.state), str(first.records)):
        assert not [s for s in secrets if s in text]

    # Second run: nothing new anywhere; then an EU order: only its documents are asked for.
    second = run_tap(config, tmp_path / "run2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert second.records.get(DOCS, []) == []
    added = ab.sources["amazon_business"].mutate(
        {"op": "add_transaction", "store": "EU", "carry_invoice": True}
    )
    with ab.lock:
        ab.counters.clear()
    third = run_tap(config, tmp_path / "run3", state=second.state)
    assert third.returncode == 0, third.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == len(added["invoice_numbers"])
    assert {k[0] for k in done_by_region(third)["EU"]} == set(added["invoice_numbers"])
    assert "NA" not in done_by_region(third)


def test_a_refused_store_fails_alone_and_keeps_its_state(ab: Emulator, tmp_path: Path) -> None:
    ab.knobs["ab_eu_invalid_grant"] = True
    config = stores_config(ab, tmp_path)
    run = run_tap(config, tmp_path / "run")
    assert run.returncode == 1
    failed = [line for line in run.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 1, run.stderr  # once for the store, not once per stream
    assert "FAILED amazon_business [store EU: every item]" in failed[0]
    assert "amazon_business.stores[1].refresh_token" in failed[0]
    # The NA store ran to the end; the EU store has no bookmark to advance.
    assert done_by_region(run) == {"NA": truth_hashes(ab, "NA")}
    docs = partitions(run, DOCS)
    assert docs["NA"]["feed_date_bookmark"]
    assert not docs.get("EU", {}).get("feed_date_bookmark")
    assert ab_emulator.REFRESH_TOKEN_EU not in run.stderr

    ab.knobs["ab_eu_invalid_grant"] = False
    again = run_tap(config, tmp_path / "again", state=run.state)
    assert again.returncode == 0, again.stderr
    assert done_by_region(again) == {"EU": truth_hashes(ab, "EU")}  # NA's were delivered


def test_stores_config_mistakes_name_the_setting(ab: Emulator, tmp_path: Path) -> None:
    config = stores_config(ab, tmp_path)
    config["amazon_business"]["stores"][1]["region"] = "NA"
    run = run_tap(config, tmp_path / "dup")
    assert run.returncode == 1
    assert "amazon_business.stores[1].region" in run.stderr
    assert sum(ab.counters.values()) == 0

    config = stores_config(ab, tmp_path)
    config["amazon_business"]["refresh_token"] = ab_emulator.REFRESH_TOKEN
    run = run_tap(config, tmp_path / "both")
    assert run.returncode == 1
    assert "amazon_business.refresh_token" in run.stderr
    assert ab_emulator.REFRESH_TOKEN not in run.stderr
