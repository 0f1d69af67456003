"""Amazon Business against the API's documented rules (issue 12), through the emulator.

Each rule is enforced by the emulator, so the old behaviour fails here: the
x-amz-date header, getTransactions paging forms, document request keys by region,
CANCELLED reports retried on a schedule, consolidated invoices, payment status.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import re
from pathlib import Path
from typing import Any

import requests

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import amazon_business as ab_emulator
from tap_ad_invoices.emulator.core import Fault
from tests.tap_runner import run_tap
from tests.test_amazon_business_e2e import DOCS, TXNS, ab, config_for, doc_state
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


# -- CANCELLED documents: asked again on a schedule ------------------------------------------
def days_ago(state: dict[str, Any], key: str, days: int) -> dict[str, Any]:
    """The state as if the document had first come back CANCELLED `days` days ago."""
    moved = copy.deepcopy(state)
    entry = moved["bookmarks"][DOCS]["cancelled"][key]
    entry["first_cancelled"] = (
        dt.date.fromisoformat(entry["first_cancelled"]) - dt.timedelta(days=days)
    ).isoformat()
    return moved


def test_a_cancelled_document_is_asked_again_after_1_7_and_30_days_then_given_up(
    ab: Emulator, tmp_path: Path
) -> None:
    documents = ab.sources["amazon_business"].truth()["documents"]
    number = next(d["invoice_number"] for d in documents if d["document_type"] == "Invoice")
    key = f"{number}|Invoice"
    ab.knobs["ab_cancelled_invoices"] = [number]  # say, a card-paid order in NA
    config = config_for(ab, tmp_path)
    today = dt.datetime.now(dt.timezone.utc).date()

    def run(name: str, state: dict[str, Any] | None) -> tuple[Any, int]:
        with ab.lock:
            ab.counters.clear()
        done = run_tap(config, tmp_path / name, state=state)
        assert done.returncode == 0, done.stderr
        return done, ab.counters[ab_emulator.ROUTE_CREATE]

    first, _ = run("run1", None)
    record = next(r for r in first.records[DOCS] if r["invoice_number"] == number)
    assert record["processing_status"] == "CANCELLED"
    assert record["next_request_date"] == (today + dt.timedelta(days=1)).isoformat()
    entry = doc_state(first)["cancelled"][key]
    assert entry["first_cancelled"] == today.isoformat() and entry["retries"] == 0
    # Remembered in state, so the bookmark need not wait at its transactions.
    fed = min(
        t["feedDate"]
        for t in ab.sources["amazon_business"].truth()["transactions"]
        if t.get("invoiceNumber") == number
        or any(line["orderId"] in record["order_ids"] for line in t["transactionLineItems"])
    )
    assert doc_state(first)["feed_date_bookmark"] > fed

    # Same day, nothing changed: no createReport at all (it was one a run before).
    second, creates = run("run2", first.state)
    assert creates == 0 and second.records.get(DOCS, []) == []

    expected_next = {1: 7, 7: 30}
    state = second.state
    assert state is not None
    for ago in (1, 7):
        later, creates = run(f"after{ago}", days_ago(state, key, ago))
        assert creates == 1
        (again,) = later.records[DOCS]
        first_day = today - dt.timedelta(days=ago)
        assert (
            again["next_request_date"]
            == (first_day + dt.timedelta(days=expected_next[ago])).isoformat()
        )
        state = days_ago(later.state or {}, key, -ago)  # back to the real first day

    last, creates = run("after30", days_ago(state, key, 30))
    assert creates == 1
    (given_up,) = last.records[DOCS]
    assert given_up["processing_status"] == "CANCELLED" and given_up["next_request_date"] is None
    assert doc_state(last)["cancelled"][key]["gave_up"] is True
    assert f"invoice {number} (Invoice" in last.stderr and "given up" in last.stderr

    after, creates = run("after31", days_ago(last.state or {}, key, 1))
    assert creates == 0 and after.records.get(DOCS, []) == []


def test_a_failed_retry_of_a_cancelled_document_does_not_move_the_bookmark_back(
    ab: Emulator, tmp_path: Path
) -> None:
    """The retry stays in `cancelled`; holding the bookmark at the document's old feed
    date would re-read weeks of transactions and request delivered documents again."""
    documents = ab.sources["amazon_business"].truth()["documents"]
    number = next(d["invoice_number"] for d in documents if d["document_type"] == "Invoice")
    key = f"{number}|Invoice"
    ab.knobs["ab_cancelled_invoices"] = [number]
    config = config_for(ab, tmp_path)
    first = run_tap(config, tmp_path / "run1")
    assert first.returncode == 0, first.stderr
    bookmark = doc_state(first)["feed_date_bookmark"]

    ab.add_fault(Fault(route=ab_emulator.ROUTE_CREATE, status=500, count=10**6))
    with ab.lock:
        ab.counters.clear()
    config["max_retry_seconds"] = 0.3
    failed = run_tap(config, tmp_path / "run2", state=days_ago(first.state or {}, key, 30))
    assert failed.returncode == 1
    assert [x for x in failed.stderr.splitlines() if "FAILED" in x and number in x]
    assert doc_state(failed)["feed_date_bookmark"] >= bookmark
    assert key in doc_state(failed)["cancelled"]  # asked again next run

    with ab.lock:
        ab.faults.clear()
        ab.counters.clear()
    config["max_retry_seconds"] = 30
    again = run_tap(config, tmp_path / "run3", state=failed.state)
    assert again.returncode == 0, again.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 1  # the retry, and nothing delivered again
    (record,) = again.records[DOCS]
    assert record["invoice_number"] == number


# -- the createReport budget in the end-of-run line -----------------------------------------
def test_the_run_ends_saying_the_create_report_budget_left_per_store(
    ab: Emulator, tmp_path: Path
) -> None:
    ab.knobs["rate_limits"][ab_emulator.ROUTE_CREATE] = [0.01, 15]  # the tap follows it
    config = stores_config(ab, tmp_path)
    config["amazon_business"]["max_documents_per_run"] = 3  # per store
    run = run_tap(config, tmp_path / "run")
    assert run.returncode == 0, run.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 6
    # Three tokens spent per store, none back within the run at one per 100 s.
    (line,) = [line for line in run.stderr.splitlines() if "API calls of amazon_business" in line]
    assert (
        "createReport budget left: NA 12 of 15, one more every 100s, "
        "EU 12 of 15, one more every 100s"
    ) in line


# -- consolidated invoices ------------------------------------------------------------------
def test_a_consolidated_invoice_is_fetched_once_issued_and_waited_for_while_pending(
    ab: Emulator, tmp_path: Path
) -> None:
    emulated = ab.sources["amazon_business"]
    charges = [t for t in emulated.truth()["transactions"] if t["transactionType"] == "CHARGE"]
    billed = charges[-2:]  # the two newest orders, billed together
    ab.knobs["ab_consolidated_orders"] = [t["transactionLineItems"][0]["orderId"] for t in billed]
    config = config_for(ab, tmp_path)

    pending = run_tap(config, tmp_path / "pending")
    assert pending.returncode == 0, pending.stderr
    consolidated = [r for r in pending.records[DOCS] if r["invoice_type"] == "CONSOLIDATED"]
    assert consolidated == []
    # Its charges stay open: the bookmark does not pass the older of them.
    assert doc_state(pending)["feed_date_bookmark"] <= min(t["feedDate"] for t in billed)

    ab.knobs["ab_consolidated_issued"] = True
    with ab.lock:
        ab.counters.clear()
    issued = run_tap(config, tmp_path / "issued", state=pending.state)
    assert issued.returncode == 0, issued.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 1
    (document,) = issued.records[DOCS]
    invoice = emulated.consolidated("NA")
    assert document["invoice_number"] == invoice.invoice_number
    assert document["invoice_type"] == "CONSOLIDATED" and document["processing_status"] == "DONE"
    assert document["sha256"] == hashlib.sha256(invoice.pdf).hexdigest()
    assert sorted(document["order_ids"]) == sorted(ab.knobs["ab_consolidated_orders"])
    # Its money is counted in the invoices it consolidates, never twice.
    assert document["total_amount"] is None and "consolidated" in document["amount_status"]
    assert doc_state(issued)["feed_date_bookmark"] > max(t["feedDate"] for t in billed)

    with ab.lock:
        ab.counters.clear()
    again = run_tap(config, tmp_path / "again", state=issued.state)
    assert again.returncode == 0, again.stderr
    assert ab.counters[ab_emulator.ROUTE_CREATE] == 0


# -- payment status (issue 14) ---------------------------------------------------------------
def test_payment_status_is_filled_and_a_change_re_emits_the_record_without_a_download(
    ab: Emulator, tmp_path: Path
) -> None:
    documents = ab.sources["amazon_business"].truth()["documents"]
    invoices = sorted(d["invoice_number"] for d in documents if d["document_type"] == "Invoice")
    paid, late, unknown = invoices[0], invoices[1], invoices[2]
    ab.knobs["ab_payment_status"] = {paid: "Closed", unknown: "ERROR"}
    config = config_for(ab, tmp_path)
    first = run_tap(config, tmp_path / "run1")
    assert first.returncode == 0, first.stderr
    status = {
        r["invoice_number"]: r for r in first.records[DOCS] if r["document_type"] == "Invoice"
    }
    assert status[paid]["payment_status"] == "Closed" and status[late]["payment_status"] == "Issued"
    assert status[late]["payment_due_date"]
    rows = {r["invoice_number"]: r for r in first.records["invoices"]}
    assert rows[paid]["status"] == "paid" and rows[late]["status"] == "unpaid"
    assert rows[late]["due_date"] == status[late]["payment_due_date"]
    assert status[unknown].get("payment_status") is None
    # Every invoice asked about once, 25 a call; neither the Closed one nor the one Amazon
    # has no status for (ERROR) is kept open to be asked again on every run.
    assert ab.counters[ab_emulator.ROUTE_PAYMENTS] == -(-len(invoices) // 25)
    assert set(doc_state(first)["open_invoices"]) == {f"{n}|Invoice" for n in invoices} - {
        f"{paid}|Invoice",
        f"{unknown}|Invoice",
    }

    ab.knobs["ab_payment_status"] = {paid: "Closed", late: "Past Due", unknown: "ERROR"}
    with ab.lock:
        ab.counters.clear()
    second = run_tap(config, tmp_path / "run2", state=first.state)
    assert second.returncode == 0, second.stderr
    (again,) = second.records[DOCS]
    assert again["invoice_number"] == late and again["payment_status"] == "Past Due"
    # The same document, from state: no report, no download.
    assert (again["sha256"], again["uri"]) == (status[late]["sha256"], status[late]["uri"])
    assert (
        ab.counters[ab_emulator.ROUTE_CREATE] == 0 and ab.counters[ab_emulator.ROUTE_DOWNLOAD] == 0
    )
    assert ab.counters[ab_emulator.ROUTE_PAYMENTS] == -(-(len(invoices) - 2) // 25)
    (row,) = second.records["invoices"]
    assert row["invoice_number"] == late and row["status"] == "unpaid"

    ab.knobs["ab_payment_status"] = {paid: "Closed", late: "Closed"}
    third = run_tap(config, tmp_path / "run3", state=second.state)
    assert third.returncode == 0, third.stderr
    assert [r["payment_status"] for r in third.records[DOCS]] == ["Closed"]
    assert f"{late}|Invoice" not in doc_state(third)["open_invoices"]
