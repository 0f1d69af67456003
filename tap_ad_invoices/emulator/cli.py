"""`tap-ad-invoices-emulator`: serve the emulated APIs on 127.0.0.1 until stopped."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from tap_ad_invoices.emulator.core import Emulator

DEFAULT_PORT = 8765
DEFAULT_CERTIFICATE = ".emulator/localhost.pem"  # relative to where the tap runs


def tap_config(emulator: Emulator, start_date: str = "2025-01-01") -> dict[str, Any]:
    """A complete tap config that reads everything the emulator serves."""
    config: dict[str, Any] = {"start_date": start_date}
    for source in emulator.sources.values():
        config.update(source.tap_config())
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (0: any free)")
    parser.add_argument("--knobs", default="{}", help="JSON object of knobs, e.g. latency_seconds")
    parser.add_argument("--write-config", help="write a tap config pointing here to this file")
    parser.add_argument(
        "--certificate-file",
        default=DEFAULT_CERTIFICATE,
        help="where to write the Google Ads gRPC server's self-signed certificate "
        "(google_ads.root_certificates_file points at it)",
    )
    args = parser.parse_args(argv)

    knobs = {"google_certificate_file": args.certificate_file, **json.loads(args.knobs)}
    emulator = Emulator(port=args.port, knobs=knobs).start()
    if args.write_config:
        with open(args.write_config, "w", encoding="utf-8") as handle:
            json.dump(tap_config(emulator), handle, indent=2)
    print(f"emulator listening on {emulator.base_url}", flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
