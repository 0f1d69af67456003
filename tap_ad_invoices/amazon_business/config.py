"""The `amazon_business` config section: contract, defaults, validation."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.lwa import LWA_TOKEN_URLS
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
            "document_types",
            th.ArrayType(th.StringType),
            default=list(DOCUMENT_TYPES),
            description="Which PDFs to fetch: Invoice, Credits.",
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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AmazonBusinessSettings:
        section = config.get(KEY) or {}
        validate(section, config)
        region = section.get("region") or "NA"
        start, end = sync_range(config)
        return cls(
            client_id=section["client_id"],
            client_secret=section["client_secret"],
            refresh_token=section["refresh_token"],
            region=region,
            marketplace_ids=tuple(section.get("marketplace_ids") or [DEFAULT_MARKETPLACES[region]]),
            document_types=tuple(section.get("document_types") or DOCUMENT_TYPES),
            lookback_days=int(section.get("lookback_days", 30)),
            poll_interval_seconds=float(section.get("poll_interval_seconds", 15)),
            window_days=int(section.get("window_days", 30)),
            max_documents_per_run=_int_or_none(section.get("max_documents_per_run")),
            time_budget_seconds=_float_or_none(section.get("time_budget_seconds")),
            progress_interval_seconds=float(section.get("progress_interval_seconds", 60)),
            api_url=(section.get("api_url") or API_URLS[region]).rstrip("/"),
            token_url=section.get("token_url") or LWA_TOKEN_URLS[region],
            start_date=start,
            end_date=end if config.get("end_date") else None,
        )


def _float_or_none(value: Any) -> float | None:
    # The SDK parses config numbers as Decimal.
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _check_url(key: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ConfigError(f"{KEY}.{key}", f"expected an http(s) URL, got {value!r}")


def _check_strings(
    key: str, value: Any, *, choices: tuple[str, ...] | None = None, most: int = 25
) -> None:
    if value is None:
        return
    name = f"{KEY}.{key}"
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
    require(section, KEY, "client_id", "client_secret", "refresh_token")
    check_choice(KEY, "region", section.get("region", "NA"), API_URLS)
    _check_strings("marketplace_ids", section.get("marketplace_ids"))
    _check_strings("document_types", section.get("document_types"), choices=DOCUMENT_TYPES)
    check_int(KEY, "lookback_days", section.get("lookback_days"), minimum=0)
    check_int(KEY, "window_days", section.get("window_days"), minimum=1)
    check_int(KEY, "max_documents_per_run", section.get("max_documents_per_run"), minimum=1)
    for key in ("poll_interval_seconds", "time_budget_seconds", "progress_interval_seconds"):
        check_number(KEY, key, section.get(key), minimum=0.001)
    _check_url("api_url", section.get("api_url"))
    _check_url("token_url", section.get("token_url"))
    sync_range(config)
