"""Regional hosts: one `Region` per host of the config, and the streams' partitions.

The same design as Amazon Business's stores (`amazon_business.streams.Store`): in
the `regions` form each region is one state partition (`{"region": "EU"}`) of both
Amazon Ads streams, with its own login and HTTP client (so its own retries and
host health), and a refused token or an unreachable host fails that region alone.
The single-region form has no partitions: its state stays where it always was.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tap_ad_invoices.amazon_ads.client import AmazonAdsClient
from tap_ad_invoices.amazon_ads.config import PREFIX, AmazonAdsSettings, regions_from_section
from tap_ad_invoices.errors import FailureLedger
from tap_ad_invoices.regional import PerRegionStream, part_label
from tap_ad_invoices.settings import retry_policy

if TYPE_CHECKING:
    from tap_ad_invoices.tap import TapAdInvoices


@dataclass
class Region:
    """One regional host: its settings, its client, and what its discovery found."""

    settings: AmazonAdsSettings
    client: AmazonAdsClient
    down: bool = False  # its credentials or host failed in this run: its streams skip it
    _discovered: list[str] | None = field(default=None, repr=False)
    # Shared by the regions of one config: which region reads which discovered account.
    # A global account listed by two hosts is read once, by the first region listing it.
    claims: dict[str, str] = field(default_factory=dict, repr=False)

    noun = "region"

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def one_of_several(self) -> bool:
        return self.settings.one_of_regions

    def account_ids(
        self, failures: FailureLedger, stream: str, logger: logging.Logger
    ) -> list[str] | None:
        """The configured accounts, else the CREATED ones the host lists (None: listing failed).

        Listed once per run for both streams; accounts in another status are named once.
        """
        if self.settings.account_ids:
            return list(self.settings.account_ids)
        if self._discovered is not None:
            return self._discovered
        item = f"{part_label(self)}account discovery"
        with failures.unit(stream, item, logger) as discovery:
            listing = self.client.list_accounts()
        if discovery.failed:
            return None
        if listing.skipped:
            logger.info(
                "Amazon Ads: %sskipping %d account(s) that are not CREATED (no statements or "
                "invoices to read): %s",
                part_label(self),
                len(listing.skipped),
                ", ".join(f"{account} ({status})" for account, status in listing.skipped),
            )
        self._discovered = [a for a in listing.account_ids if self._claim(a, logger)]
        return self._discovered

    def _claim(self, account_id: str, logger: logging.Logger) -> bool:
        owner = self.claims.setdefault(account_id, self.region)
        if owner != self.region:
            logger.info(
                "Amazon Ads: %saccount %s is also listed by region %s, which reads it",
                part_label(self),
                account_id,
                owner,
            )
        return owner == self.region


def build_regions(tap: TapAdInvoices) -> list[Region]:
    regions = []
    claims: dict[str, str] = {}
    for settings in regions_from_section(tap.config[PREFIX]):
        # Its own client: its own login, retries and host health.
        client = AmazonAdsClient(settings, retry=retry_policy(tap.config))
        regions.append(Region(settings, client, claims=claims))
    return regions


class RegionalStream(PerRegionStream[Region]):
    """Base of both Amazon Ads streams: one state partition per region in the `regions` form."""

    source_key = PREFIX

    @property
    def regions(self) -> list[Region]:
        return self.parts

    @property
    def settings(self) -> AmazonAdsSettings:
        """The settings every region shares (the first region's)."""
        return self.parts[0].settings

    def region_state(self, context: Mapping[str, Any] | None) -> dict[str, Any]:
        """The region's partition state; the stream's own in the single-region form."""
        return self.get_context_state(context)

    def account_state(
        self, state: dict[str, Any], account_id: str, blank: dict[str, Any]
    ) -> dict[str, Any]:
        """An account's entry in `state["accounts"]`.

        A config moving to the `regions` form finds its accounts' bookmarks where the
        single-region form kept them (global account ids are unique across regions),
        so adding a region does not re-read the first one from start_date.
        """
        accounts = state.setdefault("accounts", {})
        if account_id not in accounts:
            earlier = (self.stream_state.get("accounts") or {}).get(account_id)
            if state is not self.stream_state and earlier:
                accounts[account_id] = copy.deepcopy(earlier)
            else:
                accounts[account_id] = copy.deepcopy(blank)
        entry: dict[str, Any] = accounts[account_id]
        return entry
