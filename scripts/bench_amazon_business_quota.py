"""Benchmark: the Amazon Business calls of a second, no-change run against their floor (issue 12).

Runs the emulator (about 100 invoice and credit memo documents, a few of them
answered CANCELLED: no such document, as for a card-paid order in NA) and the tap
twice, the second run from the first's state with no data changed, and counts the
calls the emulator served in run 2 per endpoint.

Floors for run 2: no createReport (delivered documents are in state, CANCELLED ones
are not due again before tomorrow), so no getReport, getReportDocument or download;
the transaction pages of the look-back re-read (every page of each feed window it
touches); the invoice details of their shipped line items, 25 a call; the payment
status of the invoices not Closed yet, 25 a call; one Login with Amazon token.

`amazon_business_quota_run2(tmp_dir)` returns {endpoint: (measured, floor)};
`scripts/bench_quota.py` can import it. Usage: python scripts/bench_amazon_business_quota.py
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

from tap_ad_invoices.amazon_business.conversion import line_items_needing_details
from tap_ad_invoices.amazon_business.streams import feed_windows
from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import amazon_business as emu

ORDERS = 60  # about 1.7 documents an order: 100 documents
CANCELLED = 6  # invoices answered CANCELLED
START_DATE = "2025-01-01"
LOOKBACK_DAYS = WINDOW_DAYS = 30  # the defaults
PAGE_SIZE = 3
DOCS = "amazon_business_invoice_documents"
ENDPOINTS = {
    "createReport": emu.ROUTE_CREATE,
    "getReport": emu.ROUTE_GET_REPORT,
    "getReportDocument": emu.ROUTE_GET_DOCUMENT,
    "document download (S3)": emu.ROUTE_DOWNLOAD,
    "getTransactions": emu.ROUTE_TRANSACTIONS,
    "getInvoiceDetailsByOrderLineItems": emu.ROUTE_INVOICES,
    "getBatchInvoicePaymentDetails": emu.ROUTE_PAYMENTS,
    "Login with Amazon token": "lwa.token",
}
FAST = {
    emu.ROUTE_TRANSACTIONS: [200.0, 10],
    emu.ROUTE_INVOICES: [200.0, 10],
    emu.ROUTE_PAYMENTS: [200.0, 10],
    emu.ROUTE_CREATE: [100.0, 15],
    emu.ROUTE_GET_REPORT: [400.0, 15],
    emu.ROUTE_GET_DOCUMENT: [100.0, 15],
}


def _sibling(name: str) -> Any:
    """A script beside this one, imported whether this runs as a script or is imported."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One tap run as a subprocess, its last STATE: the same as the Amazon Ads benchmark's.
_run_tap = _sibling("bench_amazon_ads_quota")._run_tap


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _read_floors(truth: dict[str, Any], bookmark: dt.datetime, end: dt.datetime) -> tuple[int, int]:
    """Pages and invoice-details calls the look-back re-read needs, on the tap's window grid."""
    start = bookmark - dt.timedelta(days=LOOKBACK_DAYS)
    origin = dt.datetime.fromisoformat(START_DATE).replace(tzinfo=dt.timezone.utc)
    pages, reread = 0, []
    for low, high in feed_windows(start, end, WINDOW_DAYS, origin=origin):
        fed = [t for t in truth["transactions"] if low <= _parse(t["feedDate"]) < high]
        pages += max(1, math.ceil(len(fed) / PAGE_SIZE))
        reread += [t for t in fed if _parse(t["feedDate"]) >= start]
    return pages, math.ceil(len(line_items_needing_details(reread)) / 25)


def amazon_business_quota_run2(tmp_dir: str | Path) -> dict[str, tuple[int, int]]:
    """{endpoint: (calls served in run 2, floor)} for about 100 Amazon Business documents."""
    tmp = Path(tmp_dir)
    knobs: dict[str, Any] = {
        "ab_orders": ORDERS,
        "ab_page_size": PAGE_SIZE,
        "ab_report_delay_seconds": 0.05,
        "rate_limits": FAST,
    }
    with Emulator(port=0, knobs=knobs) as emulator:
        business = emulator.sources["amazon_business"]
        truth = business.truth()
        invoices = sorted(d["invoice_number"] for d in truth["documents"])
        emulator.knobs["ab_cancelled_invoices"] = invoices[:: len(invoices) // CANCELLED][
            :CANCELLED
        ]
        section = {
            **business.tap_config()["amazon_business"],
            "poll_interval_seconds": 0.02,
            "lookback_days": LOOKBACK_DAYS,
            "window_days": WINDOW_DAYS,
        }
        end = dt.datetime.now(dt.timezone.utc)
        config = {
            "start_date": START_DATE,
            "end_date": end.isoformat(),
            "amazon_business": section,
            "documents": {"destination": str(tmp / "pdfs")},
        }
        state = _run_tap(config, tmp / "run1", None)
        emulator.counters.clear()
        second = _run_tap(config, tmp / "run2", state)
        counts = dict(emulator.counters)
    bookmarks = state["bookmarks"][DOCS]
    pages, details = _read_floors(truth, _parse(bookmarks["feed_date_bookmark"]), end)
    open_invoices = len(second["bookmarks"][DOCS].get("open_invoices", {}))
    floors = {
        "getTransactions": pages,
        "getInvoiceDetailsByOrderLineItems": details,
        "getBatchInvoicePaymentDetails": math.ceil(open_invoices / 25),
        "Login with Amazon token": 1,
    }
    return {name: (counts.get(route, 0), floors.get(name, 0)) for name, route in ENDPOINTS.items()}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        table = amazon_business_quota_run2(tmp)
    print(
        f"Amazon Business, run 2 from run 1's state, no data changed "
        f"(~100 documents, {CANCELLED} CANCELLED)"
    )
    print(f"{'endpoint':36} {'run 2':>6} {'floor':>6}")
    for name, (measured, floor) in table.items():
        flag = "" if measured <= floor else "  above the floor"
        print(f"{name:36} {measured:6d} {floor:6d}{flag}")
    return 0 if all(m <= f for m, f in table.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
