"""plugin.yml (the Hub definition) and meltano.yml say what the tap says about itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def about() -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "tap_ad_invoices", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def extractor(meltano: dict) -> dict:
    return next(p for p in meltano["plugins"]["extractors"] if p["name"] == "tap-ad-invoices")


def test_plugin_yml_is_current():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_plugin.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_capabilities_agree_everywhere():
    capabilities = set(about()["capabilities"])
    plugin = yaml.safe_load((ROOT / "plugin.yml").read_text(encoding="utf-8"))
    meltano = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    assert set(plugin["capabilities"]) == capabilities
    assert set(extractor(meltano)["capabilities"]) == capabilities
    assert "structured-logging" in capabilities  # FAILED lines show as errors in Meltano
    assert "batch" not in capabilities  # its bookmark would precede its BATCH message


def test_every_setting_is_in_plugin_yml_with_its_secrecy():
    schema = about()["settings"]["properties"]
    plugin = yaml.safe_load((ROOT / "plugin.yml").read_text(encoding="utf-8"))
    listed = {s["name"]: s for s in plugin["settings"]}
    for name, prop in schema.items():
        if name.startswith(("stream_map", "faker_config", "flattening_", "batch_config")):
            continue
        children = prop.get("properties") if name != "amazon_ads.column_map" else None
        for full, leaf in (
            {f"{name}.{c}": p for c, p in children.items()} if children else {name: prop}
        ).items():
            if full == "amazon_ads.column_map" or not isinstance(leaf, dict):
                continue
            assert full in listed, f"{full} missing from plugin.yml"
            assert listed[full].get("sensitive", False) == bool(leaf.get("secret")), full
            assert listed[full]["label"] and listed[full]["kind"], full
    groups = plugin["settings_group_validation"]
    assert all("start_date" in group for group in groups)
    assert {g[1].split(".")[0] for g in groups} == {
        "amazon_ads",
        "google_ads",
        "amazon_business",
        "meta",
    }
