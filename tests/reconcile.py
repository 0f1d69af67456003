"""The invariant behind the `invoices` table: it reconciles to the cent with its sources.

For one platform, the sum of `invoices.total_amount` per currency equals the sum of
the source stream's own invoice totals (credit memos negative on both sides), and
every source record is in `invoices` exactly once (by its `source_key`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from tests.tap_runner import TapRun

Signed = Callable[[Mapping[str, Any]], Decimal | None]


def sums_by_currency(
    rows: list[dict[str, Any]], currency: str, total: Signed
) -> dict[str | None, Decimal]:
    sums: dict[str | None, Decimal] = defaultdict(Decimal)
    for row in rows:
        value = total(row)
        if value is not None:
            sums[row.get(currency)] += Decimal(value)
    return dict(sums)


def assert_reconciles(
    run: TapRun,
    platform: str,
    source_stream: str,
    *,
    source_total: Signed,
    source_currency: str = "currency",
    source_keys: tuple[str, ...],
) -> dict[str | None, Decimal]:
    """Checks the invariant; returns the per-currency sums for further assertions."""
    source = run.records.get(source_stream, [])
    rows = [r for r in run.records.get("invoices", []) if r["platform"] == platform]
    expected_keys = Counter(tuple(str(r[k]) for k in source_keys) for r in source)
    found_keys = Counter(
        tuple(r["source_key"][k] for k in source_keys)
        for r in rows
        if r["source_stream"] == source_stream
    )
    assert found_keys == expected_keys, "a source record is missing from or repeated in invoices"
    invoice_sums = sums_by_currency(rows, "currency", lambda r: r["total_amount"])
    source_sums = sums_by_currency(source, source_currency, source_total)
    assert invoice_sums == source_sums, (platform, invoice_sums, source_sums)
    return invoice_sums


def line_item_sums(
    transactions: list[dict[str, Any]], field: str = "total_amount"
) -> dict[str | None, Decimal]:
    """Per currency, the sum of one money field over every line item of the transactions.

    For a source whose documents carry no amounts of their own (Amazon Business): the
    `invoices` rows, credit memos negative, must add up to exactly this.
    """
    sums: dict[str | None, Decimal] = defaultdict(Decimal)
    for transaction in transactions:
        for line in transaction.get("line_items") or []:
            money = line.get(field)
            if money and money.get("amount") is not None:
                sums[money.get("currency_code")] += Decimal(money["amount"])
    return dict(sums)
