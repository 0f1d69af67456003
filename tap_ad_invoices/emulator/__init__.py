"""An offline emulator of the APIs the tap reads, on 127.0.0.1 only.

`Emulator` starts an HTTP server (token endpoints, REST APIs, presigned
downloads, a control API under /_emulator/) and, when a source module needs
one, more servers (Google Ads gRPC). Each source registers its routes in its
own module; the core here owns knobs, injected faults and call counters.
"""

from tap_ad_invoices.emulator.core import Emulator, Fault

__all__ = ["Emulator", "Fault"]
