"""The catalog before credentials: every stream of every source, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tap_ad_invoices.emulator import Emulator
from tests.tap_runner import run_tap


def discover(config: dict, workdir: Path) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "tap_ad_invoices", "--config", str(path), "--discover"]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def streams_of(catalog_json: str) -> dict[str, dict]:
    return {entry["tap_stream_id"]: entry for entry in json.loads(catalog_json)["streams"]}


def test_an_empty_config_lists_every_stream_of_every_source(
    emulator_config: dict, tmp_path: Path
) -> None:
    empty = discover({}, tmp_path / "empty")
    assert empty.returncode == 0, empty.stderr
    full = discover(emulator_config, tmp_path / "full")
    assert full.returncode == 0, full.stderr
    listed, configured = streams_of(empty.stdout), streams_of(full.stdout)
    assert set(listed) == set(configured)
    assert len(listed) >= 8  # four sources and `invoices`
    for name, entry in configured.items():
        assert listed[name]["schema"] == entry["schema"], name
        assert listed[name]["key_properties"] == entry["key_properties"], name
        assert listed[name].get("replication_key") == entry.get("replication_key"), name
    assert "Traceback" not in empty.stderr


def test_a_setting_that_breaks_discovery_is_one_line(emulator_config: dict, tmp_path: Path) -> None:
    emulator_config["google_ads"]["root_certificates_file"] = str(tmp_path / "missing.pem")
    done = discover(emulator_config, tmp_path)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "google_ads.root_certificates_file" in errors[0]
    assert "Traceback" not in done.stderr


def test_streams_of_unconfigured_sources_emit_nothing(
    emulator: Emulator, emulator_config: dict, tmp_path: Path
) -> None:
    only_ads = {key: emulator_config[key] for key in ("start_date", "amazon_ads")}
    only_ads["end_date"] = "2025-03-31"
    run = run_tap(only_ads, tmp_path)
    assert run.returncode == 0, run.stderr
    written = {m["stream"] for m in run.messages if m["type"] in ("SCHEMA", "RECORD")}
    assert written <= {"amazon_ads_billing_statements", "amazon_ads_invoices", "invoices"}
    assert "no `google_ads` section in the config" in run.stderr
    assert not [name for name in emulator.counters if name.startswith(("google", "ab.", "meta"))]


def test_flattening_keeps_free_form_columns_as_one_json_value(
    emulator_config: dict, tmp_path: Path
) -> None:
    config = {
        "start_date": "2025-01-01",
        "end_date": "2025-03-31",
        "amazon_ads": {**emulator_config["amazon_ads"], "poll_interval_seconds": 0},
        "flattening_enabled": True,
        "flattening_max_depth": 1,
    }
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    schema = next(
        m["schema"]
        for m in run.messages
        if m["type"] == "SCHEMA" and m["stream"] == "amazon_ads_billing_statements"
    )
    assert schema["properties"]["columns"]["type"] in ("string", ["string"])
    for record in run.records["amazon_ads_billing_statements"]:
        assert not [key for key in record if key.startswith("columns__")]
        columns = json.loads(record["columns"])
        assert columns["Invoice Number"] == record["invoice_number"]
    # Unflattened, it stays an object with string values (JSONB in PostgreSQL).
    plain = discover(emulator_config, tmp_path / "plain")
    prop = streams_of(plain.stdout)["amazon_ads_billing_statements"]["schema"]["properties"]
    assert "object" in prop["columns"]["type"] and prop["columns"]["additionalProperties"]
