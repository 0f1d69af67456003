"""The `google_ads` config section: its schema, its checks, and the parsed settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from singer_sdk import typing as th

from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.settings import check_int, require

KEY = "google_ads"
DEFAULT_ENDPOINT = "googleads.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_LOOKBACK_MONTHS = 2
_CUSTOMER_ID = re.compile(r"^[0-9]{10}$")

CONFIG_PROPERTY = th.Property(
    KEY,
    th.ObjectType(
        th.Property(
            "client_id",
            th.StringType,
            required=True,
            description="OAuth client id (Google Cloud project, Desktop or Web app).",
        ),
        th.Property(
            "client_secret",
            th.StringType,
            required=True,
            secret=True,
            description="OAuth client secret.",
        ),
        th.Property(
            "refresh_token",
            th.StringType,
            required=True,
            secret=True,
            description="Refresh token granted with the scope "
            "https://www.googleapis.com/auth/adwords.",
        ),
        th.Property(
            "developer_token",
            th.StringType,
            secret=True,
            description="Optional: Google ignores developer tokens since September 2026; "
            "older setups may still send one.",
        ),
        th.Property(
            "login_customer_id",
            th.StringType,
            description="The paying manager account (digits; dashes are stripped). "
            "Required when customer_ids is empty.",
        ),
        th.Property(
            "customer_ids",
            th.ArrayType(th.StringType),
            description="Accounts to read. Empty: every non-manager account under "
            "login_customer_id that is enabled or stopped serving (its final invoices).",
        ),
        th.Property(
            "lookback_months",
            th.IntegerType,
            default=DEFAULT_LOOKBACK_MONTHS,
            description="Closed issue months re-read on every run, up to each billing "
            "setup's bookmark, for late corrections and rebills; the month in progress is "
            "always read.",
        ),
        th.Property(
            "include_granular_details",
            th.BooleanType,
            default=False,
            description="Ask for campaign, regulatory cost and adjustment summaries.",
        ),
        th.Property(
            "download_pdfs",
            th.BooleanType,
            default=False,
            description="Fetch each invoice PDF and keep it as `documents` says.",
        ),
        th.Property(
            "endpoint",
            th.StringType,
            description=f"gRPC endpoint host:port. Default: {DEFAULT_ENDPOINT}.",
        ),
        th.Property(
            "token_uri",
            th.StringType,
            description=f"OAuth token endpoint. Default: {DEFAULT_TOKEN_URI}.",
        ),
        th.Property(
            "root_certificates_file",
            th.StringType,
            description="PEM file of CA certificates to trust for `endpoint` (a proxy, "
            "or the emulator's self-signed certificate). Default: the system's.",
        ),
    ),
    description="Google Ads invoices (InvoiceService) for every serving account you can reach.",
)


@dataclass(frozen=True)
class GoogleAdsSettings:
    client_id: str
    client_secret: str
    refresh_token: str
    developer_token: str | None
    login_customer_id: str | None
    customer_ids: tuple[str, ...]
    lookback_months: int
    include_granular_details: bool
    download_pdfs: bool
    endpoint: str
    token_uri: str
    root_certificates_file: str | None

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> GoogleAdsSettings:
        validate_section(section)
        login = section.get("login_customer_id")
        return cls(
            client_id=str(section["client_id"]).strip(),
            client_secret=str(section["client_secret"]),
            refresh_token=str(section["refresh_token"]),
            developer_token=section.get("developer_token") or None,
            login_customer_id=customer_id(f"{KEY}.login_customer_id", login) if login else None,
            customer_ids=tuple(
                customer_id(f"{KEY}.customer_ids", value)
                for value in section.get("customer_ids") or []
            ),
            lookback_months=int(section.get("lookback_months", DEFAULT_LOOKBACK_MONTHS)),
            include_granular_details=bool(section.get("include_granular_details", False)),
            download_pdfs=bool(section.get("download_pdfs", False)),
            endpoint=section.get("endpoint") or DEFAULT_ENDPOINT,
            token_uri=section.get("token_uri") or DEFAULT_TOKEN_URI,
            root_certificates_file=section.get("root_certificates_file") or None,
        )


def customer_id(setting: str, value: Any) -> str:
    """Google shows ids as 123-456-7890; the API wants 1234567890."""
    digits = str(value).strip().replace("-", "") if isinstance(value, (str, int)) else ""
    if not _CUSTOMER_ID.match(digits):
        raise ConfigError(
            setting, f"expected a 10-digit customer id like 123-456-7890, got {value!r}"
        )
    return digits


def validate_section(section: Mapping[str, Any]) -> None:
    if not isinstance(section, Mapping):
        raise ConfigError(KEY, "expected an object")
    require(section, KEY, "client_id", "client_secret", "refresh_token")
    login = section.get("login_customer_id")
    if login:
        customer_id(f"{KEY}.login_customer_id", login)
    ids = section.get("customer_ids") or []
    if not isinstance(ids, list):
        raise ConfigError(f"{KEY}.customer_ids", "expected a list of customer ids")
    for value in ids:
        customer_id(f"{KEY}.customer_ids", value)
    if not ids and not login:
        raise ConfigError(
            f"{KEY}.login_customer_id",
            "is required when customer_ids is empty (the paying manager whose accounts to read)",
        )
    check_int(KEY, "lookback_months", section.get("lookback_months"), minimum=0)
    token_uri = section.get("token_uri")
    if token_uri and not str(token_uri).startswith(("https://", "http://")):
        raise ConfigError(f"{KEY}.token_uri", f"expected an http(s) URL, got {token_uri!r}")
    endpoint = section.get("endpoint")
    if endpoint is not None and (not isinstance(endpoint, str) or "/" in endpoint or not endpoint):
        raise ConfigError(f"{KEY}.endpoint", f"expected host or host:port, got {endpoint!r}")
    roots = section.get("root_certificates_file")
    if roots and not Path(roots).is_file():
        raise ConfigError(f"{KEY}.root_certificates_file", f"no such file: {roots!r}")


def validate(section: Mapping[str, Any], full_config: Mapping[str, Any]) -> None:
    """The Source hook: every check that needs no network call."""
    del full_config  # start_date, end_date and max_workers are checked by the tap
    validate_section(section)
