"""The Singer SDK's standard tap tests, against the emulator.

The SDK builds the tap at collection time, so the emulator is started when this
module is imported and stopped when the interpreter exits.
"""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.cli import tap_config
from tap_ad_invoices.tap import TapAdInvoices

_EMULATOR = Emulator(port=0).start()
atexit.register(_EMULATOR.stop)

CONFIG = tap_config(_EMULATOR, start_date="2026-01-01")
CONFIG["end_date"] = "2026-11-15"
CONFIG["amazon_ads"]["poll_interval_seconds"] = 0


def _every_stream_selected() -> dict:
    """Opt-in streams (amazon_ads_invoices) too: the suite checks every stream's records
    against a fresh tap's catalog, where a stream not selected has no fields."""
    catalog = TapAdInvoices(config=CONFIG, setup_mapper=False).catalog_dict
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = True
    return catalog


TestTapAdInvoices = get_tap_test_class(
    TapAdInvoices,
    config=CONFIG,
    catalog=_every_stream_selected(),
    suite_config=SuiteConfig(max_records_limit=500),
)
