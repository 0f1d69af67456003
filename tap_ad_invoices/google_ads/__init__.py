"""Google Ads: invoices of every serving account through InvoiceService (google-ads client)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tap_ad_invoices.catalog import StreamSpec
from tap_ad_invoices.google_ads.config import CONFIG_PROPERTY, KEY, GoogleAdsSettings, validate
from tap_ad_invoices.sources import Source

if TYPE_CHECKING:
    from singer_sdk import Stream

    from tap_ad_invoices.tap import TapAdInvoices


def streams(tap: TapAdInvoices) -> list[Stream]:
    # Imported here: the google-ads client costs ~1 s of start-up, paid only when used.
    from tap_ad_invoices.google_ads.streams import GoogleAdsInvoicesStream

    section = tap.config.get(KEY)
    if not section:
        return []
    return [GoogleAdsInvoicesStream(tap, GoogleAdsSettings.from_config(section))]


def catalog() -> list[StreamSpec]:
    from tap_ad_invoices.google_ads.conversion import invoice_schema
    from tap_ad_invoices.google_ads.streams import GoogleAdsInvoicesStream

    return [StreamSpec.of(GoogleAdsInvoicesStream, schema=invoice_schema())]


SOURCE = Source(
    key=KEY, config_property=CONFIG_PROPERTY, validate=validate, streams=streams, catalog=catalog
)
