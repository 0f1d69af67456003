"""Google Ads quota economy and accounts that stopped serving (issue 12), end to end: the real
tap and the real google-ads client against the emulator. Expected values come from the
emulator's truth() and its call counters, never from the tap's own report."""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from google.ads.googleads.errors import GoogleAdsException

from tap_ad_invoices.emulator import Emulator, Fault
from tap_ad_invoices.emulator import google_ads as fake
from tap_ad_invoices.google_ads.client import GoogleAdsApi
from tap_ad_invoices.google_ads.config import GoogleAdsSettings
from tests.reconcile import assert_reconciles
from tests.tap_runner import TapRun, run_tap
from tests.test_google_ads import STREAM, config, error_lines, served_ids

CARD_PAID = "customers/4444444444/billingSetups/401"  # BILLING_SETUP_NOT_ON_MONTHLY_INVOICING
NOT_INVOICED = "customers/8888888888/billingSetups/801"  # NOT_INVOICED_CUSTOMER
CALLS_LINE = re.compile(
    r"API calls of google_ads: (?P<calls>[^;]*); (?P<retried>\d+) retried, "
    r"(?P<throttled>\d+) throttled"
)


@pytest.fixture
def google(emulator: Emulator) -> fake.GoogleAdsEmulator:
    return emulator.sources["google_ads"]


def this_month() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y-%m}"


def setups(truth: dict[str, Any]) -> dict[str, list[str]]:
    """Approved billing setups by kind: active, card_paid (either skip code), lapsed."""
    kinds: dict[str, list[str]] = {"active": [], "card_paid": [], "lapsed": []}
    for name, setup in truth["billing_setups"].items():
        if setup["status"] != "APPROVED":
            continue
        if name.split("/")[1] in truth["lapsed_customers"]:
            kinds["lapsed"].append(name)
        elif setup["monthly_invoicing"] and setup["invoiced"]:
            kinds["active"].append(name)
        else:
            kinds["card_paid"].append(name)
    return kinds


def calls_line(run: TapRun) -> dict[str, Any]:
    """The tap's end-of-run count line for google_ads, parsed."""
    found = [m for m in map(CALLS_LINE.search, run.stderr.splitlines()) if m]
    assert len(found) == 1, run.stderr
    calls = {}
    for part in found[0]["calls"].split(", "):
        name, _, number = part.rpartition(" ")
        calls[name] = int(number)
    return {
        "calls": calls,
        "retried": int(found[0]["retried"]),
        "throttled": int(found[0]["throttled"]),
    }


def daily(google: fake.GoogleAdsEmulator, **section: Any) -> dict[str, Any]:
    """A config as a daily schedule runs it: no end_date, so the month in progress is read."""
    cfg = config(google, **section)
    del cfg["end_date"]
    return cfg


def test_lapsed_customers_final_invoices_reach_both_streams_quietly(
    google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    run = run_tap(config(google), tmp_path)
    truth = google.truth()
    assert run.returncode == 0, run.stderr
    assert error_lines(run) == []
    lapsed = truth["lapsed_customers"]
    assert {status["status"] for status in lapsed.values()} == {"CANCELED", "SUSPENDED", "CLOSED"}

    # Their invoices, up to the final one, are in google_ads_invoices and in invoices.
    final_ids = {
        invoice["id"]
        for invoice in truth["invoices"]
        if any(s.split("/")[1] in lapsed for s in invoice["_setups"])
    }
    assert final_ids
    ids = {r["id"] for r in run.records[STREAM]}
    assert final_ids <= ids
    assert ids == served_ids(truth)
    unified = {
        r["invoice_number"] for r in run.records["invoices"] if r["platform"] == "google_ads"
    }
    assert final_ids <= unified
    for customer, status in lapsed.items():
        months = {r["issue_month"] for r in run.records[STREAM] if r["customer_id"] == customer}
        assert max(months) == status["final_issue_month"], customer
    assert_reconciles(
        run,
        "google_ads",
        STREAM,
        source_total=lambda r: (
            -abs(r["total_amount"]) if r["type"] == "CREDIT_MEMO" else r["total_amount"]
        ),
        source_currency="currency_code",
        source_keys=("id",),
    )

    # The months after the final invoice were asked, answered NON_SERVING_CUSTOMER, and
    # made one INFO line per customer: no FAILED line, no warning.
    asked = Counter(c["customer_id"] for c in google.list_requests)
    for customer in lapsed:
        assert asked[customer] == 22  # every month of the range
        lines = [line for line in run.stderr.splitlines() if f"Customer {customer} stopped" in line]
        assert len(lines) == 1, run.stderr
        assert "| INFO" in lines[0] and "NON_SERVING_CUSTOMER" in lines[0]
    assert "FAILED" not in run.stderr
    assert run.state is not None
    remembered = run.state["bookmarks"][STREAM]["billing_setups"]
    for name in setups(truth)["lapsed"]:
        final = lapsed[name.split("/")[1]]["final_issue_month"]
        after = dt.date.fromisoformat(f"{final}-01") + dt.timedelta(days=31)
        assert remembered[name]["non_serving_since"] == f"{after:%Y-%m}"
        assert remembered[name]["checked"] == this_month()


def test_emulator_discovery_by_status_and_non_serving_months(
    google: fake.GoogleAdsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator refuses the old behaviour: an ENABLED-only query does not see lapsed
    accounts, and their months after the final invoice answer NON_SERVING_CUSTOMER."""
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(google.certificate_file))
    api = GoogleAdsApi(GoogleAdsSettings.from_config(google.tap_config()["google_ads"]))
    service = api.client.get_service("GoogleAdsService")
    truth = google.truth()
    lapsed = set(truth["lapsed_customers"])

    def found(where: str) -> set[str]:
        query = f"SELECT customer_client.id FROM customer_client WHERE {where}"
        rows = service.search(customer_id=truth["manager_id"], query=query)
        return {str(row.customer_client.id) for row in rows}

    assert not found("customer_client.status = 'ENABLED'") & lapsed
    assert lapsed <= found(
        "customer_client.status IN ('ENABLED', 'CANCELED', 'SUSPENDED', 'CLOSED')"
    )
    assert {c.customer_id for c in api.customers() if not c.serving} >= lapsed

    customer = "1212121212"
    setup = f"customers/{customer}/billingSetups/1201"
    final = dt.date.fromisoformat(f"{truth['lapsed_customers'][customer]['final_issue_month']}-01")
    invoices = api.client.get_service("InvoiceService")
    months = api.client.enums.MonthOfYearEnum
    answer = invoices.list_invoices(
        customer_id=customer,
        billing_setup=setup,
        issue_year=str(final.year),
        issue_month=getattr(months, f"{final:%B}".upper()),
    )
    assert len(answer.invoices) == 1  # the final invoice
    later = final + dt.timedelta(days=31)
    with pytest.raises(GoogleAdsException) as raised:
        invoices.list_invoices(
            customer_id=customer,
            billing_setup=setup,
            issue_year=str(later.year),
            issue_month=getattr(months, f"{later:%B}".upper()),
        )
    assert raised.value.failure.errors[0].error_code.invoice_error.name == "NON_SERVING_CUSTOMER"


def test_run2_spends_lookback_plus_one_per_active_setup_and_nothing_on_known_skips(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    lookback = 2
    cfg = daily(google, lookback_months=lookback)
    first = run_tap(cfg, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    kinds = setups(google.truth())
    asked_first = Counter(c["billing_setup"] for c in google.list_requests)
    # Run 1 already asks a setup without invoices once, not once per month.
    assert all(asked_first[name] == 1 for name in kinds["card_paid"])
    remembered = first.state["bookmarks"][STREAM]["billing_setups"]  # type: ignore[index]
    assert remembered[CARD_PAID] == {
        "not_invoiced": "BILLING_SETUP_NOT_ON_MONTHLY_INVOICING",
        "checked": this_month(),
    }
    assert remembered[NOT_INVOICED]["not_invoiced"] == "NOT_INVOICED_CUSTOMER"

    emulator.counters.clear()
    google.list_requests.clear()
    second = run_tap(cfg, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    asked = Counter(c["billing_setup"] for c in google.list_requests)
    assert {name: asked[name] for name in kinds["active"]} == {
        name: lookback + 1 for name in kinds["active"]
    }
    assert not any(asked[name] for name in kinds["card_paid"] + kinds["lapsed"])
    assert emulator.counters["google.list_invoices"] == (lookback + 1) * len(kinds["active"])
    # The tap's own count is the emulator's.
    line = calls_line(second)
    assert line["calls"] == {
        "ListInvoices": emulator.counters["google.list_invoices"],
        "Search": emulator.counters["google.search"],
        "token": emulator.counters["google.token"],
    }
    assert second.state == first.state
    assert error_lines(second) == []
    assert not [line for line in second.stderr.splitlines() if "| WARNING" in line]

    # A new issue month: one check of each known skip, the newest month, and no more.
    older = copy.deepcopy(second.state)
    assert older is not None
    for entry in older["bookmarks"][STREAM]["billing_setups"].values():
        if "checked" in entry:
            entry["checked"] = "2026-01"
    google.list_requests.clear()
    third = run_tap(cfg, tmp_path / "3", state=older)
    assert third.returncode == 0, third.stderr
    asked = Counter(c["billing_setup"] for c in google.list_requests)
    newest = {
        (c["issue_year"], c["issue_month"])
        for c in google.list_requests
        if c["billing_setup"] in kinds["card_paid"] + kinds["lapsed"]
    }
    now = dt.datetime.now(dt.timezone.utc)
    assert newest == {(str(now.year), f"{now:%B}".upper())}
    assert all(asked[name] == 1 for name in kinds["card_paid"] + kinds["lapsed"])
    assert third.state == first.state  # checked again this month


def test_a_month_with_no_invoice_is_synced(google: fake.GoogleAdsEmulator, tmp_path: Path) -> None:
    """A setup whose invoices stopped: the bookmark is the last closed month asked, not
    the last month that had an invoice."""
    customer = "1111111111"
    quiet = "2026-02"
    assert (customer, quiet) in fake.QUIET_MONTHS
    cfg = config(google, customer_ids=[customer], lookback_months=1)
    cfg["end_date"] = "2026-02-28"
    first = run_tap(cfg, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    assert not [r for r in first.records[STREAM] if r["issue_month"] == quiet]
    synced = first.state["bookmarks"][STREAM]["billing_setups"]  # type: ignore[index]
    assert synced == {f"customers/{customer}/billingSetups/101": {"synced_through": quiet}}

    google.list_requests.clear()
    second = run_tap(cfg, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert [(c["issue_year"], c["issue_month"]) for c in google.list_requests] == [
        ("2026", "FEBRUARY")
    ]


def test_a_bookmark_of_an_earlier_version_keeps_its_lookback(
    google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    """`last_issue_month` was the last month asked, maybe still in progress: the first run
    after the upgrade re-reads what the old version would have, then writes the new form."""
    setup = "customers/7777777777/billingSetups/701"
    state = {"bookmarks": {STREAM: {"billing_setups": {setup: {"last_issue_month": "2026-10"}}}}}
    cfg = config(google, customer_ids=["7777777777"], lookback_months=2)
    run = run_tap(cfg, tmp_path, state=state)
    assert run.returncode == 0, run.stderr
    assert {c["issue_month"] for c in google.list_requests} == {"AUGUST", "SEPTEMBER", "OCTOBER"}
    synced = run.state["bookmarks"][STREAM]["billing_setups"]  # type: ignore[index]
    assert synced == {setup: {"synced_through": "2026-10"}}


def test_retries_and_throttling_are_counted_per_attempt(
    emulator: Emulator, google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    emulator.add_fault(
        Fault("google.list_invoices", kind="grpc", status=429, count=2, retry_after=0.01)
    )
    emulator.add_fault(Fault("google.search", kind="grpc", status=500, count=1))
    run = run_tap(config(google, customer_ids=["7777777777"]), tmp_path)
    assert run.returncode == 0, run.stderr
    line = calls_line(run)
    assert line["calls"]["ListInvoices"] == emulator.counters["google.list_invoices"] == 22 + 2
    assert line["calls"]["Search"] == emulator.counters["google.search"] == 2
    assert line["calls"]["token"] == emulator.counters["google.token"]
    assert line["retried"] == 3
    assert line["throttled"] == 2


def test_a_card_paid_setup_that_moves_to_monthly_invoicing_is_read_at_the_next_check(
    google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    customer = CARD_PAID.split("/")[1]
    cfg = config(google, customer_ids=[customer])
    first = run_tap(cfg, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    assert first.records.get(STREAM, []) == []
    billed = google.mutate({"op": "monthly_invoicing", "billing_setup": CARD_PAID})["invoices"]
    assert billed

    # Same issue month: remembered, not asked, whatever changed meanwhile.
    google.list_requests.clear()
    second = run_tap(cfg, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    assert google.list_requests == []
    skipped = [
        line for line in second.stderr.splitlines() if f"Skipped customer {customer}" in line
    ]
    assert len(skipped) == 1 and "| INFO" in skipped[0], second.stderr

    # The next issue month's check finds invoices: the whole history is read.
    later = copy.deepcopy(first.state)
    assert later is not None
    later["bookmarks"][STREAM]["billing_setups"][CARD_PAID]["checked"] = "2026-01"
    third = run_tap(cfg, tmp_path / "3", state=later)
    assert third.returncode == 0, third.stderr
    assert {r["id"] for r in third.records[STREAM]} == set(billed)
    assert third.state["bookmarks"][STREAM]["billing_setups"][CARD_PAID] == {  # type: ignore[index]
        "synced_through": "2026-10"
    }


def test_an_account_stopping_in_the_month_in_progress_is_not_remembered_as_not_serving(
    google: fake.GoogleAdsEmulator, tmp_path: Path
) -> None:
    """Only the open month answers NON_SERVING_CUSTOMER: its final invoice may still come,
    so the setup is not marked not serving (which would stop asking that month)."""
    active = setups(google.truth())["active"][0]
    customer = active.split("/")[1]
    google.emulator.knobs["google_non_serving_from"] = {customer: this_month()}
    run = run_tap(daily(google), tmp_path)
    assert run.returncode == 0, run.stderr
    entry = run.state["bookmarks"][STREAM]["billing_setups"][active]  # type: ignore[index]
    assert "non_serving_since" not in entry
    assert entry["synced_through"] < this_month()  # the open month is asked again
