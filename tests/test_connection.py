"""`--test` checks every configured source with read-only calls: nothing created, nothing
downloaded, one line per source."""

from __future__ import annotations

import re

from tap_ad_invoices.emulator import Emulator
from tests.tap_runner import run_tap

SOURCES = ("amazon_ads", "google_ads", "amazon_business", "meta")


def configured(config: dict) -> list[str]:
    return [source for source in SOURCES if config.get(source)]


# Calls that cost quota or create something: a connection test makes none of them.
CREATING = ("ads.statements.create", "ab.reports.create", "google.pdf")


def test_connection_test_is_read_only_and_says_one_line_per_source(
    emulator: Emulator, emulator_config: dict, tmp_path
):
    emulator_config["google_ads"].pop("customer_ids")  # discovery under the manager
    run = run_tap(emulator_config, tmp_path, args=["--test"])
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "Connection test:" in line]
    assert len(configured(emulator_config)) >= 3
    for source in configured(emulator_config):
        assert [line for line in lines if f"Connection test: {source} ok" in line], source
    assert not run.records
    # Discovery counts the accounts that stopped serving: their final invoices are read.
    lapsed = len(emulator.sources["google_ads"].truth()["lapsed_customers"])
    [google] = [line for line in lines if "google_ads ok" in line]
    stopped = re.search(r" and (\d+) that stopped serving", google)
    assert lapsed and stopped and int(stopped.group(1)) >= lapsed  # some have no invoices
    created = {
        name: n
        for name, n in emulator.counters.items()
        if name in CREATING or "create" in name or "download" in name or "pdf" in name
    }
    assert created == {}, created


def test_a_refused_source_fails_the_test_naming_it(
    emulator: Emulator, emulator_config: dict, tmp_path
):
    emulator_config["amazon_ads"]["refresh_token"] = "Atzr|not-the-right-one"
    run = run_tap(emulator_config, tmp_path, args=["--test"])
    assert run.returncode == 1
    [failed] = [line for line in run.stderr.splitlines() if "FAILED" in line]
    assert "Connection test: amazon_ads FAILED" in failed
    assert "amazon_ads.refresh_token" in failed
    assert "Atzr|not-the-right-one" not in run.stderr
    others = [line for line in run.stderr.splitlines() if " ok (" in line]
    assert len(others) == len(configured(emulator_config)) - 1  # the others are still checked
