"""Assertions on what landed in PostgreSQL, written once for every test of the suite."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tests.warehouse.expectations import EXPECTATIONS, Key, today_utc
from tests.warehouse.harness import SCHEMA

if TYPE_CHECKING:
    from tests.warehouse.conftest import Pipeline, Warehouse

# Accepted storage per kind. target-postgres 0.8.1 stores an object as jsonb and an array
# of objects as jsonb[] (each element jsonb: unnest() it, or to_jsonb() the whole array).
SQL_TYPES = {"date": {"date"}, "numeric": {"numeric"}, "json": {"jsonb", "jsonb[]"}}


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def key_of(row: dict[str, Any], key_properties: tuple[str, ...]) -> Key:
    return tuple(str(row[k]) for k in key_properties)


def duplicate_keys(
    pipeline: Pipeline, stream: str, key_properties: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Primary keys held by more than one row, asked of the database itself."""
    keys = ", ".join(quoted(k) for k in key_properties)
    return pipeline.query(
        f'SELECT {keys}, count(*) AS copies FROM {SCHEMA}."{stream}" '
        f"GROUP BY {keys} HAVING count(*) > 1"
    )


def snapshot(
    pipeline: Pipeline, stream: str, key_properties: tuple[str, ...]
) -> dict[Key, dict[str, Any]]:
    """The table's rows by key, without the columns that record the run rather than the data."""
    expectation = EXPECTATIONS.get(stream)
    run_columns = expectation.run_columns if expectation else frozenset()
    rows: dict[Key, dict[str, Any]] = {}
    for row in pipeline.rows(stream):
        key = key_of(row, key_properties)
        assert key not in rows, f"{stream}: key {key} stored twice"
        rows[key] = {
            c: v for c, v in row.items() if not c.startswith("_sdc_") and c not in run_columns
        }
    return rows


def warehouse_snapshot(pipeline: Pipeline, warehouse: Warehouse) -> dict[str, dict[Key, Any]]:
    tables = pipeline.tables()
    return {
        stream: snapshot(pipeline, stream, keys)
        for stream, keys in warehouse.streams.items()
        if stream in tables
    }


def snapshot_differences(
    got: dict[str, Any], expected: dict[str, Any], limit: int = 10
) -> list[str]:
    """Readable differences between two warehouse snapshots (stream -> key -> row)."""
    found: list[str] = []
    for stream in sorted(set(got) | set(expected)):
        rows, wanted = got.get(stream, {}), expected.get(stream, {})
        for key in sorted(set(rows) ^ set(wanted)):
            found.append(f"{stream} {key}: {'only after recovery' if key in rows else 'missing'}")
        for key in sorted(set(rows) & set(wanted)):
            for column in sorted(set(rows[key]) | set(wanted[key])):
                if rows[key].get(column) != wanted[key].get(column):
                    found.append(
                        f"{stream} {key} {column}: {rows[key].get(column)!r} != "
                        f"{wanted[key].get(column)!r}"
                    )
    return found[:limit]


def _normalise(value: Any, expected: Any) -> Any:
    if value is None:
        return None
    if isinstance(expected, dt.date):
        return dt.date.fromisoformat(str(value)[:10])
    if isinstance(expected, Decimal):
        return Decimal(str(value))
    if isinstance(expected, int):
        return int(value)
    return value


def assert_matches_truth(
    pipeline: Pipeline, warehouse: Warehouse, stream: str, *, check_types: bool = True
) -> int:
    """The table equals the emulator's truth (as far as it is known); returns the row count.

    Every problem of the stream is collected first, so one failure shows them all.
    `check_types=False` leaves the column types to the full-load test, so a wrong type
    fails one test rather than every test that loads the stream.
    """
    key_properties = warehouse.streams[stream]
    assert key_properties, f"{stream} declares no primary key: upserts cannot work"
    problems: list[str] = []
    if duplicates := duplicate_keys(pipeline, stream, key_properties):
        problems.append(f"{len(duplicates)} duplicate key(s), e.g. {duplicates[:3]}")
    count = pipeline.query(f'SELECT count(*) AS n FROM {SCHEMA}."{stream}"')[0]["n"]
    expectation = EXPECTATIONS.get(stream)
    if expectation is None:
        assert not problems, f"{stream}: " + "; ".join(problems)
        return count

    columns = pipeline.columns(stream)
    strict = expectation.source == "amazon_ads"  # the others' columns are not final yet
    typed = [
        ("date", expectation.date_columns),
        ("numeric", expectation.numeric_columns),
        ("json", expectation.json_columns),
    ]
    for kind, names in typed if check_types else []:
        for name in names:
            if (name in columns or strict) and columns.get(name) not in SQL_TYPES[kind]:
                wanted = " or ".join(sorted(SQL_TYPES[kind]))
                problems.append(f"{name} is stored as {columns.get(name)}, not {wanted}")

    start = dt.date.fromisoformat(str(warehouse.tap_config["start_date"])[:10])
    expected = expectation.rows(warehouse.truth(expectation.source), start, today_utc())
    actual = {key_of(row, key_properties): row for row in pipeline.rows(stream)}
    expected_keys = {tuple(str(k) for k in key) for key in expected}
    if missing := expected_keys - actual.keys():
        problems.append(f"{len(missing)} row(s) of the truth missing, e.g. {sorted(missing)[:3]}")
    if extra := {key for key in actual.keys() - expected_keys if expectation.owns(key)}:
        problems.append(f"{len(extra)} row(s) not in the truth, e.g. {sorted(extra)[:3]}")

    for key, wanted in expected.items():
        row = actual.get(tuple(str(k) for k in key))
        if row is None:
            continue
        for column, value in wanted.items():
            if column not in row and not strict:
                continue
            got = _normalise(row.get(column), value)
            if got != value or type(got) is not type(value):
                problems.append(f"{key} {column}: stored {row.get(column)!r}, truth {value!r}")
    assert not problems, f"{stream}: {len(problems)} problem(s):\n" + "\n".join(problems[:25])
    return count


def accepted_calls(counters: dict[str, int], route: str) -> int:
    """Calls of `route` the emulator served: a call it throttled (429) is retried and
    would otherwise count twice, and throttling depends on timing."""
    return counters.get(route, 0) - counters.get(f"{route}.throttled", 0)
