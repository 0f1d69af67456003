"""amazon_ads_invoices end to end: the real tap against the emulated billing API (issue 13)."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import signal
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from tap_ad_invoices.amazon_ads.client import AmazonAdsClient
from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.emulator import Emulator, Fault
from tap_ad_invoices.emulator.amazon_ads import (
    ACCOUNTS,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    SUMMARIES_MEDIA_TYPE,
    UNAVAILABLE_DOCUMENT,
    UNAVAILABLE_REASON,
    AdsInvoice,
    document_pdf,
)
from tests.reconcile import assert_reconciles, sums_by_currency
from tests.tap_runner import TapRun, WatchedTap, run_tap
from tests.test_invoices import catalog_selecting

STREAM = "amazon_ads_invoices"
STATEMENTS = "amazon_ads_billing_statements"
PK = ("platform", "account_id", "invoice_number", "document_kind")
KEYS = {STREAM: ("account_id", "invoice_id"), STATEMENTS: ("account_id", "invoice_key")}
START, END = dt.date(2025, 1, 1), dt.date(2026, 11, 15)


@pytest.fixture
def config(emulator: Emulator, tmp_path: Path) -> dict:
    from tap_ad_invoices.emulator.cli import tap_config

    section = {**tap_config(emulator)["amazon_ads"], "poll_interval_seconds": 0}
    return {
        "start_date": START.isoformat(),
        "end_date": END.isoformat(),
        "amazon_ads": section,
        "documents": {"destination": str(tmp_path / "pdfs")},
    }


@pytest.fixture
def discovered(config: dict, tmp_path: Path) -> dict:
    """The tap's catalog, every stream deselected: tests select what they need."""
    return catalog_selecting(config, tmp_path / "discover", set())


def selecting(catalog: dict, *streams: str) -> dict:
    chosen = copy.deepcopy(catalog)
    for entry in chosen["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return chosen


def truth(emulator: Emulator, since: dt.date = START) -> dict[tuple[str, str], AdsInvoice]:
    return {
        (inv.account_id, inv.invoice_number): inv
        for inv in emulator.sources["amazon_ads"].invoices
        if since <= inv.invoice_date <= END
    }


def failed_lines(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "FAILED" in line and "[" in line]


def assert_no_secrets(run: TapRun) -> None:
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, "X-Amz-Signature=", "Atza|"):
        assert secret not in run.stderr
        assert all(secret not in str(m) for m in run.messages)


def assert_matches_truth(records: list[dict], expected: dict) -> None:
    keys = [(r["account_id"], r["invoice_id"]) for r in records]
    assert len(keys) == len(set(keys)), "duplicate primary keys within one run"
    assert set(keys) == set(expected)
    for record in records:
        inv = expected[(record["account_id"], record["invoice_id"])]
        credit = inv.document_type == "Credit Note"
        assert record["issued_date"] == inv.invoice_date.isoformat()
        assert record["due_date"] == inv.due_date.isoformat()
        assert record["status"] == inv.status
        assert record["currency"] == inv.currency
        assert record["country_code"] == inv.country_code
        for field, value in (
            ("amount_due", inv.total_amount),
            ("remaining_amount_due", inv.remaining_amount),
        ):
            assert isinstance(record[field], (Decimal, int)), field  # never a float
            assert record[field] == value, (field, record["invoice_id"])
        assert record["document_kind"] == ("credit_memo" if credit else "invoice")
        assert record["refund_amount"] == (-inv.total_amount if credit else None)
        assert record["raw"]["id"] == inv.invoice_number


def assert_pdfs(records: list[dict], expected: dict) -> None:
    for record in records:
        inv = expected[(record["account_id"], record["invoice_id"])]
        if inv.invoice_number == UNAVAILABLE_DOCUMENT:
            assert record["document_unavailable_reason"] == UNAVAILABLE_REASON
            assert record["pdf_sha256"] is None and record["pdf_uri"] is None
            continue
        pdf = document_pdf(inv)
        assert record["pdf_sha256"] == hashlib.sha256(pdf).hexdigest(), record["invoice_id"]
        assert Path(record["pdf_uri"]).read_bytes() == pdf
        assert record["pdf_size"] == len(pdf) and record["pdf_page_count"] == 1
        assert record["document_type"] == (
            "CREDIT_MEMO" if inv.document_type == "Credit Note" else "INVOICE"
        )


def test_every_invoice_arrives_once_with_status_exact_amounts_and_pdf(
    emulator, config, discovered, tmp_path
):
    run = run_tap(config, tmp_path / "run", catalog=selecting(discovered, STREAM, "invoices"))
    assert run.returncode == 0, run.stderr
    expected = truth(emulator)
    records = run.records[STREAM]
    assert_matches_truth(records, expected)
    assert_pdfs(records, expected)
    assert {r["document_kind"] for r in records} == {"invoice", "credit_memo"}
    assert {r["status"] for r in records} == {"Paid", "Unpaid", "Partially Paid"}
    assert emulator.counters["ads.invoices.list"] > len(ACCOUNTS)  # several pages each
    # Presigned links were fetched with no credential at all.
    downloads = [h for name, _, h in emulator.requests_seen if name == "ads.documents.download"]
    assert len(downloads) == len(expected) - 1  # every PDF but the unavailable one
    assert not any(
        "authorization" in h or "amazon-advertising-api-clientid" in h for h in downloads
    )
    assert emulator.counters["ads.statements.create"] == 0  # the statements were not selected
    assert_no_secrets(run)

    # `invoices`: one row per invoice, credit memos negative, status and PDF carried over.
    rows = run.records["invoices"]
    assert sorted(r["invoice_number"] for r in rows) == sorted(r["invoice_id"] for r in records)
    by_number = {r["invoice_number"]: r for r in rows}
    for record in records:
        row = by_number[record["invoice_id"]]
        assert (
            row["total_amount"] == -abs(record["amount_due"])
            if (record["document_kind"] == "credit_memo")
            else record["amount_due"]
        )
        assert row["document_sha256"] == record["pdf_sha256"]
        assert row["status"] == record["status"].lower().replace(" ", "_")
    sums = assert_reconciles(
        run,
        "amazon_ads",
        STREAM,
        source_total=lambda r: r["amount_due"],
        source_keys=("account_id", "invoice_id"),
    )
    assert len(sums) > 3  # several currencies, each to the cent
    state = run.state["bookmarks"][STREAM]
    assert {a["issued_through"] for a in state["accounts"].values()} == {END.isoformat()}


def test_documents_on_the_api_host_are_fetched_with_credentials(
    emulator, config, discovered, tmp_path
):
    emulator.knobs["ads_document_storage"] = "path"
    config["amazon_ads"]["account_ids"] = [ACCOUNTS[0][0]]
    run = run_tap(config, tmp_path / "run", catalog=selecting(discovered, STREAM))
    assert run.returncode == 0, run.stderr
    expected = {k: v for k, v in truth(emulator).items() if k[0] == ACCOUNTS[0][0]}
    assert_pdfs(run.records[STREAM], expected)
    files = [h for name, _, h in emulator.requests_seen if name == "ads.documents.file"]
    assert len(files) == len(expected)
    assert all(h["amazon-ads-accountid"] == ACCOUNTS[0][0] for h in files)
    assert emulator.counters["ads.documents.download"] == 0
    assert_no_secrets(run)


def test_second_run_sees_a_payment_and_reuses_stored_pdfs(emulator, config, discovered, tmp_path):
    catalog = selecting(discovered, STREAM, "invoices")
    first = run_tap(config, tmp_path / "1", catalog=catalog)
    assert first.returncode == 0, first.stderr
    since = END - dt.timedelta(days=60)
    unpaid = next(i for i in truth(emulator, since).values() if i.status == "Unpaid")
    emulator.sources["amazon_ads"].mutate({"op": "pay", "invoice_number": unpaid.invoice_number})
    emulator.counters.clear()

    config["amazon_ads"]["invoices_lookback_days"] = 60
    second = run_tap(config, tmp_path / "2", state=first.state, catalog=catalog)
    assert second.returncode == 0, second.stderr
    expected = truth(emulator, since)
    assert_matches_truth(second.records[STREAM], expected)
    assert_pdfs(second.records[STREAM], expected)
    [paid] = [r for r in second.records[STREAM] if r["invoice_id"] == unpaid.invoice_number]
    assert (paid["status"], paid["remaining_amount_due"]) == ("Paid", 0)
    [row] = [r for r in second.records["invoices"] if r["invoice_number"] == unpaid.invoice_number]
    assert row["status"] == "paid"
    # Stored PDFs are reused: only the unavailable document is asked for again.
    assert emulator.counters["ads.documents.download"] == 0
    assert emulator.counters["ads.documents.get"] == 1
    assert "not downloaded again" in second.stderr
    # State keeps only what a later look-back can re-read.
    kept = second.state["bookmarks"][STREAM]["documents"]
    oldest = (END - dt.timedelta(days=60)).isoformat()
    assert kept and all(d["issued"] >= oldest for d in kept.values())


def test_a_failed_document_fails_alone_and_the_next_run_completes(
    emulator, config, discovered, tmp_path
):
    catalog = selecting(discovered, STREAM, "invoices")
    emulator.add_fault(Fault("ads.documents.download", status=404, count=1, after=60))
    first = run_tap(config, tmp_path / "1", catalog=catalog)
    assert first.returncode == 1
    [line] = failed_lines(first)
    assert STREAM in line and "HTTP 404" in line and "Traceback" not in first.stderr
    expected = truth(emulator)
    assert_matches_truth(first.records[STREAM], expected)  # its record still went out
    missing = [
        r
        for r in first.records[STREAM]
        if r["pdf_sha256"] is None and r["invoice_id"] != UNAVAILABLE_DOCUMENT
    ]
    assert len(missing) == 1 and missing[0]["invoice_id"] in line
    broken = missing[0]["account_id"]
    accounts = first.state["bookmarks"][STREAM]["accounts"]
    assert accounts[broken]["issued_through"] is None  # a failed item never moves a bookmark
    assert {a["issued_through"] for k, a in accounts.items() if k != broken} == {END.isoformat()}
    emulator.counters.clear()

    second = run_tap(config, tmp_path / "2", state=first.state, catalog=catalog)
    assert second.returncode == 0, second.stderr
    assert emulator.counters["ads.documents.download"] == 1  # just the one that failed
    [again] = [r for r in second.records[STREAM] if r["invoice_id"] == missing[0]["invoice_id"]]
    assert (
        again["pdf_sha256"]
        == hashlib.sha256(document_pdf(expected[(broken, again["invoice_id"])])).hexdigest()
    )
    accounts = second.state["bookmarks"][STREAM]["accounts"]
    assert {a["issued_through"] for a in accounts.values()} == {END.isoformat()}


def test_expired_links_throttling_and_server_errors_are_survived(
    emulator, config, discovered, tmp_path
):
    for fault in (
        Fault("ads.invoices.list", status=429, retry_after=0.05, count=2),
        Fault("ads.documents.get", status=503, count=1),
        Fault("ads.documents.get", kind="expire_token", count=1, after=10),
        Fault("ads.documents.download", kind="expire_link", count=2, after=3),
        Fault("ads.documents.download", kind="truncate", count=1, after=20),
    ):
        emulator.add_fault(fault)
    run = run_tap(config, tmp_path / "run", catalog=selecting(discovered, STREAM))
    assert run.returncode == 0, run.stderr
    expected = truth(emulator)
    assert_matches_truth(run.records[STREAM], expected)
    assert_pdfs(run.records[STREAM], expected)
    assert not emulator.faults, "every injected fault was met"
    assert emulator.counters["lwa.token"] == 2  # the revoked token was refreshed once
    assert_no_secrets(run)


@pytest.mark.parametrize(
    "selected",
    [
        {STATEMENTS, "invoices"},
        {STREAM, "invoices"},
        {STATEMENTS, STREAM, "invoices"},
        {"invoices"},
    ],
    ids=["statements", "summaries", "both", "invoices-only"],
)
def test_either_or_both_amazon_ads_streams_give_the_same_invoices(
    emulator, config, discovered, tmp_path, selected
):
    run = run_tap(config, tmp_path / "run", catalog=selecting(discovered, *selected))
    assert run.returncode == 0, run.stderr
    rows = [r for r in run.records["invoices"] if r["platform"] == "amazon_ads"]
    keys = [tuple(r[k] for k in PK) for r in rows]
    assert len(keys) == len(set(keys)), "one row per Amazon Ads invoice"
    expected = {
        ("amazon_ads", account, number, "credit_memo" if inv.total_amount < 0 else "invoice")
        for (account, number), inv in truth(emulator).items()
    }
    assert set(keys) == expected
    # The precedence rule: a selected amazon_ads_invoices is the only feeder.
    feeder = STREAM if STREAM in selected else STATEMENTS
    assert {r["source_stream"] for r in rows} == {feeder}
    if feeder in selected:  # the source's own records were written too
        assert_reconciles(
            run,
            "amazon_ads",
            feeder,
            source_total=lambda r: r["amount_due"] if feeder == STREAM else r["total_amount"],
            source_keys=KEYS[feeder],
        )
    by_currency = sums_by_currency(rows, "currency", lambda r: r["total_amount"])
    truth_sums = sums_by_currency(
        [{"currency": i.currency, "total": i.total_amount} for i in truth(emulator).values()],
        "currency",
        lambda r: r["total"],
    )
    assert by_currency == truth_sums  # both sources tell the same totals, to the cent
    # A stream run only for `invoices` that does not feed it makes no API call.
    if feeder == STREAM and STATEMENTS not in selected:
        assert emulator.counters["ads.statements.create"] == 0
    if STREAM not in selected:
        assert emulator.counters["ads.invoices.list"] == 0


def test_without_documents_no_document_is_asked_for(emulator, config, discovered, tmp_path):
    config["amazon_ads"]["invoice_documents"] = False
    run = run_tap(config, tmp_path / "run", catalog=selecting(discovered, STREAM))
    assert run.returncode == 0, run.stderr
    assert_matches_truth(run.records[STREAM], truth(emulator))  # credit memos by their sign
    assert all(r["pdf_sha256"] is None for r in run.records[STREAM])
    assert emulator.counters["ads.documents.get"] == 0
    assert emulator.counters["ads.documents.download"] == 0


def test_a_negative_look_back_is_refused_in_one_line(emulator, config, discovered, tmp_path):
    config["amazon_ads"]["invoices_lookback_days"] = -1
    run = run_tap(config, tmp_path / "run", catalog=selecting(discovered, STREAM))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "amazon_ads.invoices_lookback_days" in errors[0]
    assert sum(emulator.counters.values()) == 0


def test_the_emulator_checks_requests_as_the_model_says(emulator):
    from tap_ad_invoices.emulator.cli import tap_config

    settings = AmazonAdsSettings.from_section(tap_config(emulator)["amazon_ads"])
    client = AmazonAdsClient(settings)
    headers = {
        "Amazon-Advertising-API-ClientId": settings.client_id,
        "Authorization": f"Bearer {client.auth.access_token()}",
        "Content-Type": SUMMARIES_MEDIA_TYPE,
        "Accept": SUMMARIES_MEDIA_TYPE,
        "Amazon-Ads-AccountId": ACCOUNTS[0][0],
    }
    url = f"{emulator.base_url}/invoiceSummaries/list"
    assert requests.post(url, json={}, headers=headers, timeout=10).status_code == 200
    no_account = {k: v for k, v in headers.items() if k != "Amazon-Ads-AccountId"}
    assert requests.post(url, json={}, headers=no_account, timeout=10).status_code == 400
    plain_json = {**headers, "Content-Type": "application/json"}
    assert requests.post(url, json={}, headers=plain_json, timeout=10).status_code == 415


def test_killed_after_an_account_resumes_with_the_next(emulator, config, discovered, tmp_path):
    first_account, held = ACCOUNTS[0][0], ACCOUNTS[1][0]
    hold = threading.Event()
    emulator.sources["amazon_ads"].list_holds[held] = hold  # the tap waits there until killed
    tap = WatchedTap(
        config,
        tmp_path / "killed",
        until=lambda state: bool(
            (state["bookmarks"].get(STREAM, {}).get("accounts", {}).get(first_account) or {}).get(
                "issued_through"
            )
        ),
        catalog=selecting(discovered, STREAM, "invoices"),
    )
    try:
        assert tap.reached.wait(timeout=60), "the first account's STATE never came"
    finally:
        killed = tap.kill()
        hold.set()
    assert killed.returncode == -signal.SIGKILL
    assert {r["account_id"] for r in killed.records[STREAM]} == {first_account}

    emulator.counters.clear()
    emulator.sources["amazon_ads"].summary_requests.clear()
    resumed = run_tap(
        config, tmp_path / "resumed", state=killed.state, catalog=selecting(discovered, STREAM)
    )
    assert resumed.returncode == 0, resumed.stderr
    expected = truth(emulator)
    emitted = {(r["account_id"], r["invoice_id"]) for r in killed.records[STREAM]}
    emitted |= {(r["account_id"], r["invoice_id"]) for r in resumed.records[STREAM]}
    assert emitted == set(expected)
    # The finished account is read from its look-back only; the others from the start.
    starts = {
        account: body["invoiceIssuedDateRangeFilter"]["startDate"]
        for account, body in emulator.sources["amazon_ads"].summary_requests
    }
    assert starts[first_account] == (END - dt.timedelta(days=90)).isoformat()
    assert starts[held] == starts[ACCOUNTS[2][0]] == START.isoformat()
    # The finished account's PDFs were stored before the kill and are not fetched again.
    others = [k for k in expected if k[0] != first_account and k[1] != UNAVAILABLE_DOCUMENT]
    assert emulator.counters["ads.documents.download"] == len(others)


@pytest.mark.parametrize("amount", ["abc", "NaN", 1.5, True, "1,234.56"])
def test_a_summary_amount_that_is_not_a_plain_decimal_is_refused(amount):
    from tap_ad_invoices.amazon_ads.invoice_conversion import money
    from tap_ad_invoices.money import AmountError

    with pytest.raises(AmountError):
        money({"amount": amount, "currencyCode": "USD"})
    assert money({"amount": Decimal("-12.30"), "currencyCode": "EUR"}) == (
        Decimal("-12.30"),
        "EUR",
    )
