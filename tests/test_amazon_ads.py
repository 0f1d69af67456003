"""End to end: the real tap (subprocess) against the emulated Amazon Ads API."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tap_ad_invoices.emulator import Emulator, Fault
from tap_ad_invoices.emulator.amazon_ads import ACCOUNTS, CLIENT_SECRET, REFRESH_TOKEN
from tap_ad_invoices.windows import plan_windows
from tests.tap_runner import TapRun, run_tap

STREAM = "amazon_ads_billing_statements"
START, END = dt.date(2025, 1, 1), dt.date(2026, 11, 15)


@pytest.fixture
def config(emulator: Emulator) -> dict:
    from tap_ad_invoices.emulator.cli import tap_config

    full = tap_config(emulator, start_date=START.isoformat())
    full["end_date"] = END.isoformat()
    full["amazon_ads"]["poll_interval_seconds"] = 0
    return {
        "start_date": full["start_date"],
        "end_date": full["end_date"],
        "amazon_ads": full["amazon_ads"],
    }


def truth(emulator: Emulator, since: dt.date = START) -> dict[tuple[str, str], object]:
    return {
        (inv.account_id, inv.invoice_number): inv
        for inv in emulator.sources["amazon_ads"].invoices
        if since <= inv.invoice_date <= END
    }


def state_of(run: TapRun) -> dict:
    assert run.state is not None, "the tap emitted no STATE"
    return run.state


def assert_no_secrets(run: TapRun) -> None:
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, "X-Amz-Signature=", "Atza|"):
        assert secret not in run.stderr
    for message in run.messages:
        text = str(message)
        assert CLIENT_SECRET not in text and REFRESH_TOKEN not in text and "Atza|" not in text


def assert_matches_truth(records: list[dict], expected: dict) -> None:
    keys = [(r["account_id"], r["invoice_key"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicate primary keys within one run"
    assert set(keys) == set(expected)
    for record in records:
        inv = expected[(record["account_id"], record["invoice_key"])]
        assert record["invoice_number"] == inv.invoice_number
        assert record["invoice_date"] == inv.invoice_date.isoformat()
        assert record["due_date"] == inv.due_date.isoformat()
        assert record["invoice_status"] == inv.status
        assert record["currency"] == inv.currency
        assert record["purchase_order"] == (inv.purchase_order or None)
        assert record["advertiser_name"] == inv.advertiser
        for field in (
            "billable_amount",
            "tax_amount",
            "total_amount",
            "amount_paid",
            "remaining_amount",
        ):
            value = record[field]
            assert isinstance(value, (Decimal, int)), field  # JSON number, never a float
            assert value == getattr(inv, field), (field, record["invoice_key"])
        assert record["columns"]["Notes"] == inv.notes  # multi-line quoted cell intact


def test_full_sync_emits_every_invoice_once_with_exact_amounts(emulator, config, tmp_path):
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert_matches_truth(run.records[STREAM], truth(emulator))
    credit_notes = [r for r in run.records[STREAM] if r["total_amount"] < 0]
    assert credit_notes, "the emulator's credit notes must arrive with negative amounts"
    assert any("," in (r["purchase_order"] or "") for r in run.records[STREAM])
    assert_no_secrets(run)
    windows = len(plan_windows(START, END, 90))
    assert emulator.counters["ads.statements.create"] == windows * len(ACCOUNTS)
    # Discovery walks all three pages (two of them list accounts that are not CREATED).
    assert emulator.counters["ads.accounts.list"] == 3
    assert emulator.counters["lwa.token"] == 1  # one access token for the whole run
    for account in ACCOUNTS:
        account_state = state_of(run)["bookmarks"][STREAM]["accounts"][account[0]]
        assert account_state == {"synced_through": END.isoformat(), "pending": []}


def test_second_run_rereads_only_the_lookback_and_sees_payments(emulator, config, tmp_path):
    first = run_tap(config, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    since = END - dt.timedelta(days=60)
    unpaid = next(
        i
        for i in emulator.sources["amazon_ads"].invoices
        if i.status == "Unpaid" and since <= i.invoice_date <= END
    )
    emulator.sources["amazon_ads"].mutate({"op": "pay", "invoice_number": unpaid.invoice_number})
    emulator.counters.clear()

    config["amazon_ads"]["lookback_days"] = 60
    second = run_tap(config, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert_matches_truth(second.records[STREAM], truth(emulator, since))
    paid = [r for r in second.records[STREAM] if r["invoice_number"] == unpaid.invoice_number]
    assert [r["invoice_status"] for r in paid] == ["Paid"]
    assert emulator.counters["ads.statements.create"] == len(ACCOUNTS) * len(
        plan_windows(since, END, 90)
    )


def test_statement_in_progress_is_resumed_not_recreated(emulator, config, tmp_path):
    emulator.knobs["ads_polls_until_ready"] = 10**9  # never ready during the first run
    config["amazon_ads"]["max_wait_seconds"] = 0
    config["amazon_ads"]["account_ids"] = [ACCOUNTS[0][0]]
    config["max_workers"] = 50  # every window's statement is requested before the budget ends
    first = run_tap(config, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    assert "still generating" in first.stderr
    pending = state_of(first)["bookmarks"][STREAM]["accounts"][ACCOUNTS[0][0]]["pending"]
    assert pending and all(p["billing_statement_id"] for p in pending)
    assert STREAM not in first.records
    created = emulator.counters["ads.statements.create"]

    emulator.knobs["ads_polls_until_ready"] = 0
    config["amazon_ads"]["max_wait_seconds"] = 3600
    second = run_tap(config, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert emulator.counters["ads.statements.create"] == created  # none re-created
    expected = {k: v for k, v in truth(emulator).items() if k[0] == ACCOUNTS[0][0]}
    windows = {(p["start"], p["end"]) for p in pending}
    ids = {p["billing_statement_id"] for p in pending}
    assert {r["billing_statement_id"] for r in second.records[STREAM]} <= ids
    assert_matches_truth(second.records[STREAM], expected)
    assert len(windows) == len(pending)


def test_faults_are_survived_and_nothing_is_lost(emulator, config, tmp_path):
    for fault in (
        Fault("ads.statements.create", status=429, retry_after=0.05, count=3),
        Fault("ads.statements.get", status=503, count=2),
        Fault("ads.statements.download", kind="drop", count=1),
        Fault("ads.statements.download", kind="truncate", count=2),
        Fault("ads.statements.download", kind="expire_link", count=2),
        Fault("ads.statements.get", kind="expire_token", count=1),
        Fault("ads.accounts.list", kind="drop", count=1),
    ):
        emulator.add_fault(fault)
    # A server-side token bucket on polling: 429 with Retry-After whenever it runs dry.
    emulator.knobs["rate_limits"] = {"ads.statements.get": [10, 1]}
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert_matches_truth(run.records[STREAM], truth(emulator))
    assert emulator.counters["ads.statements.get.throttled"] > 0, dict(emulator.counters)
    assert emulator.counters["lwa.token"] == 2  # the revoked token was refreshed once
    assert not emulator.faults, "every injected fault was met"
    assert_no_secrets(run)


def test_failed_statement_fails_its_account_only(emulator, config, tmp_path):
    broken = ACCOUNTS[1][0]
    emulator.knobs["ads_failed_accounts"] = [broken]
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    assert "billing statement generation failed" in run.stderr
    assert broken in run.stderr.split("item(s) failed")[1]
    expected = {k: v for k, v in truth(emulator).items() if k[0] != broken}
    assert_matches_truth(run.records[STREAM], expected)
    accounts = state_of(run)["bookmarks"][STREAM]["accounts"]
    assert accounts[broken]["synced_through"] is None
    assert accounts[ACCOUNTS[0][0]]["synced_through"] == END.isoformat()


def test_date_format_falls_back_once_when_the_api_refuses_yyyymmdd(emulator, config, tmp_path):
    emulator.knobs["ads_statement_request_form"] = "model"
    emulator.knobs["ads_create_response_key"] = "billingStatementRequestId"
    config["amazon_ads"]["account_ids"] = [ACCOUNTS[0][0]]
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    bodies = emulator.sources["amazon_ads"].create_requests
    assert bodies[0]["startDate"] == START.strftime("%Y%m%d")
    assert all("-" in b["startDate"] for b in bodies[1:])
    assert len(bodies) == len(plan_windows(START, END, 90)) + 1  # one refused probe
    assert Counter(r["account_id"] for r in run.records[STREAM]) == Counter(
        k[0] for k in truth(emulator) if k[0] == ACCOUNTS[0][0]
    )


def test_explicit_date_format_is_sent_as_configured(emulator, config, tmp_path):
    emulator.knobs["ads_statement_request_form"] = "guide"
    config["amazon_ads"]["statement_date_format"] = "YYYY-MM-DD"
    config["amazon_ads"]["account_ids"] = [ACCOUNTS[0][0]]
    run = run_tap(config, tmp_path)
    assert run.returncode == 1  # the emulator refuses it, and no silent fallback happens
    assert "HTTP 400" in run.stderr


def test_revoked_refresh_token_stops_with_a_reauthorisation_message(emulator, config, tmp_path):
    emulator.knobs["lwa_invalid_grant"] = True
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    assert "re-authorise" in run.stderr and "amazon_ads.refresh_token" in run.stderr
    assert "Traceback" not in run.stderr
    assert_no_secrets(run)


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        (lambda c: c["amazon_ads"].pop("client_id"), "amazon_ads.client_id"),
        (lambda c: c.update(start_date="yesterday"), "start_date"),
        (lambda c: c["amazon_ads"].update(region="MARS"), "amazon_ads.region"),
        (lambda c: c["amazon_ads"].update(country_codes=["GB"]), "amazon_ads.country_codes"),
        (lambda c: c["amazon_ads"].update(lookback_days=-1), "amazon_ads.lookback_days"),
        (lambda c: c.pop("start_date"), "start_date"),
    ],
)
def test_bad_config_gives_one_line_naming_the_setting(
    emulator, config, tmp_path: Path, change, setting
):
    change(config)
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert setting in errors[0]
    assert "Traceback" not in run.stderr
    assert sum(emulator.counters.values()) == 0  # validated before any network call
    assert CLIENT_SECRET not in run.stderr
