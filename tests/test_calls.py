"""The end-of-run line per source: calls per endpoint, retries and 429s (calls.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tap_ad_invoices.calls import CallLog, endpoint_of
from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import meta as fake
from tap_ad_invoices.emulator.core import Fault
from tests.tap_runner import run_tap


def test_a_count_per_endpoint_not_per_item() -> None:
    log = CallLog()
    for operation in ("GET /billingStatements [111]", "GET /billingStatements [222]"):
        log.call("amazon_ads", endpoint_of(operation))
    log.call("amazon_ads", endpoint_of("download statement 111 2025-01-01..2025-03-31"))
    log.retry("amazon_ads", "download", throttled=False)
    log.retry("amazon_ads", "GET /billingStatements", throttled=True)
    log.note("amazon_ads", "budget", lambda: "7 left")
    log.call("meta", "GET business_invoices")
    [ads, meta] = log.summary_lines()
    assert ads == (
        "API calls of amazon_ads: GET /billingStatements 2, download 1; 2 retried, "
        "1 throttled (429 or quota); budget: 7 left"
    )
    assert meta.startswith("API calls of meta: GET business_invoices 1; 0 retried")
    log.reset()
    assert log.summary_lines() == []


def _summary(stderr: str, source: str) -> dict[str, int]:
    [line] = [x for x in stderr.splitlines() if f"API calls of {source}:" in x]
    endpoints = line.split(f"API calls of {source}: ", 1)[1].split(";", 1)[0]
    return {name: int(n) for name, n in re.findall(r"([^,]+?) (\d+)(?:, |$)", endpoints)}


def test_the_line_matches_what_the_api_saw_retries_included(
    emulator: Emulator, tmp_path: Path
) -> None:
    graph: fake.MetaEmulator = emulator.sources["meta"]
    emulator.add_fault(Fault(route=fake.ROUTE_INVOICES, status=429, retry_after=0.01))
    config = {
        "start_date": "2025-01-01",
        "meta": graph.tap_config()["meta"],
        "documents": {"destination": str(tmp_path / "documents")},
    }
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    counts = _summary(run.stderr, "meta")
    seen = emulator.counters
    assert counts["GET business_invoices"] == seen[fake.ROUTE_INVOICES]  # the 429 included
    assert counts["GET campaigns"] == seen[fake.ROUTE_CAMPAIGNS]
    downloads = seen[fake.ROUTE_PDF_CDN] + seen[fake.ROUTE_PDF_GRAPH]
    assert downloads > 0 and counts["download"] == downloads
    [line] = [x for x in run.stderr.splitlines() if "API calls of meta:" in x]
    assert "1 retried, 1 throttled" in line
    assert not [x for x in run.stderr.splitlines() if "API calls of amazon_ads" in x]


def test_meta_throttling_gives_up_at_once_when_the_wait_exceeds_max_retry_seconds(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Meta says the account is at 100 % of its limit (a 20 s pause): with a 1 s budget
    that wait is not started; each business fails alone at once, and the line says so."""
    graph: fake.MetaEmulator = emulator.sources["meta"]
    emulator.knobs["meta_throttle"] = {"count": 10**6, "code": 80004, "regain_minutes": 0}
    config = {
        "start_date": "2025-01-01",
        "max_retry_seconds": 1,
        "meta": {**graph.tap_config()["meta"], "download_pdfs": False},
    }
    started = time.monotonic()
    run = run_tap(config, tmp_path)
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    failed = [x for x in run.stderr.splitlines() if "FAILED" in x and "| ERROR" in x]
    assert failed and all("80004" in x for x in failed)
    assert emulator.counters["meta.throttled"] == len(failed)  # no retry into a 20 s hold
    assert "pausing" not in run.stderr
    assert elapsed < 15  # two businesses that each would have held the run 20 s
    [line] = [x for x in run.stderr.splitlines() if "API calls of meta:" in x]
    assert f"0 retried, {len(failed)} throttled" in line
