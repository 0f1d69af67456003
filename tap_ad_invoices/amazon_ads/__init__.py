"""Amazon Ads: the global invoicing report (billing statements) and invoice summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tap_ad_invoices.amazon_ads.config import CONFIG_PROPERTY, PREFIX, validate
from tap_ad_invoices.catalog import StreamSpec
from tap_ad_invoices.sources import Source

if TYPE_CHECKING:
    from singer_sdk import Stream

    from tap_ad_invoices.tap import TapAdInvoices


def _streams(tap: TapAdInvoices) -> list[Stream]:
    from tap_ad_invoices.amazon_ads.invoice_streams import AmazonAdsInvoicesStream
    from tap_ad_invoices.amazon_ads.regions import build_regions
    from tap_ad_invoices.amazon_ads.streams import BillingStatementsStream

    # One client per regional host, shared by both streams: one login and one
    # account listing per region and run.
    regions = build_regions(tap)
    return [BillingStatementsStream(tap, regions), AmazonAdsInvoicesStream(tap, regions)]


def _catalog() -> list[StreamSpec]:
    from tap_ad_invoices.amazon_ads.invoice_streams import AmazonAdsInvoicesStream
    from tap_ad_invoices.amazon_ads.streams import BillingStatementsStream

    return [StreamSpec.of(BillingStatementsStream), StreamSpec.of(AmazonAdsInvoicesStream)]


SOURCE = Source(
    key=PREFIX,
    config_property=CONFIG_PROPERTY,
    validate=validate,
    streams=_streams,
    catalog=_catalog,
)
