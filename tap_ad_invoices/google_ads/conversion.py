"""Invoice protos -> records, and the record schema, both read off the proto descriptor.

Walking the descriptor keeps "every Invoice field" true by construction: a
field Google adds to the proto shows up in the schema and the records alike.
Field names are the proto's snake_case (`type_`, renamed by the generator to
dodge a Python builtin, is written `type`). Enums are written by name. Every
`*_micros` integer (int64 in the proto, a string in Google's JSON) is kept as an
integer, and beside it, without the suffix, the exact decimal amount.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from decimal import Decimal
from importlib import resources
from typing import TYPE_CHECKING, Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from singer_sdk import typing as th

from tap_ad_invoices.documents import PDF_PROPERTIES
from tap_ad_invoices.invoices import CREDIT_MEMO, INVOICE, signed
from tap_ad_invoices.money import from_micros

if TYPE_CHECKING:
    from google.protobuf.message import Message

MICROS_SUFFIX = "_micros"
# The schema as generated from the proto, shipped so that discovery and every run that
# does not sync Google skip the google-ads import (~0.8 s, ~70 MB).
# `python scripts/update_google_schema.py` rewrites it; a test keeps it current.
SCHEMA_FILE = "invoice_schema.json"


def invoice_descriptor() -> Descriptor:
    from google.ads.googleads.v26.resources.types.invoice import Invoice

    return Invoice.pb().DESCRIPTOR


_INTEGER_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SINT32,
}


def field_name(descriptor: FieldDescriptor) -> str:
    return descriptor.name.rstrip("_")


def message_to_dict(message: Message) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for descriptor in message.DESCRIPTOR.fields:
        name = field_name(descriptor)
        raw = getattr(message, descriptor.name)
        value: Any
        if descriptor.is_repeated:
            value = [_scalar(descriptor, item) for item in raw]
        elif descriptor.has_presence and not message.HasField(descriptor.name):
            value = None
        else:
            value = _scalar(descriptor, raw)
        record[name] = value
        if name.endswith(MICROS_SUFFIX) and not descriptor.is_repeated:
            record[name[: -len(MICROS_SUFFIX)]] = from_micros(value)
    return record


def _scalar(descriptor: FieldDescriptor, value: Any) -> Any:
    if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value)
    if descriptor.type == FieldDescriptor.TYPE_ENUM:
        enum_value = descriptor.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else str(value)
    if descriptor.type in _INTEGER_TYPES:
        return int(value)
    return value


def message_properties(descriptor: Descriptor) -> list[th.Property]:
    properties: list[th.Property] = []
    for field in descriptor.fields:
        name = field_name(field)
        kind = _field_type(field)
        if field.is_repeated:
            properties.append(th.Property(name, th.ArrayType(kind)))
            continue
        properties.append(th.Property(name, kind))
        if name.endswith(MICROS_SUFFIX):
            properties.append(
                th.Property(
                    name[: -len(MICROS_SUFFIX)],
                    th.NumberType,
                    description=f"{name} / 1,000,000, exact.",
                )
            )
    return properties


def _field_type(field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return th.ObjectType(*message_properties(field.message_type))
    if field.type in _INTEGER_TYPES:
        return th.IntegerType
    if field.type == FieldDescriptor.TYPE_BOOL:
        return th.BooleanType
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return th.NumberType
    if field.name.endswith("_date"):  # the API's dates are YYYY-MM-DD strings
        return th.DateType
    return th.StringType


def invoice_record(
    invoice: Message, *, customer_id: str, login_customer_id: str | None, issue_month: str
) -> dict[str, Any]:
    record = message_to_dict(invoice)
    record.update(
        customer_id=customer_id, login_customer_id=login_customer_id, issue_month=issue_month
    )
    return record


def amounts(record: dict[str, Any]) -> list[tuple[str, int | None, Decimal | None]]:
    """Every (path, micros, decimal) pair of a record, nested ones included (for checks)."""
    found: list[tuple[str, int | None, Decimal | None]] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key.endswith(MICROS_SUFFIX):
                    found.append((f"{path}{key}", item, value.get(key[: -len(MICROS_SUFFIX)])))
                else:
                    walk(item, f"{path}{key}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path[:-1]}[{index}].")

    walk(record, "")
    return found


EXTRA_PROPERTIES = [
    th.Property(
        "customer_id",
        th.StringType,
        description="Serving account whose ListInvoices "
        "call returned the invoice first (consolidated billing returns it for several).",
    ),
    th.Property("login_customer_id", th.StringType, description="Paying manager used."),
    th.Property("issue_month", th.StringType, description="Issue month asked for, YYYY-MM."),
    *PDF_PROPERTIES,
]


def schema_from_proto() -> dict[str, Any]:
    return th.PropertiesList(*message_properties(invoice_descriptor()), *EXTRA_PROPERTIES).to_dict()


@functools.lru_cache(maxsize=1)
def _shipped_schema() -> str:
    return (resources.files(__package__) / SCHEMA_FILE).read_text(encoding="utf-8")


def invoice_schema() -> dict[str, Any]:
    """The stream's schema, without importing google-ads (see SCHEMA_FILE)."""
    return json.loads(_shipped_schema())  # type: ignore[no-any-return]


def _only(values: list[Any]) -> Any:
    distinct = {v for v in values if v}
    return distinct.pop() if len(distinct) == 1 else None


def to_invoice(record: Mapping[str, Any]) -> dict[str, Any]:
    """A google_ads_invoices record as a row of the normalized `invoices` stream.

    The account is the payments account (Google's "billing account number"): under
    consolidated billing one invoice covers several Google Ads customers.
    """
    kind = CREDIT_MEMO if record.get("type") == "CREDIT_MEMO" else INVOICE
    budgets = record.get("account_budget_summaries") or []
    service = record.get("service_date_range") or {}
    return {
        "platform": "google_ads",
        "account_id": record.get("payments_account_id") or record["customer_id"],
        "account_name": _only([b.get("customer_descriptive_name") for b in budgets]),
        "invoice_number": record["id"],
        "document_kind": kind,
        "issue_date": record.get("issue_date"),
        "due_date": record.get("due_date"),
        "service_start_date": service.get("start_date"),
        "service_end_date": service.get("end_date"),
        "currency": record.get("currency_code"),
        "subtotal_amount": signed(record.get("subtotal_amount"), kind),
        "tax_amount": signed(record.get("tax_amount"), kind),
        "total_amount": signed(record.get("total_amount"), kind),
        "status": None,  # InvoiceService says nothing about payment
        "purchase_order": _only([b.get("purchase_order_number") for b in budgets]),
        "document_uri": record.get("pdf_uri"),
        "document_sha256": record.get("pdf_sha256"),
    }
