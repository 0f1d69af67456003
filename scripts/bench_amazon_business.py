"""Benchmark: Amazon Business invoice documents, pipelined vs a sequential loop.

Runs the emulator with scaled-down limits (createReport and getReportDocument
`--rate` per second after a burst of 15, reports taking `--report-seconds`) and
measures, over real HTTP on loopback:

- pipelined: the tap's DocumentPipeline (create while earlier reports process,
  poll together, download each as it finishes);
- sequential: create, poll until done, getReportDocument, download, one document
  after the other, with the same client and buckets;

against the rate-limit floor: the creates beyond the burst at `rate`, plus one
report time for the last one. Also the whole tap (subprocess) for context.

Usage: python scripts/bench_amazon_business.py [--orders 24] [--rate 5] [--report-seconds 0.5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tap_ad_invoices.amazon_business.client import AmazonBusinessClient
from tap_ad_invoices.amazon_business.config import AmazonBusinessSettings
from tap_ad_invoices.amazon_business.conversion import (
    DocumentRequest,
    details_by_line_item,
    line_items_needing_details,
    plan_documents,
)
from tap_ad_invoices.amazon_business.pipeline import DONE, DocumentPipeline
from tap_ad_invoices.documents import DocumentSettings, DocumentStore, unwrap_pdf
from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import amazon_business as emu

BURST = 15


def knobs(rate: float, report_seconds: float, orders: int) -> dict[str, Any]:
    return {
        "ab_orders": orders,
        "ab_report_delay_seconds": report_seconds,
        "rate_limits": {
            emu.ROUTE_TRANSACTIONS: [200.0, 10],
            emu.ROUTE_INVOICES: [200.0, 10],
            emu.ROUTE_CREATE: [rate, BURST],
            emu.ROUTE_GET_REPORT: [400.0, 15],
            emu.ROUTE_GET_DOCUMENT: [rate, BURST],
        },
    }


def start_emulator(args: argparse.Namespace) -> Emulator:
    return Emulator(port=0, knobs=knobs(args.rate, args.report_seconds, args.orders)).start()


def config(emulator: Emulator, poll: float) -> dict[str, Any]:
    section = emulator.sources["amazon_business"].tap_config()["amazon_business"]
    section.update(poll_interval_seconds=poll, window_days=120, progress_interval_seconds=5)
    return {"start_date": "2025-01-01", "amazon_business": section}


def plan(client: AmazonBusinessClient, settings: AmazonBusinessSettings) -> list[DocumentRequest]:
    transactions = list(client.transactions(settings.start_date, dt.datetime.now(dt.timezone.utc)))
    keys = line_items_needing_details(transactions)
    results: list[dict[str, Any]] = []
    for i in range(0, len(keys), 25):
        batch = keys[i : i + 25]
        results += client.invoice_details(
            [{"orderId": o, "orderLineItemId": li, "shipmentId": s} for o, li, s in batch]
        )
    documents = plan_documents(
        transactions,
        details_by_line_item(results),
        document_types=settings.document_types,
        marketplace_ids=settings.marketplace_ids,
    )
    return sorted(documents.values(), key=lambda r: r.key)


def pipelined(args: argparse.Namespace) -> tuple[float, int]:
    with start_emulator(args) as emulator:
        settings = AmazonBusinessSettings.from_config(config(emulator, args.poll))
        client = AmazonBusinessClient(settings)
        todo = plan(client, settings)
        runner = DocumentPipeline(
            client,
            DocumentStore(DocumentSettings()),
            max_bytes=1 << 24,
            poll_interval=args.poll,
            progress_interval=3600,
        )
        started = time.monotonic()
        done = sum(1 for outcome in runner.run(todo, []) if outcome.status == DONE)
        return time.monotonic() - started, done


def sequential(args: argparse.Namespace) -> tuple[float, int]:
    with start_emulator(args) as emulator:
        settings = AmazonBusinessSettings.from_config(config(emulator, args.poll))
        client = AmazonBusinessClient(settings)
        todo = plan(client, settings)
        started = time.monotonic()
        done = 0
        for request in todo:
            report_id = client.create_report(
                request.invoice_number, request.document_type, request.marketplace_id
            )
            while True:
                report = client.get_report(report_id)
                if report["processingStatus"] in ("DONE", "CANCELLED", "FATAL"):
                    break
                time.sleep(args.poll)
            if report["processingStatus"] != "DONE":
                continue
            document = client.get_report_document(report["reportDocumentId"])
            unwrap_pdf(client.download(document["url"], 1 << 24, "bench"), 1 << 24, "bench")
            done += 1
        return time.monotonic() - started, done


def whole_tap(args: argparse.Namespace) -> tuple[float, int]:
    with start_emulator(args) as emulator, tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "config.json"
        path.write_text(json.dumps(config(emulator, args.poll)))
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "tap_ad_invoices", "--config", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        elapsed = time.monotonic() - started
        # Only the documents stream's own records: `invoices` rows name it as source_stream.
        messages = (json.loads(line) for line in done.stdout.splitlines() if line)
        records = sum(
            1
            for message in messages
            if message["type"] == "RECORD"
            and message["stream"] == "amazon_business_invoice_documents"
        )
        return elapsed, records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--orders", type=int, default=24, help="emulated orders (~1.7 documents each)"
    )
    parser.add_argument(
        "--rate", type=float, default=5.0, help="createReport/getReportDocument per second"
    )
    parser.add_argument("--report-seconds", type=float, default=0.5, help="report processing time")
    parser.add_argument("--poll", type=float, default=0.1, help="poll interval (seconds)")
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()

    pipe_seconds, documents = pipelined(args)
    floor = max(0, documents - BURST) / args.rate + args.report_seconds
    print(
        f"documents: {documents}; createReport and getReportDocument at {args.rate:g}/s after a "
        f"burst of {BURST}; reports take {args.report_seconds:g}s; poll every {args.poll:g}s"
    )
    print(f"rate-limit floor:      {floor:7.2f} s")
    print(f"pipelined (measured):  {pipe_seconds:7.2f} s  = {pipe_seconds / floor:.2f} x floor")
    if not args.skip_sequential:
        seq_seconds, seq_documents = sequential(args)
        assert seq_documents == documents
        print(
            f"sequential (measured): {seq_seconds:7.2f} s  = {seq_seconds / floor:.2f} x floor, "
            f"{seq_seconds / pipe_seconds:.1f} x pipelined"
        )
    tap_seconds, records = whole_tap(args)
    print(
        f"whole tap run (subprocess, incl. startup and both streams): {tap_seconds:.2f} s, "
        f"{records} document records"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
