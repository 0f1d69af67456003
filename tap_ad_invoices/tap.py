"""The tap: config contract, validation, and the streams of the configured sources."""

from __future__ import annotations

import contextlib
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from jsonschema import Draft7Validator
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from tap_ad_invoices import amazon_ads, amazon_business, google_ads, meta
from tap_ad_invoices.documents import DEFAULT_MAX_BYTES, DocumentSettings
from tap_ad_invoices.errors import AuthorizationExpired, ConfigError, FailureLedger
from tap_ad_invoices.invoices import FeedsInvoices, InvoicesStream
from tap_ad_invoices.redaction import install_log_redaction, register_secret
from tap_ad_invoices.settings import check_int, sync_range
from tap_ad_invoices.sources import Source

SOURCES: list[Source] = [
    s for s in (amazon_ads.SOURCE, google_ads.SOURCE, amazon_business.SOURCE, meta.SOURCE) if s
]

DOCUMENTS = th.Property(
    "documents",
    th.ObjectType(
        th.Property(
            "destination",
            th.StringType,
            description="Where invoice PDFs are stored: a local directory or an fsspec URL "
            "(s3://bucket/prefix). Empty: keep metadata only.",
        ),
        th.Property(
            "inline",
            th.BooleanType,
            default=False,
            description="Put each PDF in its record as base64 (content_base64).",
        ),
        th.Property(
            "max_bytes",
            th.IntegerType,
            default=DEFAULT_MAX_BYTES,
            description="Refuse documents larger than this (bytes), before they fill memory.",
        ),
    ),
    description="How invoice documents (PDFs) are kept; used by Google Ads and Amazon Business.",
)


class TapAdInvoices(Tap):
    """Invoices of Amazon Ads, Google Ads and Amazon Business."""

    name = "tap-ad-invoices"
    package_name = "tap-ad-invoices"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "start_date",
            th.DateTimeType,
            required=True,
            description="Earliest invoice date to sync (ISO date or date-time).",
        ),
        th.Property(
            "end_date",
            th.DateTimeType,
            description="Latest invoice date to sync (ISO date or date-time). Default: now.",
        ),
        th.Property(
            "max_workers",
            th.IntegerType,
            default=4,
            description="Concurrent API calls per source.",
        ),
        DOCUMENTS,
        *[source.config_property for source in SOURCES],
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.failures = FailureLedger()
        super().__init__(*args, **kwargs)
        install_log_redaction()

    # -- configuration ------------------------------------------------------------
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        coerce_numbers(self._config, self.config_jsonschema)
        try:
            check_config(dict(self.config))
        except ConfigError as exc:
            if raise_errors:
                raise ConfigValidationError(str(exc), errors=[str(exc)]) from None
            self.logger.warning("Configuration error: %s", exc)
            return [str(exc)]
        return []

    def configured_sources(self) -> list[Source]:
        return [source for source in SOURCES if self.config.get(source.key)]

    def discover_streams(self) -> list[Stream]:
        streams = [
            stream for source in self.configured_sources() for stream in source.streams(self)
        ]
        if not streams:
            return []
        invoices = InvoicesStream(self)
        for stream in streams:
            if isinstance(stream, FeedsInvoices):
                stream.feed(invoices)
        return [*streams, invoices]  # last: it reports after the streams that feed it

    # -- running --------------------------------------------------------------------
    # The SDK marks sync_all final; extending it (not replacing it) is the one place
    # where every stream has run and the exit code can still be chosen.
    def sync_all(self) -> None:  # type: ignore[misc]
        super().sync_all()
        if self.failures.failures:
            self.logger.error(self.failures.summary())
            sys.exit(1)

    @classmethod
    def invoke(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """One line and exit code 1 for errors a user fixes in config or by re-authorising."""
        try:
            super().invoke(*args, **kwargs)
        except ConfigValidationError as exc:
            cls.logger.error("Configuration error: %s", exc.errors[0] if exc.errors else exc)
            sys.exit(1)
        except AuthorizationExpired as exc:
            cls.logger.error("Authorization error: %s", exc)
            sys.exit(1)


def coerce_numbers(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Numbers that arrive as text (Meltano passes settings from .env as strings)."""
    for name, prop in (schema.get("properties") or {}).items():
        value = config.get(name)
        types = prop.get("type") or []
        if isinstance(value, dict):
            coerce_numbers(value, prop)
        elif isinstance(value, str) and ("number" in types or "integer" in types):
            with contextlib.suppress(InvalidOperation):
                number = Decimal(value.strip())
                config[name] = int(number) if number == number.to_integral_value() else number


def check_config(config: dict[str, Any]) -> None:
    """Everything that can be known wrong before a network call; raises ConfigError."""
    for value in config.values():
        if isinstance(value, dict):
            for name, secret in value.items():
                if name.endswith(("secret", "_token")):  # not token_uri / token_url
                    register_secret(secret)
    schema = TapAdInvoices.config_jsonschema
    errors = sorted(Draft7Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    for error in errors:
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = error.message.split("'")[1]
            raise ConfigError(f"{path}.{missing}" if path else missing, "is required")
        if error.validator in ("enum", "type"):
            # Name the expectation, never echo a value (it may be a secret).
            expected = error.validator_value
            raise ConfigError(
                path or "config",
                f"must be {'one of ' if error.validator == 'enum' else 'of type '}{expected}",
            )
        raise ConfigError(path or "config", error.message)
    sync_range(config)
    check_int("", "max_workers", config.get("max_workers"), minimum=1)
    DocumentSettings.from_config(config)
    configured = [source for source in SOURCES if config.get(source.key)]
    if not configured:
        keys = ", ".join(source.key for source in SOURCES)
        raise ConfigError("config", f"no source configured: add at least one of {keys}")
    for source in configured:
        source.validate(config[source.key], config)


cli = TapAdInvoices.cli
