"""Config parsing shared by the sources: dates, regions, one-line errors.

The SDK's JSON-schema validation ignores `format`, so "yesterday" would pass
and crash mid-sync; everything here is checked before any network call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.http import DEFAULT_MAX_RETRY_SECONDS, RetryPolicy


def parse_date_setting(name: str, value: Any) -> dt.datetime:
    """An ISO date or date-time, as an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, f"expected an ISO date like 2025-01-31, got {value!r}")
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            name, f"expected an ISO date like 2025-01-31 or 2025-01-31T00:00:00Z, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def require(section: Mapping[str, Any], prefix: str, *keys: str) -> None:
    for key in keys:
        value = section.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ConfigError(_name(prefix, key), "is required")


def _name(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def check_choice(prefix: str, key: str, value: Any, choices: Iterable[str]) -> None:
    options = list(choices)
    if value not in options:
        raise ConfigError(_name(prefix, key), f"{value!r} is not one of {', '.join(options)}")


def check_int(prefix: str, key: str, value: Any, minimum: int = 0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(_name(prefix, key), f"expected an integer >= {minimum}, got {value!r}")


def check_number(prefix: str, key: str, value: Any, minimum: float = 0) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)) or value < minimum:
        raise ConfigError(_name(prefix, key), f"expected a number >= {minimum}, got {value!r}")


def sync_range(config: Mapping[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """(start_date, end_date) of the run; end_date defaults to now."""
    start = parse_date_setting("start_date", config.get("start_date"))
    end_value = config.get("end_date")
    end = (
        parse_date_setting("end_date", end_value) if end_value else dt.datetime.now(dt.timezone.utc)
    )
    if end < start:
        raise ConfigError("end_date", f"{end_value!r} is before start_date")
    return start, end


def retry_policy(config: Mapping[str, Any]) -> RetryPolicy:
    """The run's retry policy: how long one API call may keep retrying (`max_retry_seconds`)."""
    value = config.get("max_retry_seconds")
    return RetryPolicy(DEFAULT_MAX_RETRY_SECONDS if value is None else float(value))
