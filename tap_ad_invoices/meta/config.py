"""The `meta` config section: its schema, its checks, and the parsed settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.settings import check_int, require

KEY = "meta"
DEFAULT_API_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v25.0"  # the current Graph API version (api-facts.md, section 5)
DEFAULT_LOOKBACK_MONTHS = 2
_VERSION = re.compile(r"^v[0-9]+\.[0-9]+$")
_BUSINESS_ID = re.compile(r"^[0-9]+$")

CONFIG_PROPERTY = th.Property(
    KEY,
    th.ObjectType(
        th.Property(
            "access_token",
            th.StringType,
            required=True,
            secret=True,
            description="System-user access token with access to the businesses' invoices.",
        ),
        th.Property(
            "business_ids",
            th.ArrayType(th.StringType),
            required=True,
            description="Business Manager ids (digits) whose monthly invoices to read.",
        ),
        th.Property(
            "api_version",
            th.StringType,
            default=DEFAULT_API_VERSION,
            description="Graph API version in every request path.",
        ),
        th.Property(
            "lookback_months",
            th.IntegerType,
            default=DEFAULT_LOOKBACK_MONTHS,
            description="Months of issue dates re-read before each business's bookmark, "
            "so payment status changes and late credit memos are picked up.",
        ),
        th.Property(
            "download_pdfs",
            th.BooleanType,
            default=True,
            description="Fetch each invoice PDF and keep it as `documents` says.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            description=f"Graph API host (emulator, proxy). Default: {DEFAULT_API_URL}.",
        ),
    ),
    description="Meta (Facebook, Instagram, WhatsApp) monthly invoices of businesses on "
    "monthly invoicing (Graph API business_invoices).",
)


@dataclass(frozen=True)
class MetaSettings:
    access_token: str
    business_ids: tuple[str, ...]
    api_version: str
    lookback_months: int
    download_pdfs: bool
    api_url: str

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> MetaSettings:
        validate_section(section)
        return cls(
            access_token=str(section["access_token"]).strip(),
            business_ids=tuple(str(b).strip() for b in section["business_ids"]),
            api_version=section.get("api_version") or DEFAULT_API_VERSION,
            lookback_months=int(section.get("lookback_months", DEFAULT_LOOKBACK_MONTHS)),
            download_pdfs=bool(section.get("download_pdfs", True)),
            api_url=str(section.get("api_url") or DEFAULT_API_URL).rstrip("/"),
        )


def validate_section(section: Mapping[str, Any]) -> None:
    if not isinstance(section, Mapping):
        raise ConfigError(KEY, "expected an object")
    require(section, KEY, "access_token")
    ids = section.get("business_ids")
    if not isinstance(ids, list) or not ids:
        raise ConfigError(f"{KEY}.business_ids", "expected a non-empty list of business ids")
    for value in ids:
        if not isinstance(value, (str, int)) or not _BUSINESS_ID.match(str(value).strip()):
            raise ConfigError(
                f"{KEY}.business_ids", f"expected digits like 1234567890123456, got {value!r}"
            )
    version = section.get("api_version")
    if version is not None and not (isinstance(version, str) and _VERSION.match(version)):
        raise ConfigError(f"{KEY}.api_version", f"expected a version like v25.0, got {version!r}")
    check_int(KEY, "lookback_months", section.get("lookback_months"), minimum=0)
    url = section.get("api_url")
    if url is not None and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        raise ConfigError(f"{KEY}.api_url", f"expected an http(s) URL, got {url!r}")


def validate(section: Mapping[str, Any], full_config: Mapping[str, Any]) -> None:
    """The Source hook: every check that needs no network call."""
    del full_config  # start_date, end_date and max_workers are checked by the tap
    validate_section(section)
