"""Amazon Business: reconciliation transactions and their invoice / credit memo PDFs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tap_ad_invoices.catalog import StreamSpec
from tap_ad_invoices.sources import Source

from .config import CONFIG_PROPERTY, KEY, validate

if TYPE_CHECKING:
    from singer_sdk import Stream

    from tap_ad_invoices.tap import TapAdInvoices


def _validate(section: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    validate(section, config)


def _streams(tap: TapAdInvoices) -> list[Stream]:
    from .streams import build_streams  # the SDK streams only when the source is configured

    return build_streams(tap)


def _catalog() -> list[StreamSpec]:
    from .streams import InvoiceDocumentsStream, TransactionsStream

    return [StreamSpec.of(TransactionsStream), StreamSpec.of(InvoiceDocumentsStream)]


SOURCE = Source(
    key=KEY,
    config_property=CONFIG_PROPERTY,
    validate=_validate,
    streams=_streams,
    catalog=_catalog,
)
