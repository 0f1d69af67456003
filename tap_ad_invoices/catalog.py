"""Every stream of every source in the catalog, configured or not.

`meltano select --list --all` and `--discover` on a fresh project (no credentials,
no start_date) must show what the tap offers. A source whose section is missing
contributes its streams as `UnconfiguredStream`s: the same name, schema, keys and
replication key, and nothing to sync. The specs come from the stream classes'
own declarations, so the catalog cannot drift from the streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream

if TYPE_CHECKING:
    from singer_sdk import Tap


@dataclass(frozen=True)
class StreamSpec:
    name: str
    schema: dict[str, Any]
    primary_keys: tuple[str, ...]
    replication_key: str | None
    selected_by_default: bool = True

    @classmethod
    def of(cls, stream_type: type[Stream], schema: dict[str, Any] | None = None) -> StreamSpec:
        """Read a stream class's declarations (`schema` when the class builds it at init)."""
        keys = _declared(stream_type, "primary_keys")
        return cls(
            name=str(_declared(stream_type, "name")),
            schema=dict(schema if schema is not None else _declared(stream_type, "schema")),
            primary_keys=tuple(keys or ()),
            replication_key=_declared(stream_type, "replication_key"),
            selected_by_default=bool(getattr(stream_type, "selected_by_default", True)),
        )


def _declared(stream_type: type[Stream], attribute: str) -> Any:
    """A class-level declaration; None where the class leaves the SDK's property."""
    value = getattr(stream_type, attribute, None)
    return None if isinstance(value, property) else value


class UnconfiguredStream(Stream):
    """A stream of a source that has no config section: listed, and empty when run."""

    def __init__(self, tap: Tap, spec: StreamSpec, source: str) -> None:
        super().__init__(tap, schema=spec.schema, name=spec.name)
        self.primary_keys = list(spec.primary_keys)
        self.replication_key = spec.replication_key
        self.selected_by_default = spec.selected_by_default
        self.source = source

    def _write_schema_message(self) -> None:
        """No SCHEMA either: a target would create an empty table for a source not in use."""

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        self.logger.info(
            "%s: no `%s` section in the config; nothing to sync", self.name, self.source
        )
        return iter(())


def whole_when_flattened(schema: dict[str, Any]) -> dict[str, Any]:
    """Free-form objects (a statement's `columns`, a summary's `raw`) stay one value.

    Their schema lists no properties, only `additionalProperties`. The SDK's
    flattener walks such an object's (empty) properties into nothing: the schema
    loses the column while the records gain `columns__<header>` keys, which the
    target drops. Without the empty `properties` the flattener keeps the object as
    one JSON string column, and unflattened it is still a JSON object (JSONB).
    """
    for prop in (schema.get("properties") or {}).values():
        if prop.get("properties") == {} and "additionalProperties" in prop:
            del prop["properties"]
    return schema
