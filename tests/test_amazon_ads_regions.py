"""Several Amazon Ads regional hosts in one config, `amazon_ads.regions` (issue 14).

The emulator serves an NA host and an EU host (`/ads-eu`), each with its own
Login with Amazon endpoint, refresh token and accounts; a host refuses a token
minted for the other region.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.amazon_ads import (
    ACCOUNTS,
    ACCOUNTS_MEDIA_TYPE,
    CLIENT_ID,
    CLIENT_SECRET,
    EU_ACCOUNTS,
    REFRESH_TOKEN,
    REFRESH_TOKEN_EU,
)
from tap_ad_invoices.windows import plan_windows
from tests.reconcile import assert_reconciles
from tests.tap_runner import TapRun, run_tap

STREAM = "amazon_ads_billing_statements"
START, END = dt.date(2026, 1, 1), dt.date(2026, 9, 28)
LOOKBACK = 60


@pytest.fixture
def config(emulator: Emulator) -> dict:
    section = emulator.sources["amazon_ads"].tap_config_regions()["amazon_ads"]
    section.update(poll_interval_seconds=0, lookback_days=LOOKBACK)
    return {"start_date": START.isoformat(), "end_date": END.isoformat(), "amazon_ads": section}


def truth(emulator: Emulator, region: str, since: dt.date = START) -> set[tuple[str, str]]:
    return {
        (inv.account_id, inv.invoice_number)
        for inv in emulator.sources["amazon_ads"].region_invoices(region)
        if since <= inv.invoice_date <= END
    }


def records(run: TapRun, region: str) -> set[tuple[str, str]]:
    return {
        (r["account_id"], r["invoice_key"]) for r in run.records[STREAM] if r["region"] == region
    }


def partition(run: TapRun, region: str) -> dict:
    assert run.state is not None
    partitions = run.state["bookmarks"][STREAM]["partitions"]
    return next(p for p in partitions if p["context"] == {"region": region})


def creates_by_account(emulator: Emulator) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, _, headers in emulator.requests_seen:
        if name == "ads.statements.create":
            account = headers["amazon-ads-accountid"]
            counts[account] = counts.get(account, 0) + 1
    return counts


def test_two_regions_sync_each_with_its_own_token_data_and_state(emulator, config, tmp_path):
    first = run_tap(config, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    assert records(first, "NA") == truth(emulator, "NA")
    assert records(first, "EU") == truth(emulator, "EU")
    assert len(records(first, "NA")) + len(records(first, "EU")) == len(first.records[STREAM])
    assert emulator.counters["lwa.token"] == 1 and emulator.counters["ads.lwa.eu"] == 1
    eu_ids = {a[0] for a in EU_ACCOUNTS}
    assert set(partition(first, "EU")["accounts"]) == eu_ids
    assert set(partition(first, "NA")["accounts"]) == {a[0] for a in ACCOUNTS}
    assert "accounts" not in first.state["bookmarks"][STREAM]  # all of it in the partitions
    assert_reconciles(
        first,
        "amazon_ads",
        STREAM,
        source_total=lambda r: r["total_amount"],
        source_keys=("account_id", "invoice_key"),
    )

    # Run 2 from run 1's state, nothing changed: each region re-reads only its look-back.
    emulator.requests_seen.clear()
    second = run_tap(config, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    lookback = len(plan_windows(END - dt.timedelta(days=LOOKBACK), END, 90))
    assert creates_by_account(emulator) == {a[0]: lookback for a in [*ACCOUNTS, *EU_ACCOUNTS]}
    since = END - dt.timedelta(days=LOOKBACK)
    assert records(second, "EU") == truth(emulator, "EU", since)


def test_a_region_whose_token_is_refused_fails_alone(emulator, config, tmp_path):
    config["amazon_ads"]["regions"][1]["refresh_token"] = "Atzr|revoked-eu-token"
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    failed = [line for line in run.stderr.splitlines() if "FAILED " in line]
    assert len(failed) == 1, failed
    assert "amazon_ads [region EU: every item]" in failed[0]
    assert "amazon_ads.regions[1].refresh_token" in failed[0]
    assert emulator.counters["ads.lwa.eu"] == 1  # asked once, never again in this run
    assert records(run, "NA") == truth(emulator, "NA")
    assert "EU" not in {r["region"] for r in run.records[STREAM]}
    assert all(
        a["synced_through"] == END.isoformat() for a in partition(run, "NA")["accounts"].values()
    )
    assert REFRESH_TOKEN_EU not in run.stderr and CLIENT_SECRET not in run.stderr


def test_a_host_refuses_the_token_of_another_region(emulator, config, tmp_path):
    base = emulator.base_url
    token = requests.post(
        f"{base}/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": REFRESH_TOKEN,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=10,
    ).json()["access_token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Amazon-Advertising-API-ClientId": CLIENT_ID,
        "Content-Type": ACCOUNTS_MEDIA_TYPE,
        "Accept": ACCOUNTS_MEDIA_TYPE,
    }
    on_na = requests.post(f"{base}/adsAccounts/list", json={}, headers=headers, timeout=10)
    on_eu = requests.post(f"{base}/ads-eu/adsAccounts/list", json={}, headers=headers, timeout=10)
    assert on_na.status_code == 200
    assert on_eu.status_code == 401
    assert on_eu.json()["errors"][0]["errorCode"] == "UNAUTHORIZED"

    # The tap with the EU host but the NA login: the host's refusal, in one line, with why.
    eu = config["amazon_ads"]["regions"][1]
    eu.update(refresh_token=REFRESH_TOKEN, token_url=f"{base}/auth/o2/token")
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    failed = [line for line in run.stderr.splitlines() if "FAILED " in line]
    assert len(failed) == 1, failed
    assert "region EU: account discovery" in failed[0]
    assert "HTTP 401 UNAUTHORIZED Not authorized: token of another region" in failed[0]
    assert records(run, "NA") == truth(emulator, "NA")


def test_moving_to_regions_keeps_the_single_region_bookmarks(emulator, config, tmp_path):
    from tap_ad_invoices.emulator.cli import tap_config

    single = {**config, "amazon_ads": {**tap_config(emulator)["amazon_ads"]}}
    single["amazon_ads"].update(poll_interval_seconds=0, lookback_days=LOOKBACK)
    first = run_tap(single, tmp_path / "1")
    assert first.returncode == 0, first.stderr
    assert {r["region"] for r in first.records[STREAM]} == {"NA"}

    emulator.requests_seen.clear()
    second = run_tap(config, tmp_path / "2", state=first.state)
    assert second.returncode == 0, second.stderr
    lookback = len(plan_windows(END - dt.timedelta(days=LOOKBACK), END, 90))
    full = len(plan_windows(START, END, 90))
    expected = {a[0]: lookback for a in ACCOUNTS} | {a[0]: full for a in EU_ACCOUNTS}
    assert creates_by_account(emulator) == expected
    assert records(second, "EU") == truth(emulator, "EU")


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        (lambda s: s["regions"].append({"region": "NA"}), "amazon_ads.regions[2].region"),
        (lambda s: s.update(account_ids=[ACCOUNTS[0][0]]), "amazon_ads.account_ids"),
        # The config schema's own check (allowed values) names it with dots.
        (lambda s: s["regions"][0].update(region="MARS"), "amazon_ads.regions.0.region"),
        (lambda s: s["regions"][0].pop("refresh_token"), "amazon_ads.refresh_token"),
    ],
)
def test_a_bad_regions_config_is_one_line_naming_the_setting(
    emulator, config, tmp_path, change, setting
):
    change(config["amazon_ads"])
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert setting in errors[0]
    assert sum(emulator.counters.values()) == 0  # validated before any network call


@pytest.mark.parametrize("storage", ["presigned", "path"])
def test_invoice_summaries_and_pdfs_of_both_regions(emulator, config, tmp_path, storage):
    from tests.test_amazon_ads_invoices import selecting
    from tests.test_invoices import catalog_selecting

    emulator.knobs["ads_document_storage"] = storage
    config["documents"] = {"destination": str(tmp_path / "pdfs")}
    catalog = selecting(
        catalog_selecting(config, tmp_path / "discover", set()), "amazon_ads_invoices", "invoices"
    )
    run = run_tap(config, tmp_path / "run", catalog=catalog)
    assert run.returncode == 0, run.stderr
    summaries = run.records["amazon_ads_invoices"]
    for region in ("NA", "EU"):
        got = {(r["account_id"], r["invoice_id"]) for r in summaries if r["region"] == region}
        assert got == truth(emulator, region)
    eu = [r for r in summaries if r["region"] == "EU"]
    assert eu and all(r["pdf_sha256"] for r in eu)
    assert_reconciles(
        run,
        "amazon_ads",
        "amazon_ads_invoices",
        source_total=lambda r: r["amount_due"],
        source_keys=("account_id", "invoice_id"),
    )


def test_connection_test_checks_every_region(emulator, config, tmp_path):
    run = run_tap(config, tmp_path, args=["--test"])
    assert run.returncode == 0, run.stderr
    [line] = [x for x in run.stderr.splitlines() if "Connection test: amazon_ads ok" in x]
    assert "region NA: " in line and "region EU: " in line

    config["amazon_ads"]["regions"][1]["refresh_token"] = "Atzr|revoked-eu-token"
    refused = run_tap(config, tmp_path / "refused", args=["--test"])
    assert refused.returncode == 1
    [failed] = [x for x in refused.stderr.splitlines() if "Connection test: amazon_ads FAILED" in x]
    assert "amazon_ads.regions[1].refresh_token" in failed


def test_an_account_listed_by_two_hosts_is_read_once(emulator, config, tmp_path):
    """A global account serving in NA and EU is listed by both hosts: the first region of
    the config reads it, the other says so, and no statement is requested twice."""
    shared = ACCOUNTS[0][0]
    emulator.knobs["ads_eu_also_lists"] = [shared]
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    windows = len(plan_windows(START, END, 90))
    assert creates_by_account(emulator)[shared] == windows
    assert {r["region"] for r in run.records[STREAM] if r["account_id"] == shared} == {"NA"}
    assert shared not in partition(run, "EU")["accounts"]
    assert f"account {shared} is also listed by region NA" in run.stderr
