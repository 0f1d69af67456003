"""The `amazon_ads` config section: schema, validation, typed settings."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from tap_ad_invoices.amazon_ads.columns import TYPED_FIELDS
from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.lwa import LWA_TOKEN_URLS
from tap_ad_invoices.money import SUPPORTED_LOCALES
from tap_ad_invoices.regional import check_parts
from tap_ad_invoices.settings import check_choice, check_int, check_number, require

PREFIX = "amazon_ads"
# Statements cost Amazon minutes to generate and us one poll each per sweep: a two-year
# first run of 20 accounts is 160 statements, all of which should wait at the same time.
DEFAULT_STATEMENTS_IN_FLIGHT = 200
DEFAULT_INVOICES_LOOKBACK_DAYS = 90
API_URLS = {
    "NA": "https://advertising-api.amazon.com",
    "EU": "https://advertising-api-eu.amazon.com",
    "FE": "https://advertising-api-fe.amazon.com",
}
# Countries /billingStatements accepts (note UK, not GB).
COUNTRY_CODES = tuple(
    [
        "AE",
        "AU",
        "BE",
        "BR",
        "CA",
        "CL",
        "CO",
        "DE",
        "EG",
        "ES",
        "FR",
        "IE",
        "IN",
        "IT",
        "JP",
        "MX",
        "NG",
        "NL",
        "PL",
        "SA",
        "SE",
        "SG",
        "TR",
        "UK",
        "US",
        "ZA",
    ]
)
# The docs disagree on the statement request: the guide's example sends
# application/json with 20231124, the OpenAPI model its own media type with
# format: date (2023-11-24). A setting value names a form by its date format;
# "auto" starts with the form that worked last (kept in state, else the guide's)
# and switches when the API refuses the form itself (client.RequestForm).
DATE_FORMATS = ("auto", "YYYYMMDD", "YYYY-MM-DD")
GLOBAL_ACCOUNT_ID = re.compile(r"^amzn1\.ads-account\.g\.[A-Za-z0-9]+$")

# One regional host of the same app (and, usually, the same authorisation): Amazon
# Ads serves each region's accounts on its own host, and some users authorise each
# region apart, so a region may bring its own refresh token.
REGION = th.ObjectType(
    th.Property(
        "region",
        th.StringType,
        required=True,
        allowed_values=list(API_URLS),
        description="NA, EU or FE (one entry per region).",
    ),
    th.Property(
        "refresh_token",
        th.StringType,
        secret=True,
        description="This region's refresh token (default: amazon_ads.refresh_token).",
    ),
    th.Property(
        "account_ids",
        th.ArrayType(th.StringType),
        description="Global account ids to read on this host (default: every account it lists).",
    ),
    th.Property("api_url", th.StringType, description="Override the region's API host."),
    th.Property("token_url", th.StringType, description="Override the region's token URL."),
)
REGION_KEYS = ("region", "account_ids", "api_url", "token_url")

CONFIG_PROPERTY = th.Property(
    PREFIX,
    th.ObjectType(
        th.Property(
            "client_id", th.StringType, required=True, description="Login with Amazon client id."
        ),
        th.Property(
            "client_secret",
            th.StringType,
            required=True,
            secret=True,
            description="Login with Amazon client secret.",
        ),
        th.Property(
            "refresh_token",
            th.StringType,
            secret=True,
            description="Login with Amazon refresh token (Atzr|...). Required, except with "
            "`regions` whose every entry has its own.",
        ),
        th.Property(
            "region",
            th.StringType,
            default="NA",
            allowed_values=list(API_URLS),
            description="API region: NA, EU or FE.",
        ),
        th.Property(
            "regions",
            th.ArrayType(REGION),
            description="Several regional hosts in one config, instead of region, account_ids, "
            "api_url and token_url: [{region, refresh_token, account_ids}], sharing client_id "
            "and client_secret (and refresh_token, where an entry has none).",
        ),
        th.Property(
            "account_ids",
            th.ArrayType(th.StringType),
            description="Global account ids (amzn1.ads-account.g.…). "
            "Empty: every account POST /adsAccounts/list returns.",
        ),
        th.Property(
            "locale",
            th.StringType,
            default="en_US",
            description="Locale of the statement (column names, number format): one of "
            + ", ".join(SUPPORTED_LOCALES)
            + ".",
        ),
        th.Property(
            "column_map",
            th.ObjectType(additional_properties=th.StringType),
            description="Statement header -> typed field, applied before the built-in "
            'recognition rules (e.g. {"Rechnungsbetrag": "total_amount"}). Fields: '
            + ", ".join(TYPED_FIELDS)
            + ".",
        ),
        th.Property(
            "country_codes",
            th.ArrayType(th.StringType),
            description="Only these countries (UK, not GB). Empty: all countries.",
        ),
        th.Property(
            "lookback_days",
            th.IntegerType,
            default=90,
            description="Days before the bookmark re-read on every run, so invoices "
            "that changed (unpaid to paid) are updated.",
        ),
        th.Property(
            "window_days",
            th.IntegerType,
            default=90,
            description="Days covered by one billing statement request.",
        ),
        th.Property(
            "poll_interval_seconds",
            th.NumberType,
            default=15,
            description="Seconds between status polls of a statement.",
        ),
        th.Property(
            "max_wait_seconds",
            th.NumberType,
            default=3600,
            description="Time budget for waiting on statements in one run; statements "
            "still in progress keep their id in state and are resumed next run.",
        ),
        th.Property(
            "progress_interval_seconds",
            th.NumberType,
            default=60,
            description="While statements are being generated, how often the log says how "
            "many are pending per account.",
        ),
        th.Property(
            "max_statements_in_flight",
            th.IntegerType,
            default=DEFAULT_STATEMENTS_IN_FLIGHT,
            description="Statements requested and awaited at once. Generation takes minutes "
            "on Amazon's side, so the run asks for all it needs up front; the API's own "
            "rate limit (429 + Retry-After) paces the requests.",
        ),
        th.Property(
            "statement_date_format",
            th.StringType,
            default="auto",
            allowed_values=list(DATE_FORMATS),
            description="Form of the statement request: YYYYMMDD (the guide's: application/json), "
            "YYYY-MM-DD (the OpenAPI model's media type), or auto: the form that worked last "
            "(kept in state), switching when the API refuses the form (see Known API quirks).",
        ),
        th.Property(
            "invoices_lookback_days",
            th.IntegerType,
            default=DEFAULT_INVOICES_LOOKBACK_DAYS,
            description="amazon_ads_invoices: days of issue dates before the bookmark re-read "
            "on every run, so payment status changes and refunds are updated.",
        ),
        th.Property(
            "invoice_documents",
            th.BooleanType,
            default=True,
            description="amazon_ads_invoices: fetch each invoice's PDF (GET /billing/documents). "
            "False: summaries and payment status only.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            description="Override the regional API host (emulator, proxy).",
        ),
        th.Property(
            "token_url",
            th.StringType,
            description="Override the regional Login with Amazon token URL.",
        ),
    ),
    description="Amazon Ads: global invoicing report (billing statements) and invoice "
    "summaries with their PDFs.",
)


@dataclass(frozen=True)
class AmazonAdsSettings:
    client_id: str
    client_secret: str
    refresh_token: str
    region: str
    account_ids: tuple[str, ...]
    locale: str
    column_map: Mapping[str, str]
    country_codes: tuple[str, ...]
    lookback_days: int
    window_days: int
    poll_interval_seconds: float
    max_wait_seconds: float
    max_statements_in_flight: int
    progress_interval_seconds: float
    statement_date_format: str
    invoices_lookback_days: int
    invoice_documents: bool
    api_url: str
    token_url: str
    # Where the region's settings are, for messages: "amazon_ads" (the single-region
    # form) or "amazon_ads.regions[1]".
    setting: str = PREFIX
    # False for the single-region form: its state stays where it always was.
    one_of_regions: bool = False

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> AmazonAdsSettings:
        """The settings of the first (in the single-region form, the only) region."""
        return regions_from_section(section)[0]

    @classmethod
    def _region(cls, section: Mapping[str, Any], entry: Mapping[str, Any]) -> AmazonAdsSettings:
        region = entry.get("region") or "NA"
        return cls(
            client_id=section["client_id"],
            client_secret=section["client_secret"],
            refresh_token=entry.get("refresh_token") or section["refresh_token"],
            region=region,
            account_ids=tuple(entry.get("account_ids") or ()),
            locale=section.get("locale") or "en_US",
            column_map=dict(section.get("column_map") or {}),
            country_codes=tuple(section.get("country_codes") or ()),
            lookback_days=int(section.get("lookback_days", 90)),
            window_days=int(section.get("window_days", 90)),
            poll_interval_seconds=float(section.get("poll_interval_seconds", 15)),
            max_wait_seconds=float(section.get("max_wait_seconds", 3600)),
            progress_interval_seconds=float(section.get("progress_interval_seconds", 60)),
            max_statements_in_flight=int(
                section.get("max_statements_in_flight", DEFAULT_STATEMENTS_IN_FLIGHT)
            ),
            statement_date_format=section.get("statement_date_format") or "auto",
            invoices_lookback_days=int(
                section.get("invoices_lookback_days", DEFAULT_INVOICES_LOOKBACK_DAYS)
            ),
            invoice_documents=bool(section.get("invoice_documents", True)),
            api_url=entry.get("api_url") or API_URLS[region],
            token_url=entry.get("token_url") or LWA_TOKEN_URLS[region],
        )


def regions_from_section(section: Mapping[str, Any]) -> list[AmazonAdsSettings]:
    """One settings object per regional host; the single-region form is one region."""
    entries = section.get("regions")
    if not entries:
        return [AmazonAdsSettings._region(section, section)]
    return [
        dataclasses.replace(
            AmazonAdsSettings._region(section, entry),
            setting=f"{PREFIX}.regions[{index}]",
            one_of_regions=True,
        )
        for index, entry in enumerate(entries)
    ]


def validate(section: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    require(section, PREFIX, "client_id", "client_secret")
    if section.get("regions") is None:
        require(section, PREFIX, "refresh_token")
        _check_region(section, PREFIX)
    else:
        _check_regions(section)
    check_choice(PREFIX, "locale", section.get("locale") or "en_US", SUPPORTED_LOCALES)
    for header, field in (section.get("column_map") or {}).items():
        if field not in TYPED_FIELDS:
            raise ConfigError(
                f"{PREFIX}.column_map",
                f"{header!r} maps to unknown field {field!r}; fields: {', '.join(TYPED_FIELDS)}",
            )
    for code in section.get("country_codes") or []:
        if code not in COUNTRY_CODES:
            hint = " (Amazon uses UK, not GB)" if code == "GB" else ""
            raise ConfigError(f"{PREFIX}.country_codes", f"unknown country {code!r}{hint}")
    check_int(PREFIX, "lookback_days", section.get("lookback_days"), minimum=0)
    check_int(PREFIX, "window_days", section.get("window_days"), minimum=1)
    check_int(PREFIX, "invoices_lookback_days", section.get("invoices_lookback_days"), minimum=0)
    check_number(PREFIX, "poll_interval_seconds", section.get("poll_interval_seconds"))
    check_number(PREFIX, "max_wait_seconds", section.get("max_wait_seconds"))
    check_number(PREFIX, "progress_interval_seconds", section.get("progress_interval_seconds"))
    check_int(PREFIX, "max_statements_in_flight", section.get("max_statements_in_flight"), 1)
    check_choice(
        PREFIX, "statement_date_format", section.get("statement_date_format", "auto"), DATE_FORMATS
    )


def _check_region(entry: Mapping[str, Any], name: str) -> None:
    """A region's keys: at the top of the section (single-region form) or in `regions`."""
    check_choice(name, "region", entry.get("region", "NA"), API_URLS)
    for account_id in entry.get("account_ids") or []:
        if not GLOBAL_ACCOUNT_ID.match(str(account_id)):
            raise ConfigError(
                f"{name}.account_ids",
                f"{account_id!r} is not a global account id (amzn1.ads-account.g.…)",
            )
    for key in ("api_url", "token_url"):
        value = entry.get(key)
        if value and not str(value).startswith(("http://", "https://")):
            raise ConfigError(f"{name}.{key}", f"expected an http(s) URL, got {value!r}")


def _check_regions(section: Mapping[str, Any]) -> None:
    def check(entry: Mapping[str, Any], name: str) -> None:
        _check_region(entry, name)
        if not entry.get("refresh_token"):
            require(section, PREFIX, "refresh_token")  # the shared one, then

    check_parts(
        section,
        PREFIX,
        "regions",
        noun="region",
        shape="{region, refresh_token, account_ids}",
        per_part=REGION_KEYS,
        check=check,
    )
