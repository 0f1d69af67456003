"""Billing statement CSV rows -> records.

Amazon does not publish the statement's column names, so every column is kept
under its original header (`columns`), and the columns recognised by meaning
(`columns.py`) also fill typed fields. A column Amazon adds later lands in
`columns` without any code change.

Amounts are read with the statement locale's grammar and the row's currency
(`money.AmountGrammar`); a cell that is not an exact amount fails the statement
(`RowError`, naming the row and column), never a guessed number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tap_ad_invoices.amazon_ads.columns import (
    AMOUNT_FIELDS,
    DATE_FIELDS,
    TEXT_FIELDS,
    ColumnMapping,
    map_columns,
)
from tap_ad_invoices.invoices import CREDIT_MEMO, INVOICE, signed, status_name
from tap_ad_invoices.money import AmountError, AmountGrammar

LOGGER = logging.getLogger("tap_ad_invoices.amazon_ads")

# amount_status values (also in `invoices`): how the total of a row was obtained.
AS_REPORTED = "as_reported"
DERIVED = "derived"  # total = billable + tax, or billable = total - tax: exact sums
NO_TOTAL_COLUMN = "missing: no column maps to total_amount"
EMPTY_TOTAL = "missing: the total cell is empty"


class RowError(ValueError):
    """A cell of a statement row that cannot be read exactly. Fails the statement."""


class StatementColumns:
    """Which CSV column feeds which typed field, decided once per statement header."""

    def __init__(
        self, header: list[str], locale: str, column_map: Mapping[str, str] | None = None
    ) -> None:
        self.header = header
        self.mapping: ColumnMapping = map_columns(header, column_map)
        self.positions = self.mapping.positions
        self.grammar = AmountGrammar.for_locale(locale)
        us_dates = locale.endswith("_US")
        self._date_formats = ["%Y%m%d", "%m/%d/%Y" if us_dates else "%d/%m/%Y", "%d.%m.%Y"]
        self._warned: set[str] = set()

    def cell(self, cells: list[str], field: str) -> str | None:
        index = self.positions.get(field)
        if index is None:
            return None
        value = cells[index].strip()
        return value or None

    def parse_date(self, text: str | None, field: str) -> dt.date | None:
        if text is None:
            return None
        if len(text) >= 10 and text[4] == "-":  # ISO, by far the most common: no strptime
            try:
                return dt.date.fromisoformat(text[:10])
            except ValueError:
                pass
        for fmt in self._date_formats:
            try:
                return dt.datetime.strptime(text[:10] if "-" in text else text, fmt).date()
            except ValueError:
                continue
        self._warn_once(field, f"unparseable date {text!r} in column {field}; kept in columns")
        return None

    def parse_amount(
        self, text: str | None, field: str, currency: str | None, row_number: int
    ) -> Decimal | None:
        try:
            return self.grammar.parse(text, currency)
        except AmountError as exc:
            column = self.header[self.positions[field]]
            raise RowError(f"row {row_number}, column {column!r} ({field}): {exc}") from None

    def _warn_once(self, field: str, message: str) -> None:
        if field not in self._warned:
            self._warned.add(field)
            LOGGER.warning(message)


def row_to_record(
    columns: StatementColumns,
    cells: list[str],
    *,
    account_id: str,
    statement_start: dt.date,
    statement_end: dt.date,
    row_number: int = 0,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "account_id": account_id,
        "statement_start_date": statement_start,
        "statement_end_date": statement_end,
        "columns": dict(zip(columns.header, cells, strict=False)),
    }
    for field in TEXT_FIELDS:
        record[field] = columns.cell(cells, field)
    for field in DATE_FIELDS:
        record[field] = columns.parse_date(columns.cell(cells, field), field)
    currency = record["currency"]
    for field in AMOUNT_FIELDS:
        record[field] = columns.parse_amount(
            columns.cell(cells, field), field, currency, row_number
        )
    record["amount_status"] = complete_amounts(record, columns.mapping)
    record["invoice_key"] = invoice_key(record, columns.header, cells)
    return record


def complete_amounts(record: dict[str, Any], mapping: ColumnMapping) -> str:
    """Fill a missing total or billable amount only where the sum is exact; say how."""
    total, billable, tax = (
        record.get("total_amount"),
        record.get("billable_amount"),
        record.get("tax_amount"),
    )
    if total is not None:
        if billable is None and tax is not None:
            record["billable_amount"] = total - tax
            return DERIVED
        return AS_REPORTED
    if billable is not None and tax is not None:
        record["total_amount"] = billable + tax
        return DERIVED
    return EMPTY_TOTAL if "total_amount" in mapping.positions else NO_TOTAL_COLUMN


def invoice_key(record: Mapping[str, Any], header: list[str], cells: list[str]) -> str:
    """Stable across runs and overlapping windows, so upserts update an invoice in place.

    The invoice number when the statement has one; otherwise a digest of the
    row (then a changed row is a new row: documented in the README).
    """
    if record.get("invoice_number"):
        return str(record["invoice_number"])
    digest = hashlib.sha256(
        "\x1f".join(f"{h}={c}" for h, c in zip(header, cells, strict=False)).encode()
    ).hexdigest()
    return f"row:{digest[:32]}"


def to_invoice(record: Mapping[str, Any]) -> dict[str, Any]:
    """A statement row as a row of the normalized `invoices` stream."""
    document_type = (record.get("document_type") or "").lower()
    total = record.get("total_amount")
    is_credit = "credit" in document_type or (total is not None and total < 0)
    kind = CREDIT_MEMO if is_credit else INVOICE
    return {
        "platform": "amazon_ads",
        "account_id": record["account_id"],
        "account_name": record.get("advertiser_name"),
        # The source stream's key: an invoice number on several rows of one statement
        # is N, N#2, … in both tables, so each row is counted exactly once.
        "invoice_number": record["invoice_key"],
        "document_kind": kind,
        "issue_date": record.get("invoice_date"),
        "due_date": record.get("due_date"),
        "service_start_date": record.get("service_start_date"),
        "service_end_date": record.get("service_end_date"),
        "currency": record.get("currency"),
        "subtotal_amount": signed(record.get("billable_amount"), kind),
        "tax_amount": signed(record.get("tax_amount"), kind),
        "total_amount": signed(total, kind),
        "amount_status": record.get("amount_status"),
        "status": status_name(record.get("invoice_status")),
        "purchase_order": record.get("purchase_order"),
        "document_uri": None,
        "document_sha256": None,
    }
