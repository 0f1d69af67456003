"""One bad item never stops the run: faults injected on loopback, the real tap process.

Each case runs the tap three times against one emulator: a clean run (its state is
the baseline), a run with the fault, and a run with the fault removed. The faulted
run must end with exit code 1 and exactly one FAILED line naming the item, leave
that item's bookmark where the baseline put it, show no traceback, and let the
other sources emit everything a clean run emits; the healed run then completes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tap_ad_invoices.emulator import Emulator
from tests.tap_runner import TapRun, run_tap
from tests.test_amazon_business_e2e import FAST_KNOBS  # rate limits scaled to ~1 s per run

ADS = "amazon_ads_billing_statements"
GOOGLE = "google_ads_invoices"
AB_DOCS = "amazon_business_invoice_documents"
AB_TXNS = "amazon_business_transactions"
STREAMS_BY_SOURCE = {
    "amazon_ads": [ADS],
    "google_ads": [GOOGLE],
    "amazon_business": [AB_TXNS, AB_DOCS],
}


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(port=0, knobs=json.loads(json.dumps(FAST_KNOBS))) as running:
        yield running


def full_config(emulator: Emulator, tmp_path: Path) -> dict[str, Any]:
    """Amazon Ads, Google Ads and Amazon Business, all against the emulator."""
    config: dict[str, Any] = {
        "start_date": "2025-01-01",
        "documents": {"destination": str(tmp_path / "pdfs")},
        # A document that stays broken fails after this, not after the default minutes.
        "max_retry_seconds": 2,
    }
    for source in STREAMS_BY_SOURCE:
        config.update(emulator.sources[source].tap_config())
    # One transactions window covers the emulator's 90 days of Amazon Business data.
    config["amazon_business"].update(poll_interval_seconds=0.05, window_days=400)
    return config


def newest_transaction(emulator: Emulator) -> dict[str, Any]:
    transactions = emulator.sources["amazon_business"].truth()["transactions"]
    return dict(max(transactions, key=lambda t: t["feedDate"]))


def failed_lines(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "| ERROR" in line and "FAILED " in line]


def bookmark(state: dict[str, Any] | None, stream: str) -> Any:
    return ((state or {}).get("bookmarks") or {}).get(stream)


def ab_bookmarks(state: dict[str, Any] | None) -> tuple[Any, Any]:
    """The two Amazon Business bookmarks: transactions' feed date, documents' feed date."""
    txns = bookmark(state, AB_TXNS) or {}
    docs = bookmark(state, AB_DOCS) or {}
    return txns.get("replication_key_value"), docs.get("feed_date_bookmark")


@dataclass
class Case:
    """A fault: how to inject it, where it fails, and how to remove it."""

    source: str  # the source that fails (the others must complete)
    item: str  # what the FAILED line names
    inject: Callable[[Emulator, dict[str, Any]], dict[str, Any]]  # -> what the checks need
    heal: Callable[[Emulator, dict[str, Any]], None]
    # (baseline state, faulted state, what inject returned) -> None
    bookmark_check: Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], None]
    extra: list[str] = field(default_factory=list)  # more text the FAILED line must hold


def _broken_transaction(fault: str) -> Case:
    def inject(emulator: Emulator, config: dict[str, Any]) -> dict[str, Any]:
        emulator.knobs["ab_broken_transactions"] = {
            newest_transaction(emulator)["transactionId"]: fault
        }
        return {}

    def heal(emulator: Emulator, config: dict[str, Any]) -> None:
        emulator.knobs["ab_broken_transactions"] = {}

    return Case("amazon_business", "amazon_business [transactions fed", inject, heal, _ab_unchanged)


def _ab_unchanged(before: dict[str, Any], after: dict[str, Any], _: dict[str, Any]) -> None:
    assert ab_bookmarks(after) == ab_bookmarks(before)


def _html_with_200() -> Case:
    def inject(emulator: Emulator, config: dict[str, Any]) -> dict[str, Any]:
        emulator.knobs["ab_html_transactions"] = True
        return {}

    def heal(emulator: Emulator, config: dict[str, Any]) -> None:
        emulator.knobs["ab_html_transactions"] = False

    return Case(
        "amazon_business",
        "amazon_business [transactions fed",
        inject,
        heal,
        _ab_unchanged,
        ["JSON"],
    )


def _corrupt_document() -> Case:
    """A new invoice whose document arrives as broken gzip, every time it is downloaded."""

    def inject(emulator: Emulator, config: dict[str, Any]) -> dict[str, Any]:
        source = emulator.sources["amazon_business"]
        created = source.mutate({"op": "add_transaction", "carry_invoice": True})
        invoice = created["invoice_numbers"][0]
        emulator.knobs["ab_corrupt_documents"] = [invoice]
        return {"invoice": invoice, "fed": newest_transaction(emulator)["feedDate"]}

    def heal(emulator: Emulator, config: dict[str, Any]) -> None:
        emulator.knobs["ab_corrupt_documents"] = []

    def check(before: dict[str, Any], after: dict[str, Any], injected: dict[str, Any]) -> None:
        docs = bookmark(after, AB_DOCS)
        assert not any(key.startswith(f"{injected['invoice']}|") for key in docs["delivered"])
        assert docs["feed_date_bookmark"] <= injected["fed"]  # held before the failed document

    return Case("amazon_business", f"{AB_DOCS} [invoice ", inject, heal, check, ["gzip"])


def _dead_refresh_token(source: str, streams: list[str]) -> Case:
    def inject(emulator: Emulator, config: dict[str, Any]) -> dict[str, Any]:
        config[source]["refresh_token"] = "Atzr|revoked-refresh-token-0000"
        return {}

    def heal(emulator: Emulator, config: dict[str, Any]) -> None:
        config[source]["refresh_token"] = emulator.sources[source].tap_config()[source][
            "refresh_token"
        ]

    def check(before: dict[str, Any], after: dict[str, Any], _: dict[str, Any]) -> None:
        for stream in streams:
            assert bookmark(after, stream) == bookmark(before, stream), stream

    return Case(source, f"{source} [every item]", inject, heal, check, [f"{source}.refresh_token"])


CASES = {
    "ab_transaction_without_feed_date": _broken_transaction("no_feed_date"),
    "ab_transaction_without_transaction_id": _broken_transaction("no_transaction_id"),
    "ab_amount_abc": _broken_transaction("amount_abc"),
    "ab_html_with_status_200": _html_with_200(),
    "ab_corrupt_gzip_document": _corrupt_document(),
    "amazon_ads_dead_refresh_token": _dead_refresh_token("amazon_ads", [ADS]),
    "ab_dead_refresh_token": _dead_refresh_token("amazon_business", [AB_TXNS, AB_DOCS]),
    "google_dead_refresh_token": _dead_refresh_token("google_ads", [GOOGLE]),
}


PRIMARY_KEYS = {
    ADS: ["account_id", "invoice_key"],
    GOOGLE: ["id"],
    AB_TXNS: ["transaction_id"],
    AB_DOCS: ["invoice_number", "document_type"],
}


def records_of(run: TapRun, source: str) -> dict[str, list[Any]]:
    """The primary keys each stream of `source` emitted."""
    return {
        stream: sorted(run.keys(stream, PRIMARY_KEYS[stream]))
        for stream in STREAMS_BY_SOURCE[source]
    }


@pytest.mark.parametrize("name", list(CASES))
def test_one_bad_item_never_stops_the_run(emulator: Emulator, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    config = full_config(emulator, tmp_path)
    baseline = run_tap(config, tmp_path / "baseline")
    assert baseline.returncode == 0, baseline.stderr
    assert baseline.state is not None

    injected = case.inject(emulator, config)
    faulted = run_tap(config, tmp_path / "faulted", state=baseline.state)
    case.heal(emulator, config)
    healed = run_tap(config, tmp_path / "healed", state=faulted.state)

    assert faulted.returncode == 1, faulted.stderr
    lines = failed_lines(faulted)
    assert len(lines) == 1, faulted.stderr
    assert case.item in lines[0], lines[0]
    for text in case.extra:
        assert text in lines[0], lines[0]
    assert "Traceback" not in faulted.stderr
    assert "1 item(s) failed" in faulted.stderr
    assert faulted.state is not None
    case.bookmark_check(baseline.state, faulted.state, injected)

    # The other sources did all their work: what the healed run (same bookmarks for
    # them) emits, and something.
    for other in STREAMS_BY_SOURCE:
        if other == case.source:
            continue
        assert records_of(faulted, other) == records_of(healed, other), other
        assert any(records_of(faulted, other).values()), other

    assert healed.returncode == 0, healed.stderr
    assert failed_lines(healed) == []
    # Every Amazon Business document was delivered by one of the three runs.
    truth = emulator.sources["amazon_business"].truth()
    delivered = set().union(*(done_documents(run) for run in (baseline, faulted, healed)))
    assert {(d["invoice_number"], d["document_type"]) for d in truth["documents"]} <= delivered
    assert bookmark(healed.state, AB_DOCS)["pending_reports"] == {}
    if case.source == "amazon_business":
        newest = newest_transaction(emulator)["transactionId"]
        assert newest in {r["transaction_id"] for r in healed.records[AB_TXNS]}


def done_documents(run: TapRun) -> set[tuple[str, str]]:
    return {
        (r["invoice_number"], r["document_type"])
        for r in run.records.get(AB_DOCS, [])
        if r["processing_status"] == "DONE"
    }
