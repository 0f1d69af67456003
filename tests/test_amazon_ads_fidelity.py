"""Amazon Ads against the official models (issue 12): statement request forms, accounts.

The emulator takes one statement request form (knob `ads_statement_request_form`)
and answers the other as a real API would, lists accounts that are not CREATED and
answers /adsAccounts/list errors in that API's own shape.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
from pathlib import Path

import pytest

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.amazon_ads import (
    ACCOUNTS,
    INACTIVE_ACCOUNTS,
    MODEL_MEDIA_TYPE,
)
from tests.reconcile import assert_reconciles
from tests.tap_runner import TapRun, run_tap
from tests.test_amazon_ads_invoices import selecting
from tests.test_invoices import catalog_selecting

STREAM = "amazon_ads_billing_statements"
# One 90-day statement per account keeps each run short.
START, END = dt.date(2026, 7, 1), dt.date(2026, 9, 28)
ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


@pytest.fixture
def config(emulator: Emulator) -> dict:
    from tap_ad_invoices.emulator.cli import tap_config

    section = {**tap_config(emulator)["amazon_ads"], "poll_interval_seconds": 0}
    return {"start_date": START.isoformat(), "end_date": END.isoformat(), "amazon_ads": section}


def creates(emulator: Emulator) -> list[tuple[str, str]]:
    """(account, Content-Type) of every POST /billingStatements the emulator saw, in order."""
    return [
        (headers["amazon-ads-accountid"], headers.get("content-type", ""))
        for name, _, headers in emulator.requests_seen
        if name == "ads.statements.create"
    ]


def failed_lines(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "FAILED " in line]


def expected_keys(emulator: Emulator, accounts: set[str]) -> set[tuple[str, str]]:
    return {
        (inv.account_id, inv.invoice_number)
        for inv in emulator.sources["amazon_ads"].invoices
        if inv.account_id in accounts and START <= inv.invoice_date <= END
    }


def test_the_accepted_form_is_kept_in_state_so_the_second_run_pays_no_refusal(
    emulator, config, tmp_path
):
    emulator.knobs["ads_statement_request_form"] = "model"
    first = run_tap(config, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    sent = creates(emulator)
    # One refusal (415, the guide's application/json), then the model's form for the rest.
    assert emulator.counters["ads.statements.create"] == len(ACCOUNTS) + 1
    assert sent[0][1] == "application/json"
    assert all(content_type == MODEL_MEDIA_TYPE for _, content_type in sent[1:])
    assert first.state is not None
    assert first.state["bookmarks"][STREAM]["request_form"] == "model"
    assert "refused the guide's form" in first.stderr
    assert {(r["account_id"], r["invoice_key"]) for r in first.records[STREAM]} == expected_keys(
        emulator, {a[0] for a in ACCOUNTS}
    )

    emulator.requests_seen.clear()
    emulator.counters.clear()
    bodies_before = len(emulator.sources["amazon_ads"].create_requests)
    second = run_tap(config, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert emulator.counters["ads.statements.create"] == len(ACCOUNTS)  # no refusal paid
    assert {content_type for _, content_type in creates(emulator)} == {MODEL_MEDIA_TYPE}
    bodies = emulator.sources["amazon_ads"].create_requests[bodies_before:]
    assert all(ISO_DATE.match(b["startDate"]) and ISO_DATE.match(b["endDate"]) for b in bodies)
    assert "refused" not in second.stderr


def test_a_form_that_stops_working_is_replaced_in_state(emulator, config, tmp_path):
    """State says the model's form; the API now takes only the guide's (a 400 about dates)."""
    emulator.knobs["ads_statement_request_form"] = "guide"
    state = {"bookmarks": {STREAM: {"request_form": "model"}}}
    run = run_tap(config, tmp_path, state=state)
    assert run.returncode == 0, run.stderr
    sent = creates(emulator)
    assert sent[0][1] == MODEL_MEDIA_TYPE  # started with the remembered form
    assert emulator.counters["ads.statements.create"] == len(ACCOUNTS) + 1
    assert all(b["startDate"].isdigit() for b in emulator.sources["amazon_ads"].create_requests[1:])
    assert run.state is not None
    assert run.state["bookmarks"][STREAM]["request_form"] == "guide"


def test_an_unrelated_400_fails_its_statement_alone_and_never_switches_the_form(
    emulator, config, tmp_path
):
    # The first account's statement is refused for the account, not the form: no second
    # form is tried for it, and the form is still learnt from the next account's 415.
    bad = ACCOUNTS[0][0]
    emulator.knobs["ads_statement_request_form"] = "model"
    emulator.knobs["ads_invalid_accounts"] = [bad]
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    accounts = [account for account, _ in creates(emulator)]
    assert accounts.count(bad) == 1, creates(emulator)  # refused once, never in the other form
    assert len(accounts) == len(ACCOUNTS) + 1  # plus the one 415 that taught the form
    lines = failed_lines(run)
    assert len(lines) == 1, lines
    assert bad in lines[0] and "not eligible for billing statements" in lines[0]
    assert "HTTP 400" in lines[0]
    good = {a[0] for a in ACCOUNTS} - {bad}
    assert {(r["account_id"], r["invoice_key"]) for r in run.records[STREAM]} == expected_keys(
        emulator, good
    )
    assert run.state is not None
    state = run.state["bookmarks"][STREAM]
    assert state["accounts"][bad]["synced_through"] is None  # read again next run
    assert state["request_form"] == "model"
    assert_reconciles(
        run,
        "amazon_ads",
        STREAM,
        source_total=lambda r: r["total_amount"],
        source_keys=("account_id", "invoice_key"),
    )


def test_accounts_that_are_not_created_are_skipped_and_named_once(emulator, config, tmp_path: Path):
    # Both Amazon Ads streams selected: the accounts are listed once for both.
    catalog = selecting(
        catalog_selecting(config, tmp_path / "discover", set()), STREAM, "amazon_ads_invoices"
    )
    config["documents"] = {"destination": str(tmp_path / "pdfs")}
    run = run_tap(config, tmp_path / "run", catalog=catalog)
    assert run.returncode == 0, run.stderr
    inactive = {a[0] for a in INACTIVE_ACCOUNTS}
    asked = {h.get("amazon-ads-accountid") for name, _, h in emulator.requests_seen}
    assert asked.isdisjoint(inactive)
    lines = [line for line in run.stderr.splitlines() if "not CREATED" in line]
    assert len(lines) == 1, lines
    for account_id, _, _, status in INACTIVE_ACCOUNTS:
        assert f"{account_id} ({status})" in lines[0]
    assert emulator.counters["ads.accounts.list"] == 3  # three pages, listed once per run
    assert {r["account_id"] for r in run.records[STREAM]} == {a[0] for a in ACCOUNTS}


def test_an_accounts_error_comes_out_with_its_code_message_and_id(emulator, config, tmp_path):
    emulator.knobs["ads_accounts_error"] = {
        "status": 403,
        "errorCode": "FORBIDDEN",
        "errorMessage": "The caller is not authorized to list advertising accounts",
    }
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    lines = failed_lines(run)
    assert len(lines) == 1, lines
    assert "account discovery" in lines[0]
    assert "HTTP 403 FORBIDDEN" in lines[0]
    assert "not authorized to list advertising accounts" in lines[0]
    assert re.search(r"errorId emu-[0-9a-f]{8}", lines[0])
    assert emulator.counters["ads.statements.create"] == 0


def test_the_quota_benchmark_finds_run_two_at_the_floor(tmp_path):
    """`scripts/bench_amazon_ads_quota.py`, as `scripts/bench_quota.py` imports it."""
    path = Path(__file__).parent.parent / "scripts" / "bench_amazon_ads_quota.py"
    spec = importlib.util.spec_from_file_location("bench_amazon_ads_quota", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = bench.amazon_ads_quota_run2(tmp_path)
    assert table["POST /billingStatements"] == (20, 20)
    assert all(measured <= floor for measured, floor in table.values()), table
