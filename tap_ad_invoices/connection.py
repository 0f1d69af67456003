"""`--test` (and so `meltano config test`): can each configured source be reached?

The SDK's own test syncs one record of every stream, which here means creating
billing statements and Amazon Business reports (the whole createReport burst) and
downloading PDFs. This test instead, per configured source, refreshes the access
token and makes one read-only call, and says in one line what worked or which
setting to fix. It creates nothing and downloads nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

from tap_ad_invoices.errors import describe
from tap_ad_invoices.settings import retry_policy

LOGGER = logging.getLogger("tap_ad_invoices.connection")

Probe = Callable[[Mapping[str, Any]], str]


def probe_amazon_ads(config: Mapping[str, Any]) -> str:
    from tap_ad_invoices.amazon_ads.client import AmazonAdsClient
    from tap_ad_invoices.amazon_ads.config import regions_from_section

    found = []
    regions = regions_from_section(config["amazon_ads"])
    for settings in regions:  # each regional host has its own login
        client = AmazonAdsClient(settings, retry=retry_policy(config))
        accounts = client.list_account_ids()  # POST /adsAccounts/list: read-only
        where = f"region {settings.region}: " if len(regions) > 1 else ""
        found.append(f"{where}{len(accounts)} global account(s) reachable")
    return "token refreshed; " + "; ".join(found)


def probe_google_ads(config: Mapping[str, Any]) -> str:
    from tap_ad_invoices.google_ads.client import GoogleAdsApi
    from tap_ad_invoices.google_ads.config import GoogleAdsSettings

    settings = GoogleAdsSettings.from_config(config["google_ads"])
    api = GoogleAdsApi(settings, retry=retry_policy(config))
    if settings.customer_ids:
        customer = settings.customer_ids[0]
        setups = api.billing_setups(customer)  # one GAQL search: read-only
        return f"token refreshed; customer {customer}: {len(setups)} billing setup(s)"
    customers = api.customers()
    serving = sum(1 for customer in customers if customer.serving)
    return (
        f"token refreshed; {serving} serving account(s) and {len(customers) - serving} that "
        "stopped serving (read for their final invoices) under the manager"
    )


def probe_amazon_business(config: Mapping[str, Any]) -> str:
    from tap_ad_invoices.amazon_business.client import AmazonBusinessClient
    from tap_ad_invoices.amazon_business.config import stores_from_config

    found = []
    for store in stores_from_config(config):
        client = AmazonBusinessClient(store, retry=retry_policy(config))
        now = dt.datetime.now(dt.timezone.utc)
        # One getTransactions page of the last day: read-only, no report created.
        first = next(iter(client.transactions(now - dt.timedelta(days=1), now)), None)
        found.append(f"{store.region}: {'a' if first else 'no'} transaction in the last day")
    return "token refreshed; " + "; ".join(found)


def probe_meta(config: Mapping[str, Any]) -> str:
    from tap_ad_invoices.meta.client import MetaGraph
    from tap_ad_invoices.meta.config import MetaSettings

    settings = MetaSettings.from_config(config["meta"])
    graph = MetaGraph(settings, retry=retry_policy(config))
    today = dt.date.today()
    business = settings.business_ids[0]
    invoices = graph.business_invoices(
        business, today.isoformat(), (today + dt.timedelta(days=1)).isoformat(), today.isoformat()
    )
    return f"token accepted; business {business}: {len(invoices)} invoice(s) issued today"


PROBES: dict[str, Probe] = {
    "amazon_ads": probe_amazon_ads,
    "google_ads": probe_google_ads,
    "amazon_business": probe_amazon_business,
    "meta": probe_meta,
}


def run_connection_test(config: Mapping[str, Any], sources: list[str]) -> bool:
    """One line per configured source; True when every one answered."""
    ok = True
    for source in sources:
        probe = PROBES.get(source)
        if probe is None:
            LOGGER.warning("Connection test: %s: no read-only probe; not checked", source)
            continue
        started = dt.datetime.now(dt.timezone.utc)
        try:
            detail = probe(config)
        except Exception as exc:
            ok = False
            LOGGER.debug("Connection test: %s failed", source, exc_info=True)
            LOGGER.error("Connection test: %s FAILED: %s", source, describe(exc))
            continue
        elapsed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
        LOGGER.info("Connection test: %s ok (%s; %.1f s)", source, detail, elapsed)
    return ok
