"""Config mistakes are one line and exit code 1, before any API call; secrets never echoed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import fsspec
import pytest

from tap_ad_invoices.documents import (
    DocumentSettings,
    DocumentStore,
    preflight_destination,
    write_atomically,
)
from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import amazon_business as ab_emulator
from tap_ad_invoices.tap import TapAdInvoices, unknown_settings
from tests.tap_runner import TapRun, run_tap


def ab_config(emulator: Emulator, **top: Any) -> dict[str, Any]:
    return {"start_date": "2025-01-01", **emulator.sources["amazon_business"].tap_config(), **top}


def error_lines(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "| ERROR" in line]


def api_calls(emulator: Emulator) -> int:
    return sum(emulator.counters.values())


def assert_one_line(run: TapRun, *expected: str) -> None:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    lines = error_lines(run)
    assert len(lines) == 1, run.stderr
    for text in expected:
        assert text in lines[0], lines[0]


# -- documents.destination: checked before any network call ---------------------------------
def test_unwritable_local_destination_is_reported_before_any_api_call(
    emulator: Emulator, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    config = ab_config(emulator, documents={"destination": str(blocker / "pdfs")})
    run = run_tap(config, tmp_path / "run")
    assert_one_line(run, "Configuration error: documents.destination", "cannot write")
    assert api_calls(emulator) == 0  # before: 319 calls and 15 createReports


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ("nosuchproto://bucket/invoices", "unknown storage protocol nosuchproto://"),
        ("s3://bucket/invoices", "pip install 'tap-ad-invoices[s3]'"),
        ("gs://bucket/invoices", "pip install 'tap-ad-invoices[gcs]'"),
        ("abfs://container/invoices", "pip install 'tap-ad-invoices[azure]'"),
    ],
)
def test_destination_protocol_must_be_usable_before_any_api_call(
    emulator: Emulator, tmp_path: Path, destination: str, expected: str
) -> None:
    protocol = destination.split("://")[0]
    if protocol in ("s3", "gs", "abfs"):
        try:
            fsspec.get_filesystem_class(protocol)
            pytest.skip(f"the {protocol} package is installed here")
        except ImportError:
            pass
    run = run_tap(ab_config(emulator, documents={"destination": destination}), tmp_path)
    assert_one_line(run, "documents.destination", expected)
    assert api_calls(emulator) == 0


def test_writable_destination_keeps_no_probe(tmp_path: Path) -> None:
    destination = tmp_path / "new" / "pdfs"
    preflight_destination(DocumentSettings(destination=str(destination)))
    assert destination.is_dir() and list(destination.iterdir()) == []


def test_documents_are_written_through_a_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before the rename: nothing under the final name. Finished: no temporary left."""
    target = tmp_path / "docs" / "invoice.pdf"
    seen: list[tuple[str, bool]] = []

    def killed(source: str, destination: str) -> None:
        seen.append((Path(source).name, Path(source).read_bytes() == b"%PDF-1.4 x"))
        raise KeyboardInterrupt

    monkeypatch.setattr("tap_ad_invoices.documents.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(str(target), b"%PDF-1.4 x")
    assert not target.exists()
    [(temporary, complete)] = seen
    assert temporary.startswith(".invoice.pdf.") and temporary.endswith(".part") and complete
    monkeypatch.undo()

    stored = DocumentStore(DocumentSettings(destination=str(tmp_path / "docs"))).store(
        b"%PDF-1.4 x", source="amazon_business", account="ATVPDKIKX0DER", name="INV-1"
    )
    assert stored.uri is not None
    assert Path(stored.uri).read_bytes() == b"%PDF-1.4 x"
    assert sorted(p.name for p in Path(stored.uri).parent.iterdir()) == ["INV-1.pdf"]


def test_object_store_write_is_one_put() -> None:
    write_atomically("memory://bucket/docs/INV-2.pdf", b"%PDF-1.4 y")
    fs = fsspec.filesystem("memory")
    assert fs.cat_file("/bucket/docs/INV-2.pdf") == b"%PDF-1.4 y"
    assert fs.ls("/bucket/docs", detail=False) == ["/bucket/docs/INV-2.pdf"]


# -- numbers, secrets, unknown keys, the config file -----------------------------------------
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-inf"])
def test_non_finite_numbers_are_refused_in_one_line(
    emulator: Emulator, tmp_path: Path, value: str
) -> None:
    config = ab_config(emulator)
    config["amazon_business"]["poll_interval_seconds"] = value
    run = run_tap(config, tmp_path)
    assert_one_line(run, "amazon_business.poll_interval_seconds", "finite")
    assert api_calls(emulator) == 0


def test_json_nan_literal_is_refused_in_one_line(emulator: Emulator, tmp_path: Path) -> None:
    config = ab_config(emulator)
    text = json.dumps(config).replace('"start_date"', '"max_retry_seconds": NaN, "start_date"')
    path = tmp_path / "config.json"
    path.write_text(text)
    run = run_tap({}, tmp_path / "run", args=["--config", str(path)])
    # JSON has no NaN: the file is refused as it is read, in one line naming it.
    assert_one_line(run, "Configuration error: cannot read --config", str(path))


def test_secret_pasted_into_a_validated_setting_is_masked(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = ab_config(emulator)
    config["amazon_business"]["region"] = ab_emulator.CLIENT_SECRET  # pasted in the wrong box
    run = run_tap(config, tmp_path)
    assert_one_line(run, "amazon_business.region", "***")
    assert ab_emulator.CLIENT_SECRET not in run.stderr
    assert ab_emulator.REFRESH_TOKEN not in run.stderr


def test_unknown_keys_name_the_closest_setting_at_every_level() -> None:
    config = {
        "start_dat": "2025-01-01",
        "amazon_ads": {"acount_ids": ["1"], "client_id": "x"},
        "documents": {"destinaton": "/tmp/x"},
        "stream_maps": {"anything": {"goes": "here"}},
        "zzzz": 1,
    }
    warnings = unknown_settings(config, TapAdInvoices.full_config_schema())
    assert "Unknown setting start_dat is ignored: did you mean start_date?" in warnings
    assert (
        "Unknown setting amazon_ads.acount_ids is ignored: did you mean amazon_ads.account_ids?"
        in warnings
    )
    assert (
        "Unknown setting documents.destinaton is ignored: did you mean documents.destination?"
        in warnings
    )
    assert any(w.startswith("Unknown setting zzzz is ignored: it is not") for w in warnings)
    assert len(warnings) == 4


def test_unknown_key_is_warned_when_the_tap_starts(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    config = ab_config(emulator)
    config["amazon_business"]["marketplace_idz"] = ["ATVPDKIKX0DER"]
    with caplog.at_level(logging.WARNING):
        TapAdInvoices(config=config, validate_config=True)
    assert "did you mean amazon_business.marketplace_ids?" in caplog.text


@pytest.mark.parametrize("content", [None, '{"start_date": ', "[1, 2]"])
def test_missing_or_invalid_config_file_is_one_line(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    run = run_tap({}, tmp_path / "run", args=["--config", str(path)])
    assert_one_line(run, "Configuration error: cannot read --config", str(path))
