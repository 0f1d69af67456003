"""Amazon Business against the API's documented rules (issue 12), through the emulator.

Each rule is enforced by the emulator, so the old behaviour fails here: the
x-amz-date header, getTransactions paging forms, document request keys by region,
CANCELLED reports retried on a schedule, consolidated invoices, payment status.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import requests

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import amazon_business as ab_emulator
from tests.tap_runner import run_tap
from tests.test_amazon_business_e2e import TXNS, ab, config_for
from tests.test_amazon_business_stores import done_by_region, stores_config, truth_hashes

__all__ = ["ab"]  # the fixture, shared with the end-to-end tests

API_ROUTES = {
    ab_emulator.ROUTE_TRANSACTIONS,
    ab_emulator.ROUTE_INVOICES,
    ab_emulator.ROUTE_CREATE,
    ab_emulator.ROUTE_GET_REPORT,
    ab_emulator.ROUTE_GET_DOCUMENT,
}


def access_token(emulator: Emulator) -> str:
    base = emulator.base_url
    answer = requests.post(
        f"{base}/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": ab_emulator.REFRESH_TOKEN,
            "client_id": ab_emulator.CLIENT_ID,
            "client_secret": ab_emulator.CLIENT_SECRET,
        },
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def seen(emulator: Emulator, routes: set[str]) -> list[dict[str, str]]:
    return [headers for name, _, headers in emulator.requests_seen if name in routes]


# -- x-amz-date ----------------------------------------------------------------------------
def test_every_api_call_carries_x_amz_date_and_downloads_do_not(
    ab: Emulator, tmp_path: Path
) -> None:
    run = run_tap(config_for(ab, tmp_path), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    api_calls = seen(ab, API_ROUTES)
    assert {name for name, _, _ in ab.requests_seen} >= API_ROUTES
    assert api_calls and all(re.fullmatch(r"\d{8}T\d{6}Z", h["x-amz-date"]) for h in api_calls)
    downloads = seen(ab, {ab_emulator.ROUTE_DOWNLOAD})
    assert downloads and not any("x-amz-date" in h for h in downloads)


def test_the_emulator_refuses_a_call_without_or_with_a_stale_x_amz_date(ab: Emulator) -> None:
    token = access_token(ab)
    url = f"{ab.base_url}{ab_emulator.TRANSACTIONS_PATH}"
    params = {"feedStartDate": "2026-01-01T00:00:00Z", "feedEndDate": "2026-01-02T00:00:00Z"}
    now = dt.datetime.now(dt.timezone.utc)
    answers = {
        stamp: requests.get(
            url,
            params=params,
            headers={"x-amz-access-token": token, **({"x-amz-date": stamp} if stamp else {})},
            timeout=10,
        )
        for stamp in (
            None,
            "2026-01-01T00:00:00Z",
            (now - dt.timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ"),
            now.strftime("%Y%m%dT%H%M%SZ"),
        )
    }
    statuses = [answer.status_code for answer in answers.values()]
    assert statuses == [403, 403, 403, 200]
    missing = answers[None].json()["errors"][0]
    assert "x-amz-date" in missing["message"]


# -- getTransactions paging ----------------------------------------------------------------
def test_paging_falls_back_to_token_with_dates_once_per_run(ab: Emulator, tmp_path: Path) -> None:
    config = config_for(ab, tmp_path, window_days=30)  # several windows, several pages each
    token_alone = run_tap(config, tmp_path / "alone")
    assert token_alone.returncode == 0, token_alone.stderr
    pages = ab.counters[ab_emulator.ROUTE_TRANSACTIONS]

    ab.knobs["ab_paging_needs_dates"] = True
    with ab.lock:
        ab.counters.clear()
        ab.requests_seen.clear()
    with_dates = run_tap(config, tmp_path / "dates")
    assert with_dates.returncode == 0, with_dates.stderr
    # Every transaction read, at the price of one refused page in the whole run.
    assert sorted(r["transaction_id"] for r in with_dates.records[TXNS]) == sorted(
        r["transaction_id"] for r in token_alone.records[TXNS]
    )
    assert ab.counters[ab_emulator.ROUTE_TRANSACTIONS] == pages + 1
    assert "refused nextPageToken alone" in with_dates.stderr


# -- document request keys by region ---------------------------------------------------------
def test_each_region_gets_its_own_request_keys_and_the_wrong_ones_are_refused(
    ab: Emulator, tmp_path: Path
) -> None:
    config = stores_config(ab, tmp_path)
    right = run_tap(config, tmp_path / "by_region")
    assert right.returncode == 0, right.stderr
    done = done_by_region(right)
    assert done["EU"] == truth_hashes(ab, "EU")  # EU documents requested by order
    assert done["NA"] == truth_hashes(ab, "NA")  # NA documents by invoice

    # Swapped by the override: each region refuses the other's keys, naming its own.
    stores = config["amazon_business"]["stores"]
    stores[0]["document_request_keys"], stores[1]["document_request_keys"] = "order", "invoice"
    wrong = run_tap(config, tmp_path / "swapped")
    assert wrong.returncode != 0
    assert done_by_region(wrong) == {}
    assert "reportOptions.orderId is required" in wrong.stderr
    assert "reportOptions.invoiceId and reportOptions.documentType are required" in wrong.stderr
