"""Amazon Business amounts in `invoices`: derived from line items, exact, never partial."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from tap_ad_invoices.emulator import Emulator, Fault
from tap_ad_invoices.emulator import amazon_business as ab_emulator
from tests.reconcile import line_item_sums, sums_by_currency
from tests.tap_runner import run_tap
from tests.test_amazon_business_e2e import DOCS, TXNS, ab, config_for

__all__ = ["ab"]  # the fixture, shared with the end-to-end tests

SUBTOTAL_PARTS = (
    "principalAmount",
    "shippingCharge",
    "regulatoryFee",
    "giftWrappingCharge",
    "discount",
)


def _amount(line: dict[str, Any], name: str) -> Decimal:
    money = line.get(name)
    return Decimal(money["amount"]) if money else Decimal(0)


def expected_amounts(truth: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """From the emulator's own world: (subtotal, tax, total) of each invoice number.

    A charge's lines are on the STANDARD invoice of their shipment, a refund's on the
    credit memo; computed here from the API's line items, not from the tap's records.
    """
    kind_of = {"STANDARD": "CHARGE", "CREDIT_MEMO": "REFUND"}
    out = {}
    for document in truth["documents"]:
        keys = {tuple(k) for k in document["line_items"]}
        lines = [
            line
            for txn in truth["transactions"]
            if txn["transactionType"] == kind_of[document["invoice_type"]]
            for line in txn["transactionLineItems"]
            if (line["orderId"], line["orderLineItemId"], line["shipmentId"]) in keys
        ]
        subtotal = sum((_amount(line, n) for line in lines for n in SUBTOTAL_PARTS), Decimal(0))
        tax = sum((_amount(line, "tax") for line in lines), Decimal(0))
        total = sum((_amount(line, "totalAmount") for line in lines), Decimal(0))
        out[document["invoice_number"]] = (subtotal, tax, total)
    return out


def test_invoices_carry_exact_amounts_that_reconcile_with_line_items(
    ab: Emulator, tmp_path: Path
) -> None:
    run = run_tap(config_for(ab, tmp_path), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    truth = ab.sources["amazon_business"].truth()
    rows = {r["invoice_number"]: r for r in run.records["invoices"]}
    assert set(rows) == {d["invoice_number"] for d in truth["documents"]}

    expected = expected_amounts(truth)
    credit_memos = 0
    for number, row in rows.items():
        subtotal, tax, total = expected[number]
        assert (row["subtotal_amount"], row["tax_amount"], row["total_amount"]) == (
            subtotal,
            tax,
            total,
        ), number
        assert row["amount_status"] == "derived"
        assert row["currency"] == "USD"
        assert row["subtotal_amount"] + row["tax_amount"] == row["total_amount"]
        if row["document_kind"] == "credit_memo":
            credit_memos += 1
            assert row["total_amount"] < 0
        else:
            assert row["total_amount"] > 0
        # Issue date: the day of the invoice details' invoiceDate, typed as a date.
        assert dt.date.fromisoformat(row["issue_date"])
    assert credit_memos > 0

    documents = run.records[DOCS]
    assert all(len(d["invoice_date"]) == 10 for d in documents)  # a date, not a timestamp
    assert {d["invoice_date"] for d in documents} == {r["issue_date"] for r in rows.values()}

    # The invariant, per currency: invoices add up to the transactions' line items.
    parts = {
        "subtotal_amount": (
            "principal_amount",
            "shipping_charge",
            "regulatory_fee",
            "gift_wrapping_charge",
            "discount",
        ),
        "tax_amount": ("tax",),
        "total_amount": ("total_amount",),
    }
    for field, line_fields in parts.items():
        line_sums: dict[str | None, Decimal] = {}
        for line_field in line_fields:
            for currency, value in line_item_sums(run.records[TXNS], line_field).items():
                line_sums[currency] = line_sums.get(currency, Decimal(0)) + value
        invoice_sums = sums_by_currency(list(rows.values()), "currency", lambda r, f=field: r[f])
        assert invoice_sums == line_sums != {}, field


def test_unread_lines_leave_amounts_null_with_the_reason(ab: Emulator, tmp_path: Path) -> None:
    # Invoice details of every line item fail: which documents a line belongs to is
    # then unknown, and no document of those orders may show a partial sum.
    ab.add_fault(Fault(ab_emulator.ROUTE_INVOICES, kind="status", status=400, count=1000))
    run = run_tap(config_for(ab, tmp_path), tmp_path / "run")
    assert run.returncode == 1
    rows = run.records["invoices"]
    assert rows  # documents named by their transactions are still delivered
    for row in rows:
        assert row["total_amount"] is None and row["subtotal_amount"] is None
        assert row["amount_status"] == "missing: invoice details of some of its orders failed"
