"""The tap: config contract, validation, and the streams of the configured sources."""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
import sys
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import click
from jsonschema import Draft7Validator
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import (
    CapabilitiesEnum,
    PluginCapabilities,
    TapCapabilities,
)
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.tap_base import CliTestOptionValue

from tap_ad_invoices import amazon_ads, amazon_business, google_ads, meta
from tap_ad_invoices.calls import CALLS
from tap_ad_invoices.catalog import UnconfiguredStream, whole_when_flattened
from tap_ad_invoices.connection import run_connection_test
from tap_ad_invoices.documents import DEFAULT_MAX_BYTES, DocumentSettings, preflight_destination
from tap_ad_invoices.errors import AuthorizationExpired, ConfigError, FailureLedger, describe
from tap_ad_invoices.http import DEFAULT_MAX_RETRY_SECONDS
from tap_ad_invoices.invoices import STREAM as INVOICES_STREAM
from tap_ad_invoices.invoices import FeedsInvoices, InvoicesStream
from tap_ad_invoices.redaction import install_log_redaction, redact, register_secret
from tap_ad_invoices.settings import check_int, check_number, sync_range
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
    description="How invoice documents (PDFs) are kept; used by Amazon Ads, Google Ads, "
    "Amazon Business and Meta.",
)


class TapAdInvoices(Tap):
    """Invoices of Amazon Ads, Google Ads, Amazon Business and Meta, with their PDFs."""

    name = "tap-ad-invoices"
    package_name = "tap-ad-invoices"
    # The SDK's own msgspec writer: the same Singer lines (Decimals as exact JSON numbers),
    # serialized in C. With the default simplejson writer, serialization was half the
    # cost of a statement row (scripts/bench_throughput.py).
    message_writer_class = MsgSpecWriter
    # The SDK's list less BATCH: its bookmark is written before the stream's BATCH
    # message, so a run killed between the two would lose that batch.
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        TapCapabilities.ACTIVATE_VERSION,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

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
        th.Property(
            "max_retry_seconds",
            th.NumberType,
            default=DEFAULT_MAX_RETRY_SECONDS,
            description="How long one API call keeps retrying rate limits, 5xx, dropped "
            "connections and cut-off downloads before its item fails (seconds).",
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
        install_log_redaction()  # before any message can echo a value
        register_secrets(self._config, self.config_jsonschema)
        try:
            coerce_numbers(self._config, self.config_jsonschema)
            check_config(dict(self.config))
        except ConfigError as exc:
            message = redact(str(exc))
            if raise_errors:
                raise ConfigValidationError(message, errors=[message]) from None
            # Only discovery validates without raising: the catalog needs no settings.
            self.logger.info("Not needed for discovery, needed to sync: %s", message)
            return [message]
        for warning in unknown_settings(self._config, self.full_config_schema()):
            self.logger.warning("%s", redact(warning))
        return []

    @classmethod
    def full_config_schema(cls) -> dict[str, Any]:
        """Our settings plus the SDK's built-in ones (stream_maps, flattening_*)."""
        schema = copy.deepcopy(cls.config_jsonschema)
        cls.append_builtin_config(schema)
        return schema

    def configured_sources(self) -> list[Source]:
        return [source for source in SOURCES if self.config.get(source.key)]

    def discover_streams(self) -> list[Stream]:
        configured = self.configured_sources()
        streams = [
            self.guarded(stream, source.key)
            for source in configured
            for stream in source.streams(self)
        ]
        # Every other source's streams too, empty when run: the catalog shows all the tap
        # offers even before any credentials exist (meltano select --list --all).
        streams += [
            UnconfiguredStream(self, spec, source.key)
            for source in SOURCES
            if source not in configured
            for spec in source.catalog()
        ]
        invoices = InvoicesStream(self)
        for stream in streams:
            if isinstance(stream, FeedsInvoices):
                stream.feed(invoices)
        for stream in [*streams, invoices]:
            whole_when_flattened(stream.schema)
        return [*streams, invoices]

    def load_streams(self) -> list[Stream]:  # type: ignore[misc]  # (final: see sync_all)
        """The SDK's streams (sorted by name) in the order they should sync.

        Streams that only read go first and those that create reports (spending their
        quota) after, so a run stopped at its first record, as `meltano config test`
        stops it, creates nothing; `invoices` goes last, reporting after its feeders.
        """
        return sorted(
            super().load_streams(),
            key=lambda s: (s.name == INVOICES_STREAM, getattr(s, "creates_reports", False)),
        )

    def guarded(self, stream: Stream, source: str) -> Stream:
        """The stream, its records read through the failure boundary of its source.

        Done here, once, for every stream of every source: refused credentials fail
        the source (one line, its later streams skipped) and anything else escaping
        the stream's own units fails that stream; either way the other sources run.
        """
        read = stream.get_records

        def get_records(context: Any) -> Iterable[Any]:
            return self.failures.guard(source, stream.name, read(context), stream.logger)

        setattr(stream, "get_records", get_records)  # noqa: B010 (mypy: no method assignment)
        return stream

    # -- running --------------------------------------------------------------------
    # The SDK marks sync_all final; extending it (not replacing it) is the one place
    # where every stream has run and the exit code can still be chosen.
    def sync_all(self) -> None:  # type: ignore[misc]
        # Before any network call: a destination that cannot take a document would
        # otherwise be found only after reports were created and paid for in rate limit.
        preflight_destination(DocumentSettings.from_config(self.config))
        CALLS.reset()
        stopped = False
        try:
            super().sync_all()
        except Exception as exc:
            stopped = True
            self.logger.debug("The run stopped", exc_info=True)
            self.logger.error("The run stopped: %s", describe(exc))
        finally:
            # Whatever ended the run, where its quota went and the items that failed.
            for line in CALLS.summary_lines():
                self.logger.info(line)
            if self.failures.failures:
                self.logger.error(self.failures.summary())
        if stopped or self.failures.failures:
            sys.exit(1)

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """`--test`: one read-only call per configured source (connection.py), not a sync."""
        with cls._config_errors_in_one_line(ctx):
            if value != CliTestOptionValue.All.value:
                super().cb_test(ctx, param, value)  # disabled, or `--test=schema`
                return
            config = ctx.params.get("config", _ConfigInput())
            tap = cls(config=config.config, parse_env_config=config.parse_env)
            sources = [source.key for source in tap.configured_sources()]
            ok = run_connection_test(dict(tap.config), sources)
        ctx.exit(0 if ok else 1)

    @classmethod
    def cb_discover(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """`--discover` needs no credentials and no start_date; a bad setting is one line."""
        with cls._config_errors_in_one_line(ctx):
            super().cb_discover(ctx, param, value)

    @classmethod
    @contextlib.contextmanager
    def _config_errors_in_one_line(cls, ctx: click.Context) -> Iterator[None]:
        # These options run while click parses the command line, before `invoke`
        # could turn an error into one line.
        try:
            yield
        except (ConfigError, ConfigValidationError) as exc:
            errors = getattr(exc, "errors", None) or [str(exc)]
            cls.logger.error("Configuration error: %s", redact(str(errors[0])))
            ctx.exit(1)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:
        """A missing, unreadable or invalid config file is one line, not a traceback."""
        try:
            return super().cb_config(ctx, param, value)
        except Exception as exc:
            files = ", ".join(str(v) for v in value if v != "ENV")
            cls.logger.error("Configuration error: cannot read --config %s: %s", files, exc)
            ctx.exit(1)

    @classmethod
    def invoke(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """One line and exit code 1 for errors a user fixes in config or by re-authorising."""
        try:
            super().invoke(*args, **kwargs)
        except ConfigValidationError as exc:
            message = exc.errors[0] if exc.errors else str(exc)
            cls.logger.error("Configuration error: %s", redact(message))
            sys.exit(1)
        except ConfigError as exc:
            cls.logger.error("Configuration error: %s", redact(str(exc)))
            sys.exit(1)
        except AuthorizationExpired as exc:
            cls.logger.error("Authorization error: %s", redact(str(exc)))
            sys.exit(1)


def coerce_numbers(config: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> None:
    """Numbers that arrive as text (Meltano passes settings from .env as strings)."""
    for name, prop in (schema.get("properties") or {}).items():
        value = config.get(name)
        types = prop.get("type") or []
        setting = f"{prefix}{name}"
        if isinstance(value, dict):
            coerce_numbers(value, prop, f"{setting}.")
        elif _is_list_of_strings(prop) and value is not None:
            config[name] = string_list(value)
        elif isinstance(value, str) and ("number" in types or "integer" in types):
            with contextlib.suppress(InvalidOperation):
                number = Decimal(value.strip())
                if not number.is_finite():
                    raise ConfigError(setting, "must be a finite number (not NaN or Infinity)")
                config[name] = int(number) if number == number.to_integral_value() else number


def _is_list_of_strings(prop: dict[str, Any]) -> bool:
    items = prop.get("items") or {}
    return "array" in (prop.get("type") or []) and "string" in (items.get("type") or [])


def string_list(value: Any) -> Any:
    """Ids as Meltano and YAML hand them over, as the list of strings the schema wants.

    `TAP_..._CUSTOMER_IDS=1111111111,2222222222` arrives as one string, YAML
    `[1234567890]` as integers; both are ids. Anything else is left for the schema
    check to name.
    """
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def check_finite_numbers(value: Any, setting: str = "config") -> None:
    """JSON's NaN and Infinity literals pass the schema's "number" type; refuse them."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite_numbers(item, key if setting == "config" else f"{setting}.{key}")
    elif isinstance(value, list):
        for item in value:
            check_finite_numbers(item, setting)
    elif isinstance(value, (float, Decimal)) and not math.isfinite(value):
        raise ConfigError(setting, "must be a finite number (not NaN or Infinity)")


def register_secrets(config: Any, schema: dict[str, Any]) -> None:
    """Mask every value of every secret setting, at any depth, in every later message."""
    if not isinstance(config, dict):
        return
    for name, prop in (schema.get("properties") or {}).items():
        value = config.get(name)
        if prop.get("secret") or prop.get("writeOnly"):
            register_secret(value)
        elif isinstance(value, dict):
            register_secrets(value, prop)
        elif isinstance(value, list):  # amazon_business.stores: a token in each item
            for item in value:
                register_secrets(item, prop.get("items") or {})


def unknown_settings(config: Any, schema: dict[str, Any], prefix: str = "") -> list[str]:
    """A warning per key the schema does not know, with the closest known name.

    A typo such as `acount_ids` is otherwise silently ignored, and the tap reads
    every discovered account instead of the ones meant.
    """
    known = schema.get("properties")
    # singer_sdk marks every object additionalProperties: true; only a schema there
    # (stream_maps: stream name -> map) makes its keys free-form.
    free_form = isinstance(schema.get("additionalProperties"), dict)
    if not isinstance(config, dict) or not known or free_form:
        return []
    warnings = []
    for key, value in config.items():
        setting = f"{prefix}{key}"
        if key in known:
            warnings += unknown_settings(value, known[key], f"{setting}.")
            continue
        close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
        hint = f"did you mean {prefix}{close[0]}?" if close else "it is not a setting of this tap"
        warnings.append(f"Unknown setting {setting} is ignored: {hint}")
    return warnings


def check_config(config: dict[str, Any]) -> None:
    """Everything that can be known wrong before a network call; raises ConfigError."""
    schema = TapAdInvoices.config_jsonschema
    register_secrets(config, schema)
    check_finite_numbers(config)
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
    check_number("", "max_retry_seconds", config.get("max_retry_seconds"), minimum=0)
    DocumentSettings.from_config(config)
    configured = [source for source in SOURCES if config.get(source.key)]
    if not configured:
        keys = ", ".join(source.key for source in SOURCES)
        raise ConfigError("config", f"no source configured: add at least one of {keys}")
    for source in configured:
        source.validate(config[source.key], config)


cli = TapAdInvoices.cli
