"""What a source (Amazon Ads, Google Ads, Amazon Business) contributes to the tap."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singer_sdk import typing as th

if TYPE_CHECKING:
    from singer_sdk import Stream

    from tap_ad_invoices.catalog import StreamSpec
    from tap_ad_invoices.tap import TapAdInvoices


@dataclass(frozen=True)
class Source:
    key: str  # the config section, e.g. "amazon_ads"
    config_property: th.Property
    # Checks the section (and the top-level settings it uses); raises ConfigError.
    validate: Callable[[Mapping[str, Any], Mapping[str, Any]], None]
    streams: Callable[[TapAdInvoices], list[Stream]]
    # What the source's streams declare (name, schema, keys), for the catalog of a
    # config without this section.
    catalog: Callable[[], list[StreamSpec]] = lambda: []
