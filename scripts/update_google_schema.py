"""Write google_ads/invoice_schema.json from the google-ads proto descriptor.

Run after upgrading google-ads (tests/test_google_ads.py fails while it is stale):

    python scripts/update_google_schema.py
"""

from __future__ import annotations

import json
from pathlib import Path

from tap_ad_invoices.google_ads import conversion

TARGET = Path(conversion.__file__).with_name(conversion.SCHEMA_FILE)


def render() -> str:
    return json.dumps(conversion.schema_from_proto(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET.name}")
