"""The README stays true: its settings table is what the tap says about itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_settings_table_is_current():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_readme.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_setting_is_declared_in_meltano_yml():
    from tap_ad_invoices.tap import TapAdInvoices

    meltano = (ROOT / "meltano.yml").read_text(encoding="utf-8")
    schema = TapAdInvoices.config_jsonschema["properties"]
    builtin = ("stream_map", "faker_config", "flattening_", "batch_config")  # the SDK's own
    for name, prop in schema.items():
        if name.startswith(builtin):
            continue
        children = prop.get("properties")
        names = [f"{name}.{child}" for child in children] if children else [name]
        for setting in names:
            assert f"name: {setting}," in meltano, f"{setting} missing from meltano.yml"
            if setting.endswith(("client_secret", "refresh_token", "developer_token")):
                line = next(x for x in meltano.splitlines() if f"name: {setting}," in x)
                assert "sensitive: true" in line, setting
