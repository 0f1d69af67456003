"""Meta: monthly invoices of businesses on monthly invoicing (Graph API business_invoices)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tap_ad_invoices.catalog import StreamSpec
from tap_ad_invoices.meta.config import CONFIG_PROPERTY, KEY, MetaSettings, validate
from tap_ad_invoices.sources import Source

if TYPE_CHECKING:
    from singer_sdk import Stream

    from tap_ad_invoices.tap import TapAdInvoices


def streams(tap: TapAdInvoices) -> list[Stream]:
    from tap_ad_invoices.meta.streams import build_streams  # only when the source is configured

    section = tap.config.get(KEY)
    if not section:
        return []
    return build_streams(tap, MetaSettings.from_config(section))


def catalog() -> list[StreamSpec]:
    from tap_ad_invoices.meta.streams import MetaInvoiceCampaignsStream, MetaInvoicesStream

    return [StreamSpec.of(MetaInvoicesStream), StreamSpec.of(MetaInvoiceCampaignsStream)]


SOURCE = Source(
    key=KEY, config_property=CONFIG_PROPERTY, validate=validate, streams=streams, catalog=catalog
)
