"""Amazon Ads invoice summaries and billing documents -> records of `amazon_ads_invoices`.

The model describes `status`, `country`, `paymentMethodType`, … as objects
(`{code, value}`) but types several of them as plain strings: both are read.
Amounts arrive as JSON numbers, already parsed as `Decimal` by the HTTP client.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from singer_sdk import typing as th

from tap_ad_invoices.documents import PDF_PROPERTIES, StoredDocument, pdf_fields
from tap_ad_invoices.invoices import CREDIT_MEMO, INVOICE, signed, status_name
from tap_ad_invoices.money import parse_plain_decimal

# The document types asked for; the first one available is the invoice's document.
DOC_TYPES = ("INVOICE", "CREDIT_MEMO")
CREDIT_DOC_TYPES = ("CREDIT_MEMO", "GIS_CREDIT_MEMO")

SCHEMA = th.PropertiesList(
    th.Property("account_id", th.StringType, required=True, description="Global account id."),
    th.Property(
        "region",
        th.StringType,
        description="The API host the summary was read on: NA, EU or FE.",
    ),
    th.Property("invoice_id", th.StringType, required=True, description="Billing document number."),
    th.Property(
        "document_kind",
        th.StringType,
        required=True,
        description="invoice or credit_memo (a CREDIT_MEMO document, or a negative amount due).",
    ),
    th.Property("issued_date", th.DateType),
    th.Property("due_date", th.DateType),
    th.Property("status", th.StringType, description="status.value, as the API writes it."),
    th.Property("status_code", th.StringType),
    th.Property("amount_due", th.NumberType, description="Exact decimal, as the API sends it."),
    th.Property("remaining_amount_due", th.NumberType, description="Exact decimal."),
    th.Property("currency", th.StringType),
    th.Property("country_code", th.StringType),
    th.Property("payment_method_type", th.StringType),
    th.Property("reserve_order_number", th.StringType),
    th.Property("refund_amount", th.NumberType, description="Exact decimal."),
    th.Property("refund_status", th.StringType),
    th.Property("document_type", th.StringType, description="docType of the kept document."),
    *PDF_PROPERTIES,
    th.Property(
        "document_unavailable_reason",
        th.StringType,
        description="Why the API has no document for this invoice (its own words).",
    ),
    th.Property(
        "raw",
        th.ObjectType(additional_properties=True),
        required=True,
        description="The whole summary as the API sent it.",
    ),
).to_dict()


@dataclass(frozen=True)
class DocumentRef:
    doc_type: str
    storage_path: str | None
    reason: str | None  # set when the API lists the document as unavailable


def code_and_value(field: Any) -> tuple[str | None, str | None]:
    """`{code, value}` objects, or the plain strings the model's types also allow."""
    if isinstance(field, Mapping):
        code, value = field.get("code"), field.get("value")
        return (
            str(code) if code is not None else None,
            str(value) if value is not None else None,
        )
    if field is None or field == "":
        return None, None
    return str(field), str(field)


def money(field: Any) -> tuple[Decimal | None, str | None]:
    """(amount, currency) of `{amount, currencyCode}`; amounts stay exact decimals."""
    if not isinstance(field, Mapping) or field.get("amount") is None:
        return None, None
    # A JSON number read as Decimal by the client; floats, NaN and text are refused.
    return parse_plain_decimal(field["amount"]), field.get("currencyCode")


def iso_date(text: Any) -> dt.date | None:
    return dt.date.fromisoformat(str(text)[:10]) if text else None


def pick_document(answer: Mapping[str, Any]) -> DocumentRef | None:
    """The invoice's own document: the first available of DOC_TYPES, else why none is."""
    available = answer.get("availableDocuments") or []
    for doc_type in DOC_TYPES:
        for document in available:
            if document.get("docType") == doc_type and document.get("storagePath"):
                return DocumentRef(doc_type, str(document["storagePath"]), None)
    for document in answer.get("unavailableDocuments") or []:
        if document.get("docType") in DOC_TYPES:
            reason = str(document.get("reason") or "unavailable, no reason given")
            return DocumentRef(str(document["docType"]), None, reason)
    return None


def summary_record(account_id: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """A summary as a record, documents not yet attached."""
    amount_due, currency = money(summary.get("amountDue"))
    remaining, remaining_currency = money(summary.get("remainingAmountDue"))
    details = summary.get("refundDetails")
    refund: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    refund_amount, _ = money(refund.get("amount"))
    status_code, status = code_and_value(summary.get("status"))
    return {
        "account_id": account_id,
        "invoice_id": str(summary["id"]),
        "document_kind": CREDIT_MEMO if amount_due is not None and amount_due < 0 else INVOICE,
        "issued_date": iso_date(summary.get("issuedDate")),
        "due_date": iso_date(summary.get("dueDate")),
        "status": status,
        "status_code": status_code,
        "amount_due": amount_due,
        "remaining_amount_due": remaining,
        "currency": currency or remaining_currency,
        "country_code": code_and_value(summary.get("country"))[0],
        "payment_method_type": code_and_value(summary.get("paymentMethodType"))[0],
        "reserve_order_number": summary.get("reserveOrderNumber") or None,
        "refund_amount": refund_amount,
        "refund_status": code_and_value(refund.get("status"))[1],
        "document_type": None,
        **pdf_fields(None),
        "document_unavailable_reason": None,
        "raw": dict(summary),
    }


def attach_document(
    record: dict[str, Any],
    doc_type: str | None,
    document: StoredDocument | None,
    reason: str | None,
) -> None:
    """The document's fields; a CREDIT_MEMO document makes the record a credit memo."""
    record["document_type"] = doc_type
    record["document_unavailable_reason"] = reason
    if doc_type in CREDIT_DOC_TYPES:
        record["document_kind"] = CREDIT_MEMO
    if document is not None:
        record.update(pdf_fields(document))


def to_invoice(record: Mapping[str, Any]) -> dict[str, Any]:
    """A summary as a row of `invoices`: the amount due is the invoice's total."""
    kind = record["document_kind"]
    return {
        "platform": "amazon_ads",
        "account_id": record["account_id"],
        "invoice_number": record["invoice_id"],
        "document_kind": kind,
        "issue_date": record.get("issued_date"),
        "due_date": record.get("due_date"),
        "currency": record.get("currency"),
        "total_amount": signed(record.get("amount_due"), kind),
        "status": status_name(record.get("status")),
        "document_uri": record.get("pdf_uri"),
        "document_sha256": record.get("pdf_sha256"),
    }


def sort_key(record: Mapping[str, Any]) -> tuple[str, str]:
    issued = record.get("issued_date")
    return (issued.isoformat() if issued else "", record["invoice_id"])
