"""The `amazon_business` config section: contract, defaults, validation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.lwa import LWA_TOKEN_URLS
from tap_ad_invoices.redaction import register_secret
from tap_ad_invoices.regional import check_parts
from tap_ad_invoices.settings import check_choice, check_int, check_number, require, sync_range

KEY = "amazon_business"

API_URLS = {
    "NA": "https://na.business-api.amazon.com",
    "EU": "https://eu.business-api.amazon.com",
    "JP": "https://jp.business-api.amazon.com",
}
# The region's main marketplace (docs: marketplace-ids): US, UK, JP.
DEFAULT_MARKETPLACES = {"NA": "ATVPDKIKX0DER", "EU": "A1F83G8C2ARO7P", "JP": "A1VC38T7YXB528"}
DOCUMENT_TYPES = ("Invoice", "Credits")
# How createReport names a document (reportOptions): NA by invoiceId + documentType; EU by
# order (orderId, the only required key there since July 2025); JP unconfirmed, as EU.
INVOICE_KEYS, ORDER_KEYS = "invoice", "order"
# A CANCELLED report means Amazon has no such document (yet): an NA card-paid order, a
# credit memo not issued. Asked again this many days after the first CANCELLED, then
# given up: each ask costs a createReport, of which Amazon allows one a minute.
CANCELLED_RETRY_DAYS = (1, 7, 30)
DOCUMENT_REQUEST_KEYS = {"NA": INVOICE_KEYS, "EU": ORDER_KEYS, "JP": ORDER_KEYS}

# One regional store of the business: its own authorisation, marketplaces and hosts.
STORE = th.ObjectType(
    th.Property("region", th.StringType, description="NA, EU or JP (one store per region)."),
    th.Property(
        "refresh_token", th.StringType, secret=True, description="The store's refresh token."
    ),
    th.Property("marketplace_ids", th.ArrayType(th.StringType)),
    th.Property("api_url", th.StringType),
    th.Property("token_url", th.StringType),
    th.Property(
        "document_request_keys",
        th.StringType,
        description="invoice or order: overrides amazon_business.document_request_keys.",
    ),
)
STORE_KEYS = ("region", "refresh_token", "marketplace_ids", "api_url", "token_url")

CONFIG_PROPERTY = th.Property(
    KEY,
    th.ObjectType(
        th.Property("client_id", th.StringType, description="LWA client id of the app."),
        th.Property("client_secret", th.StringType, secret=True, description="LWA client secret."),
        th.Property(
            "refresh_token",
            th.StringType,
            secret=True,
            description="Refresh token of the business authorisation; one per regional store.",
        ),
        th.Property("region", th.StringType, default="NA", description="NA, EU or JP."),
        th.Property(
            "marketplace_ids",
            th.ArrayType(th.StringType),
            description="Marketplaces to read (default: the region's main marketplace).",
        ),
        th.Property(
            "stores",
            th.ArrayType(STORE),
            description="Several regional stores in one config, instead of refresh_token, "
            "region and marketplace_ids: [{region, refresh_token, marketplace_ids}], "
            "sharing client_id and client_secret.",
        ),
        th.Property(
            "document_types",
            th.ArrayType(th.StringType),
            default=list(DOCUMENT_TYPES),
            description="Which PDFs to fetch: Invoice, Credits.",
        ),
        th.Property(
            "document_request_keys",
            th.StringType,
            description="How createReport names a document: invoice (invoiceId + "
            "documentType) or order (orderId, with the line item and shipment). Default by "
            "region: invoice in NA, order in EU and JP.",
        ),
        th.Property(
            "cancelled_retry_days",
            th.ArrayType(th.IntegerType),
            default=[1, 7, 30],
            description="A document whose report came back CANCELLED (no such document) is "
            "asked for again this many days after the first CANCELLED, then given up.",
        ),
        th.Property(
            "lookback_days",
            th.IntegerType,
            default=30,
            description="Re-read transactions this many days before the bookmark.",
        ),
        th.Property(
            "poll_interval_seconds",
            th.NumberType,
            default=15,
            description="Seconds between getReport polls of one report.",
        ),
        th.Property(
            "window_days",
            th.IntegerType,
            default=30,
            description="Feed-date window of one getTransactions query.",
        ),
        th.Property(
            "max_documents_per_run",
            th.IntegerType,
            description="Start at most this many document reports per run (default: no limit).",
        ),
        th.Property(
            "time_budget_seconds",
            th.NumberType,
            description="Stop starting reports after this long; pending ones resume next run.",
        ),
        th.Property(
            "progress_interval_seconds",
            th.NumberType,
            default=60,
            description="How often long runs log their progress.",
        ),
        th.Property("api_url", th.StringType, description="Override the regional API host."),
        th.Property("token_url", th.StringType, description="Override the LWA token endpoint."),
    ),
    description="Amazon Business invoices and credit memos (Reconciliation + Document APIs).",
)


@dataclass(frozen=True)
class AmazonBusinessSettings:
    client_id: str
    client_secret: str
    refresh_token: str
    region: str
    marketplace_ids: tuple[str, ...]
    document_types: tuple[str, ...]
    document_request_keys: str
    cancelled_retry_days: tuple[int, ...]
    lookback_days: int
    poll_interval_seconds: float
    window_days: int
    max_documents_per_run: int | None
    time_budget_seconds: float | None
    progress_interval_seconds: float
    api_url: str
    token_url: str
    start_date: dt.datetime
    end_date: dt.datetime | None  # None: now, at the start of each run
    # Where the store's settings are, for messages: "amazon_business" (the single-store
    # form) or "amazon_business.stores[1]".
    setting: str = KEY
    # False for the single-store form: its state stays where it always was.
    one_of_stores: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AmazonBusinessSettings:
        """The settings of the first (in the single-store form, the only) store."""
        return stores_from_config(config)[0]

    @classmethod
    def _store(
        cls, section: Mapping[str, Any], store: Mapping[str, Any], config: Mapping[str, Any]
    ) -> AmazonBusinessSettings:
        region = store.get("region") or "NA"
        start, end = sync_range(config)
        return cls(
            client_id=section["client_id"],
            client_secret=section["client_secret"],
            refresh_token=store["refresh_token"],
            region=region,
            marketplace_ids=tuple(store.get("marketplace_ids") or [DEFAULT_MARKETPLACES[region]]),
            document_types=tuple(section.get("document_types") or DOCUMENT_TYPES),
            document_request_keys=(
                store.get("document_request_keys")
                or section.get("document_request_keys")
                or DOCUMENT_REQUEST_KEYS[region]
            ),
            cancelled_retry_days=tuple(
                int(d) for d in section.get("cancelled_retry_days") or CANCELLED_RETRY_DAYS
            ),
            lookback_days=int(section.get("lookback_days", 30)),
            poll_interval_seconds=float(section.get("poll_interval_seconds", 15)),
            window_days=int(section.get("window_days", 30)),
            max_documents_per_run=_int_or_none(section.get("max_documents_per_run")),
            time_budget_seconds=_float_or_none(section.get("time_budget_seconds")),
            progress_interval_seconds=float(section.get("progress_interval_seconds", 60)),
            api_url=(store.get("api_url") or API_URLS[region]).rstrip("/"),
            token_url=store.get("token_url") or LWA_TOKEN_URLS[region],
            start_date=start,
            end_date=end if config.get("end_date") else None,
        )


def stores_from_config(config: Mapping[str, Any]) -> list[AmazonBusinessSettings]:
    """One settings object per regional store; the single-store form is one store."""
    section = config.get(KEY) or {}
    validate(section, config)
    stores = section.get("stores")
    if not stores:
        return [AmazonBusinessSettings._store(section, section, config)]
    return [
        dataclasses.replace(
            AmazonBusinessSettings._store(section, store, config),
            setting=f"{KEY}.stores[{index}]",
            one_of_stores=True,
        )
        for index, store in enumerate(stores)
    ]


def _float_or_none(value: Any) -> float | None:
    # The SDK parses config numbers as Decimal.
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _check_url(key: str, value: Any, *, name: str = KEY) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ConfigError(f"{name}.{key}", f"expected an http(s) URL, got {value!r}")


def _check_strings(
    key: str,
    value: Any,
    *,
    choices: tuple[str, ...] | None = None,
    most: int = 25,
    name: str = KEY,
) -> None:
    if value is None:
        return
    name = f"{name}.{key}"
    if not isinstance(value, list) or not value or len(value) > most:
        raise ConfigError(name, f"expected a list of 1 to {most} values, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(name, f"expected non-empty strings, got {item!r}")
        if choices is not None and item not in choices:
            raise ConfigError(name, f"{item!r} is not one of {', '.join(choices)}")


def validate(section: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Everything knowable before a network call; raises ConfigError naming the setting."""
    if not isinstance(section, Mapping):
        raise ConfigError(KEY, "expected an object")
    require(section, KEY, "client_id", "client_secret")
    if section.get("stores") is None:
        _check_store(section, KEY)
    else:
        _check_stores(section)
    _check_strings("document_types", section.get("document_types"), choices=DOCUMENT_TYPES)
    _check_request_keys(section, KEY)
    _check_retry_days(section.get("cancelled_retry_days"))
    check_int(KEY, "lookback_days", section.get("lookback_days"), minimum=0)
    check_int(KEY, "window_days", section.get("window_days"), minimum=1)
    check_int(KEY, "max_documents_per_run", section.get("max_documents_per_run"), minimum=1)
    for key in ("poll_interval_seconds", "time_budget_seconds", "progress_interval_seconds"):
        check_number(KEY, key, section.get(key), minimum=0.001)
    sync_range(config)


def _check_store(store: Mapping[str, Any], name: str) -> None:
    """A store's keys: at the top of the section (single-store form) or in `stores`."""
    require(store, name, "refresh_token")
    register_secret(store["refresh_token"])  # masked before any message could show it
    check_choice(name, "region", store.get("region", "NA"), API_URLS)
    _check_strings("marketplace_ids", store.get("marketplace_ids"), name=name)
    _check_url("api_url", store.get("api_url"), name=name)
    _check_url("token_url", store.get("token_url"), name=name)
    if name != KEY:
        _check_request_keys(store, name)


def _check_retry_days(value: Any) -> None:
    if value is None:
        return
    name = f"{KEY}.cancelled_retry_days"
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 10
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in value)
        or value != sorted(value)
    ):
        raise ConfigError(name, f"expected 1 to 10 increasing whole days >= 0, got {value!r}")


def _check_request_keys(section: Mapping[str, Any], name: str) -> None:
    if section.get("document_request_keys") is not None:
        check_choice(
            name,
            "document_request_keys",
            section["document_request_keys"],
            (INVOICE_KEYS, ORDER_KEYS),
        )


def _check_stores(section: Mapping[str, Any]) -> None:
    check_parts(
        section,
        KEY,
        "stores",
        noun="store",
        shape="{region, refresh_token, marketplace_ids}",
        per_part=STORE_KEYS,
        check=_check_store,
    )
