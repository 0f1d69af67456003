"""google_ads_invoices end to end: the real tap and the real google-ads client, over gRPC+TLS,
against the emulator. Expected values come from the emulator's truth(), never from constants."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from google.ads.googleads.errors import GoogleAdsException
from google.ads.googleads.v26.enums.types.invoice_type import InvoiceTypeEnum
from google.ads.googleads.v26.resources.types.invoice import Invoice

from tap_ad_invoices.emulator import Emulator, Fault
from tap_ad_invoices.emulator import google_ads as fake
from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.google_ads.client import AdsError, GoogleAdsApi
from tap_ad_invoices.google_ads.config import GoogleAdsSettings
from tap_ad_invoices.google_ads.conversion import (
    amounts,
    invoice_schema,
    message_to_dict,
    schema_from_proto,
)
from tap_ad_invoices.tap import check_config
from tests.tap_runner import TapRun, run_tap

STREAM = "google_ads_invoices"
MICROS = Decimal(1_000_000)
# Serving accounts whose billing setups all produce invoices (no skips): exact call counts.
INVOICED = ["1111111111", "2222222222", "3333333333", "7777777777"]


@pytest.fixture
def google(emulator: Emulator) -> fake.GoogleAdsEmulator:
    return emulator.sources["google_ads"]


def config(google: fake.GoogleAdsEmulator, **section: Any) -> dict[str, Any]:
    base = google.tap_config()["google_ads"]
    documents = section.pop("documents", None)
    result: dict[str, Any] = {
        "start_date": "2025-01-01",
        "end_date": "2026-10-31",
        "max_workers": 4,
        "google_ads": {**base, **section},
    }
    if documents is not None:
        result["documents"] = documents
    return result


def served_ids(truth: dict[str, Any], customers: list[str] | None = None) -> set[str]:
    """Invoices a sync of `customers` (default: every serving account) must return."""
    wanted = customers or truth["serving_customers"]
    return {
        invoice["id"]
        for invoice in truth["invoices"]
        if any(setup.split("/")[1] in wanted for setup in invoice["_setups"])
    }


def assert_no_secrets(run: TapRun, emulator: Emulator) -> None:
    secrets = [fake.CLIENT_SECRET, fake.REFRESH_TOKEN, fake.DEVELOPER_TOKEN]
    secrets += list(emulator.access_tokens)
    for secret in secrets:
        assert secret not in run.stderr
        assert all(secret not in str(message) for message in run.messages)


def error_lines(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "| ERROR" in line]


def test_full_sync_exact_amounts_and_consolidated_dedupe(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    run = run_tap(config(google), tmp_path)
    truth = google.truth()

    assert run.returncode == 0, run.stderr
    records = run.records[STREAM]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "an invoice was emitted twice"
    assert set(ids) == served_ids(truth)

    # Consolidated billing: the shared invoices came back for both customers, once each here.
    shared = [i for i in truth["invoices"] if len(i["_setups"]) > 1]
    assert shared
    calls = google.list_requests
    assert {c["customer_id"] for c in calls if c["billing_setup"] in shared[0]["_setups"]} == {
        s.split("/")[1] for s in shared[0]["_setups"]
    }
    assert {i["id"] for i in shared} <= set(ids)

    by_id = {i["id"]: i for i in truth["invoices"]}
    for record in records:
        expected = by_id[record["id"]]
        pairs = amounts(record)
        assert len(pairs) >= 18
        for path, micros, decimal in pairs:
            assert isinstance(micros, int), path
            assert Decimal(micros) / MICROS == decimal, path
        expected_pairs = {path: micros for path, micros, _ in amounts(expected)}
        # Granular summaries are not asked for by default.
        expected_pairs = {
            p: m
            for p, m in expected_pairs.items()
            if "campaign_summaries" not in p and "regulatory_cost_summaries" not in p
        }
        assert {p: m for p, m, _ in pairs} == expected_pairs
        for name in (
            "type",
            "issue_date",
            "due_date",
            "currency_code",
            "payments_account_id",
            "corrected_invoice",
            "replaced_invoices",
            "service_date_range",
        ):
            assert record[name] == expected[name], name
        assert (
            record["resource_name"] == f"customers/{record['customer_id']}/invoices/{record['id']}"
        )
        assert record["login_customer_id"] == truth["manager_id"]
        assert record["issue_month"] == expected["_issue_month"]
        assert all(b["campaign_summaries"] == [] for b in record["account_budget_summaries"])

    # The normalized `invoices` stream gets one row per invoice, credit memos negative.
    unified = {row["invoice_number"]: row for row in run.records["invoices"]}
    assert len(unified) == len(records)
    for record in records:
        row = unified[record["id"]]
        assert row["platform"] == "google_ads"
        assert row["account_id"] == record["payments_account_id"]
        credit = record["type"] == "CREDIT_MEMO"
        assert row["document_kind"] == ("credit_memo" if credit else "invoice")
        assert row["total_amount"] == (
            -abs(record["total_amount"]) if credit else record["total_amount"]
        )

    kinds = {r["type"] for r in records}
    assert kinds == {"INVOICE", "CREDIT_MEMO"}
    assert {r["currency_code"] for r in records} == {"USD", "EUR", "JPY"}
    assert any(r["corrected_invoice"] for r in records)
    assert any(r["replaced_invoices"] for r in records)
    assert any(r["total_amount_micros"] < 0 for r in records)

    # The manager is sent as login-customer-id, dashes stripped; every serving account is read.
    assert {c["login_customer_id"] for c in calls} == {truth["manager_id"]}
    assert {c["customer_id"] for c in calls} == set(truth["serving_customers"])
    # Setups that cannot have invoices: one warning each, no failure.
    warnings = [line for line in run.stderr.splitlines() if "Skipped customer" in line]
    assert len(warnings) == 2
    assert any("NOT_INVOICED_CUSTOMER" in w for w in warnings)
    assert any("BILLING_SETUP_NOT_ON_MONTHLY_INVOICING" in w for w in warnings)
    assert error_lines(run) == []
    assert_no_secrets(run, emulator)


def test_second_run_rereads_only_lookback_months(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    cfg = config(google, customer_ids=INVOICED, lookback_months=2)
    first = run_tap(cfg, tmp_path / "first")
    assert first.returncode == 0, first.stderr
    assert first.state is not None
    months = 22  # January 2025 to October 2026
    assert emulator.counters["google.list_invoices"] == len(INVOICED) * months

    setup = "customers/1111111111/billingSetups/101"
    late = google.mutate(
        {
            "op": "add",
            "billing_setup": setup,
            "issue_month": "2026-09",
            "subtotal_micros": -5_000_000,
            "type": "CREDIT_MEMO",
        }
    )
    old = google.mutate(
        {
            "op": "add",
            "billing_setup": setup,
            "issue_month": "2026-01",
            "subtotal_micros": 7_000_000,
        }
    )
    emulator.counters.clear()
    google.list_requests.clear()

    second = run_tap(cfg, tmp_path / "second", state=first.state)
    assert second.returncode == 0, second.stderr
    # end_date's month has ended: the bookmark is October, and the two closed months up to
    # it are re-read (with no end_date, the month in progress would be the one more).
    assert emulator.counters["google.list_invoices"] == len(INVOICED) * 2
    assert {(c["issue_year"], c["issue_month"]) for c in google.list_requests} == {
        ("2026", "SEPTEMBER"),
        ("2026", "OCTOBER"),
    }
    ids = {r["id"] for r in second.records[STREAM]}
    assert late["id"] in ids
    assert old["id"] not in ids  # outside the look-back window: not re-read
    assert second.state == first.state


def test_pdfs_stored_with_emulator_sha256(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    documents = tmp_path / "documents"
    cfg = config(
        google,
        customer_ids=["1111111111", "2222222222", "3333333333"],
        download_pdfs=True,
        documents={"destination": str(documents)},
    )
    run = run_tap(cfg, tmp_path / "run")
    assert run.returncode == 0, run.stderr
    truth = google.truth()
    records = run.records[STREAM]
    assert records
    for record in records:
        assert record["pdf_sha256"] == truth["pdf_sha256"][record["id"]]
        stored = Path(record["pdf_uri"])
        assert stored.is_relative_to(documents)
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == record["pdf_sha256"]
        assert record["pdf_size"] == stored.stat().st_size
        assert record["pdf_page_count"] == 1
        assert record["pdf_content_base64"] is None
    for row in run.records["invoices"]:
        assert row["document_sha256"] == truth["pdf_sha256"][row["invoice_number"]]
    # Consolidated invoices are downloaded once, not once per customer.
    assert emulator.counters["google.pdf"] == len(records)
    assert_no_secrets(run, emulator)


def test_a_lookback_rereads_pdfs_already_stored_without_downloading_them(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    documents = tmp_path / "documents"
    cfg = config(
        google,
        customer_ids=["1111111111", "2222222222", "3333333333"],
        download_pdfs=True,
        lookback_months=3,
        documents={"destination": str(documents)},
    )
    first = run_tap(cfg, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    emulator.counters.clear()

    second = run_tap(cfg, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    reread = second.records[STREAM]
    assert reread, "the look-back must re-read some invoices"
    assert emulator.counters["google.pdf"] == 0
    earlier = {r["id"]: r for r in first.records[STREAM]}
    for record in reread:  # the records still carry their document
        for field in ("pdf_sha256", "pdf_uri", "pdf_size", "pdf_page_count"):
            assert record[field] == earlier[record["id"]][field], field
    kept = second.state["bookmarks"][STREAM]["documents"]
    assert set(kept) == {r["id"] for r in reread}  # only what a look-back can re-read

    # A file that is gone (or inline content wanted) is downloaded again.
    Path(reread[0]["pdf_uri"]).unlink()
    third = run_tap(cfg, tmp_path / "3", state=second.state)
    assert third.returncode == 0, third.stderr
    assert emulator.counters["google.pdf"] == 1
    assert Path(reread[0]["pdf_uri"]).exists()
    cfg["documents"]["inline"] = True
    fourth = run_tap(cfg, tmp_path / "4", state=third.state)
    assert emulator.counters["google.pdf"] == 1 + len(fourth.records[STREAM])
    assert all(r["pdf_content_base64"] for r in fourth.records[STREAM])


def test_pdf_over_max_bytes_is_refused(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    cfg = config(
        google, customer_ids=["7777777777"], download_pdfs=True, documents={"max_bytes": 200}
    )
    run = run_tap(cfg, tmp_path)
    assert run.returncode == 1
    assert "larger than documents.max_bytes (200" in run.stderr
    assert all(r.get("pdf_sha256") is None for r in run.records[STREAM])
    assert run.state is not None
    assert run.state["bookmarks"][STREAM]["billing_setups"] == {}


def test_granular_details_without_developer_token(
    google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    cfg = config(google, customer_ids=["2222222222"], include_granular_details=True)
    del cfg["google_ads"]["developer_token"]  # retired by Google in September 2026: optional
    run = run_tap(cfg, tmp_path)
    assert run.returncode == 0, run.stderr
    assert all(c["granular"] for c in google.list_requests)
    record = run.records[STREAM][0]
    campaigns = record["account_budget_summaries"][0]["campaign_summaries"]
    assert campaigns and campaigns[0]["unit_of_measure"] == "CLICKS"
    assert Decimal(campaigns[0]["amount_micros"]) / MICROS == campaigns[0]["amount"]
    fees = record["account_summaries"][0]["regulatory_cost_summaries"]
    assert fees and fees[0]["regulatory_fee_type"] == "FRANCE_REGULATORY_OPERATING_COST"
    assert all("developer-token" not in seen for seen in google.metadata_seen)


def test_permission_denied_for_one_customer(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    emulator.knobs["google_denied_customers"] = ["7777777777"]
    run = run_tap(config(google, customer_ids=INVOICED), tmp_path)
    assert run.returncode == 1
    assert "1 item(s) failed" in run.stderr
    assert (
        "google_ads_invoices [customer 7777777777]: AdsError: "
        "authorization_error.USER_PERMISSION_DENIED" in (run.stderr)
    )
    truth = google.truth()
    assert {r["id"] for r in run.records[STREAM]} == served_ids(truth, INVOICED[:3])
    assert run.state is not None
    synced = run.state["bookmarks"][STREAM]["billing_setups"]
    assert not any(name.startswith("customers/7777777777/") for name in synced)
    assert len(synced) == 3
    assert_no_secrets(run, emulator)


def test_quota_errors_wait_retry_delay(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    emulator.add_fault(
        Fault("google.list_invoices", kind="grpc", status=429, count=3, retry_after=0.25)
    )
    emulator.add_fault(Fault("google.search", kind="grpc", status=500, count=1))
    run = run_tap(config(google, customer_ids=["1111111111"]), tmp_path)
    assert run.returncode == 0, run.stderr
    waits = [line for line in run.stderr.splitlines() if "RESOURCE_TEMPORARILY_EXHAUSTED" in line]
    assert len(waits) == 3
    assert all("in 0.25s" in line for line in waits)
    assert sum("internal_error.INTERNAL_ERROR" in line for line in run.stderr.splitlines()) == 1
    assert emulator.counters["google.list_invoices"] == 22 + 3
    assert {r["id"] for r in run.records[STREAM]} == served_ids(google.truth(), ["1111111111"])


@pytest.mark.parametrize("where", ["token", "grpc"])
def test_authentication_failure_asks_for_reauthorisation(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path, where: str
) -> None:
    if where == "token":
        emulator.knobs["google_invalid_grant"] = True
    else:
        # Rejected after the one refresh too: the new token does not help either.
        emulator.add_fault(Fault("google.list_invoices", kind="grpc", status=401, count=10_000))
    run = run_tap(config(google, customer_ids=["1111111111"]), tmp_path)
    assert run.returncode == 1
    # The source fails as a source: one line, naming the setting to fix, then the summary.
    lines = [line for line in error_lines(run) if "FAILED" in line]
    assert len(lines) == 1, run.stderr
    assert "FAILED google_ads [every item]: AuthorizationExpired" in lines[0]
    assert "google_ads.refresh_token" in lines[0] and "7 days" in lines[0]
    assert "1 item(s) failed" in run.stderr
    assert "Traceback" not in run.stderr
    assert_no_secrets(run, emulator)


BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"login_customer_id": "123-45"}, "google_ads.login_customer_id"),
    ({"login_customer_id": None}, "google_ads.login_customer_id"),
    ({"customer_ids": ["1111111111", "x"]}, "google_ads.customer_ids"),
    ({"lookback_months": -1}, "google_ads.lookback_months"),
    ({"refresh_token": ""}, "google_ads.refresh_token"),
    ({"client_secret": None}, "google_ads.client_secret"),
    ({"root_certificates_file": "missing.pem"}, "google_ads.root_certificates_file"),
    ({"token_uri": "oauth2.googleapis.com/token"}, "google_ads.token_uri"),
]


def bad_config(google: fake.GoogleAdsEmulator, change: dict[str, Any]) -> dict[str, Any]:
    cfg = config(google, **change)
    cfg["google_ads"] = {k: v for k, v in cfg["google_ads"].items() if v is not None}
    return cfg


@pytest.mark.parametrize(("change", "setting"), BAD_SETTINGS)
def test_bad_config_names_the_setting(
    google: fake.GoogleAdsEmulator, change: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        check_config(bad_config(google, change))
    assert raised.value.setting == setting


def test_bad_config_one_line_exit_1(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    change, setting = BAD_SETTINGS[0]
    run = run_tap(bad_config(google, change), tmp_path)
    assert run.returncode == 1
    lines = error_lines(run)
    assert len(lines) == 1, run.stderr
    assert setting in lines[0]
    assert "Traceback" not in run.stderr
    assert sum(emulator.counters.values()) == 0  # refused before any network call


def test_real_client_search_stream_and_google_errors(
    google: fake.GoogleAdsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: SearchStream answers, and errors reach the client as GoogleAdsException."""
    # The client sets this process-wide variable; monkeypatch restores it after the test.
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(google.certificate_file))
    api = GoogleAdsApi(GoogleAdsSettings.from_config(google.tap_config()["google_ads"]))
    truth = google.truth()
    service = api.client.get_service("GoogleAdsService")
    query = "SELECT customer_client.id FROM customer_client WHERE customer_client.manager = FALSE"
    batches = list(service.search_stream(customer_id=truth["manager_id"], query=query))
    assert len(batches) > 1
    ids = {str(row.customer_client.id) for batch in batches for row in batch.results}
    assert set(truth["serving_customers"]) < ids  # plus the cancelled account: no status filter

    seen = google.metadata_seen[-1]
    assert seen["login-customer-id"] == truth["manager_id"]
    assert seen["developer-token"] == fake.DEVELOPER_TOKEN
    assert seen["authorization"].startswith("Bearer ")

    setup = next(s for s, v in truth["billing_setups"].items() if not v["monthly_invoicing"])
    with pytest.raises(GoogleAdsException) as raised:
        api.client.get_service("InvoiceService").list_invoices(
            customer_id=setup.split("/")[1],
            billing_setup=setup,
            issue_year="2026",
            issue_month=api.client.enums.MonthOfYearEnum.OCTOBER,
        )
    error = raised.value.failure.errors[0]
    assert error.error_code.invoice_error.name == "BILLING_SETUP_NOT_ON_MONTHLY_INVOICING"
    assert raised.value.request_id

    # INTERNAL and RESOURCE_EXHAUSTED pass through the client as gRPC errors; AdsError reads
    # the same GoogleAdsFailure, retry_delay included.
    google.emulator.add_fault(Fault("google.search", kind="grpc", status=429, retry_after=1.5))
    with pytest.raises(Exception) as quota:
        service.search(customer_id=truth["manager_id"], query=query)
    parsed = AdsError.from_exception(quota.value)
    assert parsed is not None
    assert parsed.retryable_quota and parsed.retry_delay == 1.5
    assert parsed.has("RESOURCE_TEMPORARILY_EXHAUSTED")


def test_schema_and_records_cover_every_invoice_field() -> None:
    """Schema and records are read off the proto: every field, micros beside exact decimals."""
    schema = invoice_schema()["properties"]
    message = Invoice.pb()(
        id="123",
        type_=InvoiceTypeEnum.InvoiceType.CREDIT_MEMO,
        total_amount_micros=-1_000_001,
    )
    message.account_budget_summaries.add(subtotal_amount_micros=10)
    record = message_to_dict(message)
    for proto_field in Invoice.pb().DESCRIPTOR.fields:
        name = proto_field.name.rstrip("_")
        assert name in schema and name in record
        if name.endswith("_micros"):
            assert schema[name[: -len("_micros")]]["type"] == ["number", "null"]
    assert record["type"] == "CREDIT_MEMO"
    assert record["total_amount"] == Decimal("-1.000001")
    assert record["subtotal_amount_micros"] is None and record["subtotal_amount"] is None
    assert record["adjustments_total_amount_micros"] == 0  # no presence in the proto: always set
    budget = record["account_budget_summaries"][0]
    assert budget["subtotal_amount"] == Decimal("0.00001")
    assert set(budget) == set(schema["account_budget_summaries"]["items"]["properties"])


def test_the_shipped_schema_is_the_protos() -> None:
    """Discovery reads a shipped copy of the schema; it must be the proto's, field for field.
    After a google-ads upgrade: python scripts/update_google_schema.py."""
    assert invoice_schema() == schema_from_proto()


def test_discovery_and_other_sources_do_not_import_google_ads(
    google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(google)))
    probe = (
        "import sys\n"
        "from tap_ad_invoices.tap import TapAdInvoices\n"
        f"tap = TapAdInvoices(config={str(path)!r})\n"
        "assert [s.name for s in tap.streams.values()]\n"
        "print(sorted(m for m in sys.modules if m.startswith('google.ads')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize(
    "given",
    [[1111111111, 2222222222], "1111111111,2222222222", ["111-111-1111", 2222222222]],
    ids=["yaml-integers", "env-comma-separated", "mixed"],
)
def test_customer_ids_as_meltano_passes_them(
    google: fake.GoogleAdsEmulator, tmp_path: Path, given: Any
) -> None:
    run = run_tap(config(google, customer_ids=given), tmp_path)
    assert run.returncode == 0, run.stderr
    wanted = ["1111111111", "2222222222"]
    assert {r["id"] for r in run.records[STREAM]} == served_ids(google.truth(), wanted)
