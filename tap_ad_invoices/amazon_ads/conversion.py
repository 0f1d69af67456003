"""Billing statement CSV rows -> records.

Amazon does not publish the statement's column names, so every column is kept
under its original header (`columns`), and the columns we recognise by name
(after snake_casing) also fill typed fields. A column Amazon adds later lands
in `columns` without any code change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tap_ad_invoices.invoices import CREDIT_MEMO, INVOICE, signed, status_name
from tap_ad_invoices.money import COMMA_DECIMAL_LOCALES, parse_amount

LOGGER = logging.getLogger("tap_ad_invoices.amazon_ads")

# typed field -> snake_cased headers that mean it (first match wins)
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("invoice_number", "invoice_id", "invoice_no", "invoice"),
    "invoice_status": ("invoice_status", "status", "payment_status"),
    "document_type": ("document_type", "invoice_type", "type"),
    "country_code": ("country", "country_code", "marketplace"),
    "currency": ("currency", "currency_code", "invoice_currency"),
    "purchase_order": ("purchase_order", "purchase_order_number", "po_number", "po"),
    "advertiser_name": ("advertiser_name", "advertiser", "account_name"),
    "payment_method": ("payment_method",),
}
DATE_FIELDS: dict[str, tuple[str, ...]] = {
    "invoice_date": ("invoice_date", "issue_date", "invoice_issue_date"),
    "due_date": ("due_date", "payment_due_date"),
    "service_start_date": (
        "billing_period_start",
        "service_start_date",
        "from_date",
        "period_start",
    ),
    "service_end_date": ("billing_period_end", "service_end_date", "to_date", "period_end"),
}
AMOUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "billable_amount": ("billable_amount", "amount", "subtotal", "net_amount"),
    "tax_amount": ("tax_amount", "tax", "taxes"),
    "total_amount": ("total_amount", "total", "invoice_amount", "gross_amount"),
    "amount_paid": ("amount_paid", "paid_amount"),
    "remaining_amount": ("remaining_amount", "amount_due", "balance_due", "outstanding_amount"),
}


def snake_case(header: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", header.strip().lower()).strip("_")


class StatementColumns:
    """Which CSV column feeds which typed field, decided once per statement header."""

    def __init__(self, header: list[str], locale: str) -> None:
        self.header = header
        self.decimal_comma = locale in COMMA_DECIMAL_LOCALES
        self.us_dates = locale.endswith("_US")
        normalized = [snake_case(h) for h in header]
        self.positions: dict[str, int] = {}
        for table in (TEXT_FIELDS, DATE_FIELDS, AMOUNT_FIELDS):
            for field, names in table.items():
                for name in names:
                    if name in normalized:
                        self.positions[field] = normalized.index(name)
                        break
        self.unrecognised = [h for i, h in enumerate(header) if i not in self.positions.values()]
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
        formats = ["%Y-%m-%d", "%Y%m%d", "%m/%d/%Y" if self.us_dates else "%d/%m/%Y", "%d.%m.%Y"]
        for fmt in formats:
            try:
                return dt.datetime.strptime(text[:10] if "-" in text else text, fmt).date()
            except ValueError:
                continue
        self._warn_once(field, f"unparseable date {text!r} in column {field}; kept in columns")
        return None

    def parse_amount(self, text: str | None, field: str) -> Decimal | None:
        try:
            return parse_amount(text, decimal_comma=self.decimal_comma)
        except ValueError:
            self._warn_once(
                field, f"unparseable amount {text!r} in column {field}; kept in columns"
            )
            return None

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
    for field in AMOUNT_FIELDS:
        record[field] = columns.parse_amount(columns.cell(cells, field), field)
    record["invoice_key"] = invoice_key(record, columns.header, cells)
    return record


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
        "invoice_number": record.get("invoice_number") or record["invoice_key"],
        "document_kind": kind,
        "issue_date": record.get("invoice_date"),
        "due_date": record.get("due_date"),
        "service_start_date": record.get("service_start_date"),
        "service_end_date": record.get("service_end_date"),
        "currency": record.get("currency"),
        "subtotal_amount": signed(record.get("billable_amount"), kind),
        "tax_amount": signed(record.get("tax_amount"), kind),
        "total_amount": signed(total, kind),
        "status": status_name(record.get("invoice_status")),
        "purchase_order": record.get("purchase_order"),
        "document_uri": None,
        "document_sha256": None,
    }
