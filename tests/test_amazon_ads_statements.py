"""Amazon Ads statements, end to end: exact or refused (issue 9), read by meaning (issue 17).

Each test runs the real tap against the emulator, serving either the emulator's
statements in another header vocabulary or locale, or a crafted file.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.amazon_ads import ACCOUNTS, HEADER
from tests.reconcile import assert_reconciles
from tests.tap_runner import TapRun, run_tap

STREAM = "amazon_ads_billing_statements"
# One 90-day statement per account keeps each run short.
START, END = dt.date(2026, 7, 1), dt.date(2026, 9, 28)
BAD_ACCOUNT = ACCOUNTS[1][0]
MONEY = ("billable_amount", "tax_amount", "total_amount", "amount_paid", "remaining_amount")


@pytest.fixture
def config(emulator: Emulator) -> dict:
    from tap_ad_invoices.emulator.cli import tap_config

    full = tap_config(emulator, start_date=START.isoformat())
    section = {**full["amazon_ads"], "poll_interval_seconds": 0}
    return {"start_date": START.isoformat(), "end_date": END.isoformat(), "amazon_ads": section}


def truth(emulator: Emulator) -> dict[tuple[str, str], object]:
    return {
        (inv.account_id, inv.invoice_number): inv
        for inv in emulator.sources["amazon_ads"].invoices
        if START <= inv.invoice_date <= END
    }


def failed_lines(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "FAILED" in line and "[" in line]


def assert_fields_match(records: list[dict], expected: dict) -> None:
    assert {(r["account_id"], r["invoice_key"]) for r in records} == set(expected)
    for record in records:
        inv = expected[(record["account_id"], record["invoice_key"])]
        assert record["invoice_number"] == inv.invoice_number
        assert record["invoice_date"] == inv.invoice_date.isoformat()
        assert record["due_date"] == inv.due_date.isoformat()
        assert record["service_start_date"] == inv.period_start.isoformat()
        assert record["service_end_date"] == inv.period_end.isoformat()
        assert record["invoice_status"] == inv.status
        assert record["currency"] == inv.currency
        assert record["country_code"] == inv.country_code
        assert record["document_type"] == inv.document_type
        assert record["purchase_order"] == (inv.purchase_order or None)
        assert record["advertiser_name"] == inv.advertiser
        for field in MONEY:
            assert record[field] == getattr(inv, field), (field, record["invoice_key"])
        assert record["amount_status"] == "as_reported"


GERMAN_MAP = {
    "Rechnungsnummer": "invoice_number",
    "Rechnungsdatum": "invoice_date",
    "Fälligkeitsdatum": "due_date",
    "Land": "country_code",
    "Währung": "currency",
    "Leistungszeitraum Beginn": "service_start_date",
    "Leistungszeitraum Ende": "service_end_date",
    "Werbetreibender": "advertiser_name",
    "Belegart": "document_type",
    "Bestellnummer": "purchase_order",
    "Nettobetrag": "billable_amount",
    "Steuer": "tax_amount",
    "Rechnungsbetrag": "total_amount",
    "Bezahlt": "amount_paid",
    "Offener Betrag": "remaining_amount",
}


@pytest.mark.parametrize(
    ("vocabulary", "locale", "column_map"),
    [("emulator", "en_US", None), ("billed", "en_GB", None), ("german", "de_DE", GERMAN_MAP)],
)
def test_every_vocabulary_fills_every_typed_field(
    emulator, config, tmp_path, vocabulary, locale, column_map
):
    emulator.knobs["ads_statement_vocabulary"] = vocabulary
    config["amazon_ads"]["locale"] = locale
    if column_map:
        config["amazon_ads"]["column_map"] = column_map
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert_fields_match(run.records[STREAM], truth(emulator))
    if locale == "de_DE":  # the amounts really were written 1.234,56
        assert any(re.fullmatch(r"-?\d{1,3}(\.\d{3})+,\d\d", c) for c in _cells(run))
    assert "money field(s) with no column" not in run.stderr
    assert_reconciles(
        run,
        "amazon_ads",
        STREAM,
        source_total=lambda r: r["total_amount"],
        source_keys=("account_id", "invoice_key"),
    )


def _cells(run: TapRun) -> list[str]:
    return [v for r in run.records[STREAM] for v in r["columns"].values()]


def test_a_missing_total_is_derived_exactly_and_marked(emulator, config, tmp_path):
    emulator.knobs["ads_statement_drop_columns"] = ["Total Amount"]
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    expected = truth(emulator)
    for record in run.records[STREAM]:
        inv = expected[(record["account_id"], record["invoice_key"])]
        assert record["total_amount"] == inv.total_amount  # billable + tax, exactly
        assert record["amount_status"] == "derived"
    assert {r["amount_status"] for r in run.records["invoices"]} == {"derived"}
    assert "money field(s) with no column: total_amount" in run.stderr


def test_a_missing_billable_amount_is_derived_from_total_and_tax(emulator, config, tmp_path):
    emulator.knobs["ads_statement_drop_columns"] = ["Billable Amount"]
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    expected = truth(emulator)
    for record in run.records[STREAM]:
        inv = expected[(record["account_id"], record["invoice_key"])]
        assert record["billable_amount"] == inv.billable_amount
        assert record["amount_status"] == "derived"


def test_without_total_or_tax_the_total_stays_null_and_says_why(emulator, config, tmp_path):
    emulator.knobs["ads_statement_drop_columns"] = ["Total Amount", "Tax Amount"]
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    rows = run.records["invoices"]
    assert rows and all(r["total_amount"] is None for r in rows)
    assert {r["amount_status"] for r in rows} == {"missing: no column maps to total_amount"}
    assert all(r["billable_amount"] is not None for r in run.records[STREAM])
    warnings = [line for line in run.stderr.splitlines() if "money field(s) with no column" in line]
    assert len(warnings) == len(ACCOUNTS)  # once per run and account
    assert all("tax_amount, total_amount" in line and "WARNING" in line for line in warnings)


GOOD = "Invoice Number,Currency,Total Amount\r\nIN-1,USD,10.00\r\n"


@pytest.mark.parametrize(
    ("locale", "body", "named"),
    [
        ("en_US", GOOD + 'IN-2,USD,"1.234,56"\r\n', "row 2, column 'Total Amount'"),
        ("en_US", GOOD + 'IN-2,USD,"12,34"\r\n', "row 2, column 'Total Amount'"),
        ("en_US", GOOD + "IN-2,USD,1E5\r\n", "row 2, column 'Total Amount'"),
        ("en_US", GOOD + "IN-2,USD,1.5e3\r\n", "row 2, column 'Total Amount'"),
        ("en_US", GOOD + "IN-2,USD,0x1F\r\n", "row 2, column 'Total Amount'"),
        ("en_US", GOOD + "IN-2,USD,(-45.00)\r\n", "row 2, column 'Total Amount'"),
        ("de_DE", GOOD.replace("10.00", '"10,00"') + 'IN-2,USD,"1,234.56"\r\n', "row 2"),
        ("en_US", GOOD + 'IN-2,USD,"5.00\r\nIN-3,USD,6.00\r\nIN-4,USD,7.00\r\n', "row 2"),
        ("en_US", GOOD + "IN-2,USD,7.00\r\n1234.56\r\n", "row 3"),
        ("en_US", GOOD + "IN-2,USD,7.00\r\n" + "x" * 200_000 + "\r\n", "row 3"),
    ],
    ids=[
        "grouping-as-decimal",
        "misplaced-group",
        "exponent",
        "exponent-decimal",
        "hex",
        "two-signs",
        "de-DE-us-number",
        "unclosed-quote",
        "cut-off-last-row",
        "huge-cell",
    ],
)
def test_a_statement_that_cannot_be_read_exactly_fails_alone(
    emulator, config, tmp_path, locale, body, named
):
    emulator.knobs["ads_raw_statements"] = {BAD_ACCOUNT: body}
    config["amazon_ads"]["locale"] = locale
    run = run_tap(config, tmp_path)
    assert run.returncode == 1, run.stderr
    [line] = failed_lines(run)
    assert BAD_ACCOUNT in line and f"{START}..{END}" in line and named in line
    assert "Traceback" not in run.stderr
    # The other accounts are complete; the bad one's bookmark did not move.
    good = {k: v for k, v in truth(emulator).items() if k[0] != BAD_ACCOUNT}
    emitted = {(r["account_id"], r["invoice_key"]) for r in run.records[STREAM]}
    assert set(good) <= emitted
    accounts = run.state["bookmarks"][STREAM]["accounts"]
    assert accounts[BAD_ACCOUNT]["synced_through"] is None
    assert all(accounts[a[0]]["synced_through"] == END.isoformat() for a in ACCOUNTS[::2])

    # Fixed at the source, the next run reads the statement again and completes.
    emulator.knobs["ads_raw_statements"] = {}
    again = run_tap(config, tmp_path / "again", state=run.state)
    assert again.returncode == 0, again.stderr
    assert again.state["bookmarks"][STREAM]["accounts"][BAD_ACCOUNT]["synced_through"] == (
        END.isoformat()
    )


def test_one_invoice_on_two_rows_is_counted_twice_in_both_tables(emulator, config, tmp_path):
    header = ",".join([*HEADER[:1], "Currency", "Total Amount", "Tax Amount", "Billable Amount"])
    emulator.knobs["ads_raw_statements"] = {
        BAD_ACCOUNT: f"{header}\r\n"
        "IN-9,EUR,119.00,19.00,100.00\r\n"
        "IN-9,EUR,11.90,1.90,10.00\r\n"
        "IN-8,EUR,-5.95,-0.95,-5.00\r\n"
    }
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    rows = [r for r in run.records[STREAM] if r["account_id"] == BAD_ACCOUNT]
    assert sorted(r["invoice_key"] for r in rows) == ["IN-8", "IN-9", "IN-9#2"]
    invoices = [r for r in run.records["invoices"] if r["account_id"] == BAD_ACCOUNT]
    assert sorted(r["invoice_number"] for r in invoices) == ["IN-8", "IN-9", "IN-9#2"]
    sums = assert_reconciles(
        run,
        "amazon_ads",
        STREAM,
        source_total=lambda r: r["total_amount"],
        source_keys=("account_id", "invoice_key"),
    )
    assert sum(r["total_amount"] for r in invoices) == Decimal("124.95")
    assert "EUR" in sums


def test_column_map_names_an_unknown_field_in_one_line(config, tmp_path):
    config["amazon_ads"]["column_map"] = {"Rechnungsbetrag": "total"}
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "amazon_ads.column_map" in line]
    assert len(errors) == 1 and "'total'" in errors[0] and "total_amount" in errors[0]
    assert "Traceback" not in run.stderr


def test_an_unsupported_locale_is_refused_before_any_call(emulator, config, tmp_path):
    config["amazon_ads"]["locale"] = "xx_YY"
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    assert "amazon_ads.locale" in run.stderr and "de_DE" in run.stderr
    assert sum(emulator.counters.values()) == 0


def test_a_daily_run_asks_for_one_statement_per_account(emulator, config, tmp_path):
    config["amazon_ads"]["lookback_days"] = 90
    first = run_tap(config, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    emulator.counters.clear()
    config["end_date"] = (END + dt.timedelta(days=1)).isoformat()  # the next day's run
    second = run_tap(config, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    # 91 days of look-back plus today would be a 90-day statement and a 1-day sliver.
    assert emulator.counters["ads.statements.create"] == len(ACCOUNTS)
    accounts = second.state["bookmarks"][STREAM]["accounts"]
    assert {a["synced_through"] for a in accounts.values()} == {config["end_date"]}
    # Declared incremental, and no warning that it could not resume (it can).
    assert f"'{STREAM}' in incremental mode" in second.stderr
    assert "not resumable" not in second.stderr


def test_every_statement_is_requested_before_the_first_is_ready(emulator, config, tmp_path):
    config["start_date"] = "2025-01-01"  # 3 accounts x 8 windows = 24 statements
    config["amazon_ads"]["max_statements_in_flight"] = 100
    emulator.knobs["ads_polls_until_ready"] = 2
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    creates = emulator.counters["ads.statements.create"]
    assert creates == 24
    statements = emulator.sources["amazon_ads"].statements.values()
    assert max(s["created"] for s in statements) < min(s["first_polled"] for s in statements)
    # Each statement is polled twice (not ready, then ready): one sweep waits for all of them.
    assert emulator.counters["ads.statements.get"] == 2 * creates


def test_long_waits_say_what_is_pending_and_what_resumes_next_run(emulator, config, tmp_path):
    emulator.knobs["ads_polls_until_ready"] = 3
    config["amazon_ads"]["progress_interval_seconds"] = 0
    run = run_tap(config, tmp_path / "1")
    assert run.returncode == 0, run.stderr
    progress = [line for line in run.stderr.splitlines() if "waiting" in line and "so far" in line]
    assert progress, "a wait must be reported"
    assert all(ACCOUNTS[0][0] in line for line in progress)
    assert "3 statement(s) being generated" in progress[0]

    emulator.knobs["ads_polls_until_ready"] = 10**9  # never ready during this run
    config["amazon_ads"].update(max_wait_seconds=0, max_statements_in_flight=1)
    config["start_date"] = "2026-01-01"
    stopped = run_tap(config, tmp_path / "2")
    assert stopped.returncode == 0, stopped.stderr
    [line] = [x for x in stopped.stderr.splitlines() if "stopped waiting" in x]
    assert "1 statement(s) still generating" in line and "next run polls them" in line
    assert all(account in line for account, _, _ in ACCOUNTS[1:])  # never requested, named
