"""Graph `OmegaCustomerTrx` invoices and `InvoiceCampaignNew` lines -> records; their schemas.

Amounts: Graph writes them as strings ("4210.37"); each becomes an exact decimal
through `parse_plain_decimal`. `amount_due` also carries integer minor units:
`amount_in_hundredths` (x100 whatever the currency) and `offsetted_amount` (x the
currency's offset: 100 for USD, 1 for JPY; CLDR's digits via Babel). Both are
checked against the decimal; a disagreement raises `AmountError` and the caller
fails that invoice. A wrong number loaded silently is worse than a failed run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from babel.numbers import get_currency_precision
from singer_sdk import typing as th

from tap_ad_invoices.documents import PDF_PROPERTIES
from tap_ad_invoices.invoices import CREDIT_MEMO, INVOICE, signed, status_name
from tap_ad_invoices.money import AmountError, parse_plain_decimal
from tap_ad_invoices.redaction import strip_query

PLATFORM = "meta"
DEBIT_MEMO, PRO_FORMA = "debit_memo", "pro_forma"
PRO_FORMA_STATUS = "missing: a pro forma asks for prepayment, it is not a bill (see meta_invoices)"
DOCUMENT_KINDS = {"INV": INVOICE, "CM": CREDIT_MEMO, "DM": DEBIT_MEMO, "PRO_FORMA": PRO_FORMA}

CURRENCY_AMOUNT = th.ObjectType(
    th.Property("amount", th.NumberType, description="Exact decimal."),
    th.Property("amount_in_hundredths", th.IntegerType),
    th.Property("currency", th.StringType),
    th.Property("offsetted_amount", th.IntegerType, description="Minor units (x100 USD, x1 JPY)."),
)
BILLED_AMOUNT_DETAILS = th.ObjectType(
    th.Property("currency", th.StringType),
    th.Property("net_amount", th.NumberType),
    th.Property("tax_amount", th.NumberType),
    th.Property("total_amount", th.NumberType),
)

INVOICE_SCHEMA = th.PropertiesList(
    th.Property("business_id", th.StringType, required=True),
    th.Property("id", th.StringType, required=True, description="Graph node id."),
    th.Property("invoice_id", th.StringType, description="The printed invoice number."),
    th.Property("type", th.StringType, description="INV, CM, DM or PRO_FORMA."),
    th.Property(
        "document_kind",
        th.StringType,
        required=True,
        description="invoice, credit_memo, debit_memo or pro_forma.",
    ),
    th.Property("invoice_type", th.StringType),
    th.Property("amount", th.NumberType, description="Exact decimal, as Graph signs it."),
    th.Property("amount_due", CURRENCY_AMOUNT),
    th.Property("billed_amount_details", BILLED_AMOUNT_DETAILS),
    th.Property("billing_period", th.StringType),
    th.Property("currency", th.StringType),
    th.Property("invoice_date", th.DateTimeType),
    th.Property("issue_date", th.DateType, description="invoice_date's day, as Graph wrote it."),
    th.Property("due_date", th.DateTimeType),
    th.Property("payment_status", th.StringType),
    th.Property("payment_term", th.StringType),
    th.Property("liability_type", th.StringType),
    th.Property("entity", th.StringType, description="The Meta entity that invoices."),
    th.Property("advertiser_name", th.StringType),
    th.Property("ad_account_ids", th.ArrayType(th.StringType)),
    th.Property("campaign", th.ObjectType(additional_properties=True)),
    th.Property(
        "download_uri", th.StringType, description="Graph URL without its query; needs the token."
    ),
    th.Property(
        "cdn_download_uri",
        th.StringType,
        description="Direct link without its query string (the query is a credential).",
    ),
    *PDF_PROPERTIES,
).to_dict()

CAMPAIGN_SCHEMA = th.PropertiesList(
    th.Property("invoice_node_id", th.StringType, required=True, description="meta_invoices.id"),
    th.Property("line_number", th.IntegerType, required=True, description="1-based, API order."),
    th.Property("business_id", th.StringType, required=True),
    th.Property("invoice_id", th.StringType, description="The printed invoice number."),
    th.Property("issue_date", th.DateType, description="The invoice's issue date."),
    th.Property("currency", th.StringType),
    th.Property("id", th.StringType),
    th.Property("campaign_id", th.StringType),
    th.Property("campaign_name", th.StringType),
    th.Property("ad_account_id", th.StringType),
    th.Property("description", th.StringType),
    th.Property("amount", th.NumberType, description="Exact decimal."),
    th.Property("impressions", th.IntegerType),
    th.Property("clicks", th.IntegerType),
    th.Property("conversions", th.IntegerType),
    th.Property("start_date", th.DateType),
    th.Property("end_date", th.DateType),
).to_dict()


def graph_datetime(value: Any) -> str | None:
    """2026-11-02T07:00:00+0000 (Graph's form) -> ISO 8601 with a colon in the offset."""
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value)).isoformat()


def _whole(value: Any, what: str) -> int | None:
    number = parse_plain_decimal(value)
    if number is None:
        return None
    if number != number.to_integral_value():
        raise AmountError(f"{what}: {value!r} is not a whole number of minor units")
    return int(number)


def _currency_amount(raw: Mapping[str, Any] | None, currency: str | None) -> dict[str, Any] | None:
    """CurrencyAmount, with its integer minor units checked against its decimal amount."""
    if not raw:
        return None
    amount = parse_plain_decimal(raw.get("amount"))
    hundredths = _whole(raw.get("amount_in_hundredths"), "amount_due.amount_in_hundredths")
    offsetted = _whole(raw.get("offsetted_amount"), "amount_due.offsetted_amount")
    code = raw.get("currency") or currency
    if currency and raw.get("currency") and raw["currency"] != currency:
        raise AmountError(f"amount_due is in {raw['currency']}, the invoice in {currency}")
    if amount is not None and hundredths is not None and Decimal(hundredths) != amount * 100:
        raise AmountError(
            f"amount_due.amount_in_hundredths {hundredths} disagrees with amount {amount}"
        )
    if amount is not None and offsetted is not None and code:
        scale = 10 ** get_currency_precision(code)
        if Decimal(offsetted) != amount * scale:
            raise AmountError(
                f"amount_due.offsetted_amount {offsetted} disagrees with amount {amount} "
                f"({code} has {scale} minor units)"
            )
    return {
        "amount": amount,
        "amount_in_hundredths": hundredths,
        "currency": code,
        "offsetted_amount": offsetted,
    }


def _billed(raw: Mapping[str, Any] | None, currency: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    if currency and raw.get("currency") and raw["currency"] != currency:
        raise AmountError(
            f"billed_amount_details is in {raw['currency']}, the invoice in {currency}"
        )
    return {
        "currency": raw.get("currency") or currency,
        "net_amount": parse_plain_decimal(raw.get("net_amount")),
        "tax_amount": parse_plain_decimal(raw.get("tax_amount")),
        "total_amount": parse_plain_decimal(raw.get("total_amount")),
    }


def document_kind(kind: Any) -> str:
    try:
        return DOCUMENT_KINDS[str(kind)]
    except KeyError:
        raise ValueError(f"unknown invoice type {kind!r} (known: INV, CM, DM, PRO_FORMA)") from None


def invoice_record(raw: Mapping[str, Any], business_id: str) -> dict[str, Any]:
    """One meta_invoices record; ValueError (AmountError among them) when it cannot be exact."""
    currency = raw.get("currency")
    invoice_date = graph_datetime(raw.get("invoice_date"))
    campaign = raw.get("campaign")
    cdn = raw.get("cdn_download_uri")
    return {
        "business_id": business_id,
        "id": str(raw["id"]),
        "invoice_id": raw.get("invoice_id"),
        "type": raw.get("type"),
        "document_kind": document_kind(raw.get("type")),
        "invoice_type": raw.get("invoice_type"),
        "amount": parse_plain_decimal(raw.get("amount")),
        "amount_due": _currency_amount(raw.get("amount_due"), currency),
        "billed_amount_details": _billed(raw.get("billed_amount_details"), currency),
        "billing_period": raw.get("billing_period"),
        "currency": currency,
        "invoice_date": invoice_date,
        "issue_date": invoice_date[:10] if invoice_date else None,
        "due_date": graph_datetime(raw.get("due_date")),
        "payment_status": raw.get("payment_status"),
        "payment_term": raw.get("payment_term"),
        "liability_type": raw.get("liability_type"),
        "entity": raw.get("entity"),
        "advertiser_name": raw.get("advertiser_name"),
        "ad_account_ids": [str(a) for a in raw.get("ad_account_ids") or []],
        "campaign": campaign
        if isinstance(campaign, dict) or campaign is None
        else {"id": campaign},
        # Graph copies a query into its URLs, access_token included if a client sent it there.
        "download_uri": strip_query(raw["download_uri"]) if raw.get("download_uri") else None,
        "cdn_download_uri": strip_query(cdn) if cdn else None,
    }


def campaign_records(
    lines: Sequence[Mapping[str, Any]], invoice: Mapping[str, Any]
) -> list[dict[str, Any]]:
    return [
        {
            "invoice_node_id": invoice["id"],
            "line_number": number,
            "business_id": invoice["business_id"],
            "invoice_id": invoice.get("invoice_id"),
            "issue_date": invoice.get("issue_date"),
            "currency": invoice.get("currency"),
            "id": _text(line.get("id")),
            "campaign_id": _text(line.get("campaign_id")),
            "campaign_name": line.get("campaign_name"),
            "ad_account_id": _text(line.get("ad_account_id")),
            "description": line.get("description"),
            "amount": parse_plain_decimal(line.get("amount")),
            "impressions": _whole(line.get("impressions"), "impressions"),
            "clicks": _whole(line.get("clicks"), "clicks"),
            "conversions": _whole(line.get("conversions"), "conversions"),
            "start_date": (line.get("start_date") or "")[:10] or None,
            "end_date": (line.get("end_date") or "")[:10] or None,
        }
        for number, line in enumerate(lines, start=1)
    ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _period(billing_period: Any) -> tuple[str | None, str | None]:
    """The billing period's first and last day, when Graph wrote it as a date."""
    try:
        first = dt.date.fromisoformat(str(billing_period)[:10]).replace(day=1)
    except ValueError:
        return None, None
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return first.isoformat(), (following - dt.timedelta(days=1)).isoformat()


def _signed(amount: Decimal | None, kind: str) -> Decimal | None:
    """Credit memos negative, invoices and debit memos positive, pro formas no amount."""
    if amount is None or kind == PRO_FORMA:
        return None
    if kind == DEBIT_MEMO:
        return abs(amount)
    return signed(amount, kind)  # type: ignore[return-value]


def to_invoice(record: Mapping[str, Any]) -> dict[str, Any]:
    """A meta_invoices record as a row of the normalized `invoices` stream.

    A pro forma is a quote for prepayment, not a bill: it is kept, marked
    `pro_forma`, with null amounts so no sum over `invoices` counts it.
    """
    kind = record["document_kind"]
    billed = record.get("billed_amount_details") or {}
    start, end = _period(record.get("billing_period"))
    due = record.get("due_date")
    return {
        "platform": PLATFORM,
        "account_id": record["business_id"],
        "account_name": record.get("advertiser_name"),
        "invoice_number": record.get("invoice_id") or record["id"],
        "document_kind": kind,
        "issue_date": record.get("issue_date"),
        "due_date": due[:10] if due else None,
        "service_start_date": start,
        "service_end_date": end,
        "currency": record.get("currency"),
        "subtotal_amount": _signed(billed.get("net_amount"), kind),
        "tax_amount": _signed(billed.get("tax_amount"), kind),
        "total_amount": _signed(
            billed.get("total_amount")
            if billed.get("total_amount") is not None
            else record.get("amount"),
            kind,
        ),
        # None: `invoices` writes as_reported (or missing, when there is no total).
        "amount_status": PRO_FORMA_STATUS if kind == PRO_FORMA else None,
        "status": status_name(record.get("payment_status")),
        "purchase_order": None,  # Graph has no purchase order field on invoices
        "document_uri": record.get("pdf_uri"),
        "document_sha256": record.get("pdf_sha256"),
    }
