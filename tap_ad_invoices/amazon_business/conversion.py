"""Amazon Business API shapes -> records, and transactions -> the documents to fetch.

Amounts come as strings ({"currencyCode": "USD", "amount": "-2.99"}) and stay
exact decimals; any money field may be null. Anything that is not a plain
decimal ("abc", "12,34", a float) raises, naming the field: the caller fails
the transactions window that holds it rather than load a guessed number.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tap_ad_invoices.documents import StoredDocument
from tap_ad_invoices.money import AmountError, parse_plain_decimal

from .config import INVOICE_KEYS

# invoiceType (invoice details) -> documentType (createReport reportOptions).
DOCUMENT_TYPE_BY_INVOICE_TYPE = {"STANDARD": "Invoice", "CREDIT_MEMO": "Credits"}
# When only the transaction knows the invoice number, its type says which document it is:
# a charge is invoiced, a refund is credited.
DOCUMENT_TYPE_BY_TRANSACTION_TYPE = {
    "CHARGE": "Invoice",
    "REFUND": "Credits",
    "OVERREFUND": "Credits",
}

# The parts of a line item's subtotal: principal + shipping + fees + discounts (negative).
SUBTOTAL_PARTS = (
    "principalAmount",
    "shippingCharge",
    "regulatoryFee",
    "giftWrappingCharge",
    "discount",
)

LINE_ITEM_MONEY = (
    "totalAmount",
    "principalAmount",
    "shippingCharge",
    "regulatoryFee",
    "giftWrappingCharge",
    "discount",
    "tax",
    "unitPrice",
)


class MalformedTransaction(ValueError):
    """A transaction the API sent without a field every record needs, or with a bad value."""


def _decimal(value: Any, field: str) -> Decimal | None:
    # Money.amount is a machine-written decimal string: never the report grammar.
    try:
        return parse_plain_decimal(value)
    except AmountError as exc:
        raise MalformedTransaction(f"{field}: {exc}") from None


def money(value: Mapping[str, Any] | None, field: str = "amount") -> dict[str, Any] | None:
    if not value:
        return None
    return {
        "amount": _decimal(value.get("amount"), f"{field}.amount"),
        "currency_code": value.get("currencyCode"),
    }


def check_transaction(txn: Any) -> None:
    """Refuse a transaction without the keys that identify and bookmark it.

    The model marks no field of Transaction required, but a record without
    transactionId has no primary key and one without feedDate cannot be bookmarked.
    """
    if not isinstance(txn, Mapping):
        raise MalformedTransaction(f"a transaction is not an object: {type(txn).__name__}")
    for name in ("transactionId", "feedDate"):
        if not txn.get(name):
            named = txn.get("transactionId") or f"fed {txn.get('feedDate')}"
            raise MalformedTransaction(f"transaction {named} has no {name}")
    if feed_date(txn) is None:
        raise MalformedTransaction(
            f"transaction {txn['transactionId']} has feedDate {txn['feedDate']!r}, not ISO-8601"
        )


def feed_date(txn: Mapping[str, Any]) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(txn.get("feedDate")).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _person(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not value:
        return None
    return {"id": value.get("id"), "name": value.get("name"), "email": value.get("email")}


def line_item_record(item: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "order_id": item.get("orderId"),
        "order_line_item_id": item.get("orderLineItemId"),
        "shipment_id": item.get("shipmentId"),
        "shipment_date": item.get("shipmentDate"),
        "purchase_order_number": item.get("purchaseOrderNumber"),
        "purchase_order_line_item_id": item.get("purchaseOrderLineItemId"),
        "asin": item.get("asin"),
        "unspsc": item.get("unspsc"),
        "product_title": item.get("productTitle"),
        "item_quantity": item.get("itemQuantity"),
        "tax_rate": _decimal(item.get("taxRate"), "taxRate"),
        "refund_reason": item.get("refundReason"),
        "merchant_legal_name": item.get("merchantLegalName"),
        "budget_id": item.get("budgetId"),
        "business_order_info": dict(item.get("businessOrderInfo") or {}) or None,
    }
    for name in LINE_ITEM_MONEY:
        record[_snake(name)] = money(item.get(name), name)
    return record


def transaction_record(txn: Mapping[str, Any]) -> dict[str, Any]:
    check_transaction(txn)
    try:
        return _transaction_record(txn)
    except MalformedTransaction as exc:
        raise MalformedTransaction(f"transaction {txn['transactionId']}: {exc}") from None


def _transaction_record(txn: Mapping[str, Any]) -> dict[str, Any]:
    amount = txn.get("amount") or {}
    return {
        "transaction_id": txn["transactionId"],
        "transaction_type": txn.get("transactionType"),
        "transaction_date": txn.get("transactionDate"),
        "feed_date": txn["feedDate"],
        "marketplace_id": txn.get("marketplaceId"),
        "invoice_number": txn.get("invoiceNumber"),
        "charge_identifier": txn.get("chargeIdentifier"),
        "amount": _decimal(amount.get("amount"), "amount"),
        "currency_code": amount.get("currencyCode"),
        "ship_tax_rate": _decimal(txn.get("shipTaxRate"), "shipTaxRate"),
        "gift_wrap_tax_rate": _decimal(txn.get("giftWrapTaxRate"), "giftWrapTaxRate"),
        "legal_entity_name": txn.get("legalEntityName"),
        "purchasing_customer_group_name": txn.get("purchasingCustomerGroupName"),
        "payment_instrument_type": txn.get("paymentInstrumentType"),
        "payment_instrument_last4_digits": txn.get("paymentInstrumentLast4Digits"),
        "buyer": _person(txn.get("buyer")),
        "payer": _person(txn.get("payer")),
        "associated_transaction_ids": [
            d["associatedTransactionId"]
            for d in txn.get("associatedTransactionDetails") or []
            if d.get("associatedTransactionId")
        ],
        "line_items": [line_item_record(i) for i in txn.get("transactionLineItems") or []],
    }


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


# -- documents to fetch ------------------------------------------------------------------
LineItemKey = tuple[str, str, str]  # (orderId, orderLineItemId, shipmentId)


@dataclass
class DocumentRequest:
    """One PDF to fetch: an invoice number and a document type, and what it covers."""

    invoice_number: str
    document_type: str
    marketplace_id: str
    invoice_type: str | None = None
    invoice_date: str | None = None
    order_ids: set[str] = field(default_factory=set)
    order_line_item_ids: set[str] = field(default_factory=set)
    shipment_ids: set[str] = field(default_factory=set)
    transaction_ids: set[str] = field(default_factory=set)
    # The line item that names it in an order-keyed createReport (EU, JP): the first
    # (orderId, orderLineItemId, shipmentId) whose invoice details name this document.
    line_item: list[str] | None = None
    first_feed_date: str = ""  # the earliest transaction covering it: the bookmark may not pass it
    last_feed_date: str = ""
    # Money of the line items that name this document, by "<transactionId>#<line index>":
    # [currency, subtotal, tax, total] as decimal strings (they go into state as they are).
    lines: dict[str, list[str]] = field(default_factory=dict)
    # Why the lines seen may not be all of the document's: then its amounts stay null.
    amount_problems: set[str] = field(default_factory=set)
    # A transaction of the document's own kind names it (a charge an invoice, a refund a
    # credit memo). Planning only: a resumed report was planned so.
    named_by_own_kind: bool = field(default=False, compare=False)

    @property
    def key(self) -> str:
        return f"{self.invoice_number}|{self.document_type}"

    def describe(self) -> str:
        return f"invoice {self.invoice_number} ({self.document_type}, {self.marketplace_id})"

    def report_options(self, keys: str) -> dict[str, str]:
        """createReport reportOptions naming this document, by invoice or by order.

        By order, "one document per order" would be ambiguous: an order shipped twice
        has an invoice per shipment, and a refund adds a credit memo. So the request
        names one line item the document covers (orderId, orderLineItemId, shipmentId:
        the documented EU example), which belongs to one invoice of each type, and
        documentType only for a credit memo. An invoice spanning several orders is
        requested through one of them: its line item names the same document.
        """
        if keys == INVOICE_KEYS:
            return {"invoiceId": self.invoice_number, "documentType": self.document_type}
        if self.invoice_type == CONSOLIDATED:
            # It bills whole orders: one of them names it (the others would too).
            return {"orderId": min(self.order_ids)}
        if self.line_item:
            order, line, shipment = self.line_item
            options = {"orderId": order, "orderLineItemId": line, "shipmentId": shipment}
        else:  # planned by an earlier version: the order alone, the one required key
            options = {"orderId": min(self.order_ids)}
        if self.document_type != "Invoice":
            options["documentType"] = self.document_type
        return options

    def name_line_item(self, key: LineItemKey) -> None:
        """Keep the smallest line item naming it, so every run asks by the same one."""
        if self.line_item is None or list(key) < self.line_item:
            self.line_item = list(key)

    def cover(self, txn: Mapping[str, Any], items: Iterable[Mapping[str, Any]]) -> None:
        feed = str(txn["feedDate"])
        self.transaction_ids.add(str(txn["transactionId"]))
        self.first_feed_date = min(self.first_feed_date or feed, feed)
        self.last_feed_date = max(self.last_feed_date, feed)
        for item in items:
            for attr, name in (
                (self.order_ids, "orderId"),
                (self.order_line_item_ids, "orderLineItemId"),
                (self.shipment_ids, "shipmentId"),
            ):
                if item.get(name):
                    attr.add(str(item[name]))

    def add_line(self, txn: Mapping[str, Any], index: int, item: Mapping[str, Any]) -> None:
        """Count one line item's money towards this document (once, whoever names it again)."""
        line = f"{txn['transactionId']}#{index}"
        amounts = line_amounts(item)
        if isinstance(amounts, str):
            self.amount_problems.add(f"line {line}: {amounts}")
        else:
            self.lines[line] = amounts

    def amounts(self) -> DocumentAmounts:
        """The sums of its lines, or why there are none: never a partial sum."""
        currencies = {line[0] for line in self.lines.values()}
        currency = next(iter(currencies)) if len(currencies) == 1 else None
        problems = sorted(self.amount_problems)
        if not self.lines and not problems:
            kind = "refund" if self.document_type == "Credits" else "charge"
            problems = [f"no {kind} line item names it"]
        if len(currencies) > 1:
            problems.append(f"its line items are in {len(currencies)} currencies")
        if problems:
            return DocumentAmounts(currency, None, None, None, "missing: " + "; ".join(problems))
        subtotal, tax, total = (
            sum((Decimal(line[i]) for line in self.lines.values()), Decimal(0)) for i in (1, 2, 3)
        )
        return DocumentAmounts(currency, subtotal, tax, total, DERIVED)

    def to_state(self) -> dict[str, Any]:
        return {
            "invoice_number": self.invoice_number,
            "document_type": self.document_type,
            "marketplace_id": self.marketplace_id,
            "invoice_type": self.invoice_type,
            "invoice_date": self.invoice_date,
            "order_ids": sorted(self.order_ids),
            "order_line_item_ids": sorted(self.order_line_item_ids),
            "shipment_ids": sorted(self.shipment_ids),
            "transaction_ids": sorted(self.transaction_ids),
            "line_item": self.line_item,
            "first_feed_date": self.first_feed_date,
            "last_feed_date": self.last_feed_date,
            "lines": self.lines,
            "amount_problems": sorted(self.amount_problems),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> DocumentRequest:
        sets = ("order_ids", "order_line_item_ids", "shipment_ids", "transaction_ids")
        fields: dict[str, Any] = {
            k: v for k, v in data.items() if k not in sets and k in cls.__dataclass_fields__
        }
        fields.update({k: set(data.get(k) or []) for k in sets})
        fields["lines"] = {str(k): list(v) for k, v in (data.get("lines") or {}).items()}
        fields["amount_problems"] = set(data.get("amount_problems") or [])
        if "lines" not in data:  # state written before amounts were kept
            fields["amount_problems"].add("requested by an earlier version that kept no amounts")
        return cls(**fields)


DERIVED = "derived"


@dataclass(frozen=True)
class DocumentAmounts:
    currency: str | None
    subtotal: Decimal | None
    tax: Decimal | None
    total: Decimal | None
    status: str  # "derived" or "missing: <why>"


def line_amounts(item: Mapping[str, Any]) -> list[str] | str:
    """[currency, subtotal, tax, total] of one line item, or why it cannot be counted.

    A null part is zero (no fee, no discount); a null totalAmount is not: the total
    is what proves the parts complete, so subtotal + tax must equal it exactly.
    """
    parts = {name: money(item.get(name), name) for name in (*SUBTOTAL_PARTS, "tax", "totalAmount")}
    currencies = {p["currency_code"] for p in parts.values() if p and p["amount"] is not None}
    total = parts["totalAmount"]
    if total is None or total["amount"] is None:
        return "no totalAmount"
    if len(currencies) != 1 or None in currencies:
        return "its amounts are not in one named currency"

    def amount(name: str) -> Decimal:
        part = parts[name]
        return part["amount"] if part and part["amount"] is not None else Decimal(0)

    subtotal = sum((amount(name) for name in SUBTOTAL_PARTS), Decimal(0))
    tax = amount("tax")
    if subtotal + tax != total["amount"]:
        return f"principal + shipping + fees + discounts + tax = {subtotal + tax}, not its total"
    return [str(total["currency_code"]), str(subtotal), str(tax), str(total["amount"])]


def line_item_key(item: Mapping[str, Any]) -> LineItemKey | None:
    key = (item.get("orderId"), item.get("orderLineItemId"), item.get("shipmentId"))
    # Documents exist once a line item shipped; without a shipment id there is none yet.
    return key if all(key) else None  # type: ignore[return-value]


def line_items_needing_details(transactions: Iterable[Mapping[str, Any]]) -> list[LineItemKey]:
    """Every shipped line item, deduplicated: the details give each invoice's type and date,
    also of invoices a transaction names itself."""
    seen: dict[LineItemKey, None] = {}
    for txn in transactions:
        for item in txn.get("transactionLineItems") or []:
            key = line_item_key(item)
            if key is not None:
                seen.setdefault(key, None)
    return list(seen)


def details_by_line_item(
    results: Iterable[Mapping[str, Any]],
) -> dict[LineItemKey, list[dict[str, Any]]]:
    """getInvoiceDetailsByOrderLineItems answers, keyed by line item."""
    out: dict[LineItemKey, list[dict[str, Any]]] = {}
    for result in results:
        key = line_item_key(result.get("orderLineItem") or {})
        if key is not None:
            out.setdefault(key, []).extend(result.get("invoiceDetails") or [])
    return out


def plan_documents(
    transactions: Iterable[Mapping[str, Any]],
    details: Mapping[LineItemKey, Sequence[Mapping[str, Any]]],
    *,
    document_types: Sequence[str],
    marketplace_ids: Sequence[str],
) -> dict[str, DocumentRequest]:
    """Every (invoice number, document type) the transactions lead to, deduplicated.

    One line item can map to several invoices (an invoice and its credit memo);
    several transactions can lead to the same invoice: each document appears once,
    covering all of them.
    """
    invoice_meta: dict[str, Mapping[str, Any]] = {}
    for found in details.values():
        for detail in found:
            if detail.get("invoiceNumber"):
                invoice_meta.setdefault(str(detail["invoiceNumber"]), detail)

    plan: dict[str, DocumentRequest] = {}

    def add(
        number: str,
        txn: Mapping[str, Any],
        items: list[tuple[int, Mapping[str, Any]]],
        names: Mapping[int, set[str]] | None,
    ) -> None:
        meta = invoice_meta.get(number) or {}
        invoice_type = meta.get("invoiceType")
        document_type = DOCUMENT_TYPE_BY_INVOICE_TYPE.get(str(invoice_type)) or (
            DOCUMENT_TYPE_BY_TRANSACTION_TYPE.get(str(txn.get("transactionType")))
        )
        if document_type is None or document_type not in document_types:
            return
        request = DocumentRequest(number, document_type, str(txn.get("marketplaceId")))
        request = plan.setdefault(request.key, request)
        request.invoice_type = request.invoice_type or invoice_type
        request.invoice_date = request.invoice_date or meta.get("invoiceDate")
        request.cover(txn, [item for _, item in items])
        for _, item in items:
            key = line_item_key(item)
            if key is not None and any(
                str(d.get("invoiceNumber")) == number for d in details.get(key, ())
            ):
                request.name_line_item(key)
        if DOCUMENT_TYPE_BY_TRANSACTION_TYPE.get(str(txn.get("transactionType"))) == document_type:
            request.named_by_own_kind = True
        attribute_money(request, txn, items, names, invoice_meta)

    for txn in transactions:
        if txn.get("marketplaceId") not in marketplace_ids:
            continue
        items = list(enumerate(txn.get("transactionLineItems") or []))
        if txn.get("invoiceNumber"):
            add(str(txn["invoiceNumber"]), txn, items, None)
            continue
        by_invoice: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
        names: dict[int, set[str]] = {}  # line index -> every invoice number naming it
        for index, item in items:
            key = line_item_key(item)
            for detail in details.get(key, ()) if key else ():
                if detail.get("invoiceNumber"):
                    number = str(detail["invoiceNumber"])
                    by_invoice.setdefault(number, []).append((index, item))
                    names.setdefault(index, set()).add(number)
        for number, covered in by_invoice.items():
            add(number, txn, covered, names)
    if "Invoice" in document_types:
        plan_consolidated(plan, transactions, details, marketplace_ids)
    # One type per number: the invoice details name it. A number they do not know is
    # typed by the transactions naming it, and when a charge and a refund both name it,
    # it is the charge's invoice the refund refers to: a "Credits" request for it would
    # only ever come back CANCELLED (no such document), spending a createReport a run.
    for doc_key, request in list(plan.items()):
        number = request.invoice_number
        credits = request.document_type == "Credits"
        if credits and number not in invoice_meta and f"{number}|Invoice" in plan:
            del plan[doc_key]
    # A document named only by the other kind waits for its own: a credit memo already in
    # the invoice details of a charge whose refund is not fed yet, or an invoice named by a
    # refund long after its charge left the look-back window (fetched then). Requested
    # now, it would be written with amounts missing for good, or overwrite derived ones.
    return {key: request for key, request in plan.items() if request.named_by_own_kind}


CONSOLIDATED = "CONSOLIDATED"  # invoice_type of a consolidated invoice (our word)
PENDING_NUMBER = "Pending"  # consolidatedInvoiceDetails.invoiceNumber until it is issued


def consolidated_number(detail: Mapping[str, Any]) -> str | None:
    """The consolidated invoice an invoice detail names, once issued ("Pending" before)."""
    number = (detail.get("consolidatedInvoiceDetails") or {}).get("invoiceNumber")
    return None if not number or number == PENDING_NUMBER else str(number)


def consolidation_pending(
    transactions: Iterable[Mapping[str, Any]],
    details: Mapping[LineItemKey, Sequence[Mapping[str, Any]]],
) -> list[str]:
    """Feed dates of charges with a line whose consolidated invoice is still "Pending"."""
    dates = []
    for txn in transactions:
        if txn.get("transactionType") != "CHARGE":
            continue
        for item in txn.get("transactionLineItems") or []:
            key = line_item_key(item)
            if any(
                (d.get("consolidatedInvoiceDetails") or {}).get("invoiceNumber") == PENDING_NUMBER
                for d in (details.get(key, ()) if key else ())
            ):
                dates.append(str(txn["feedDate"]))
                break
    return dates


def plan_consolidated(
    plan: dict[str, DocumentRequest],
    transactions: Iterable[Mapping[str, Any]],
    details: Mapping[LineItemKey, Sequence[Mapping[str, Any]]],
    marketplace_ids: Sequence[str],
) -> None:
    """The consolidated invoices the invoice details name, each once, as documents.

    A consolidated invoice bills the orders of a period together. Its money is that of
    the invoices it consolidates, already counted there: its own amounts stay null so
    that no sum over `invoices` counts a purchase twice.
    """
    for txn in transactions:
        if txn.get("marketplaceId") not in marketplace_ids or txn.get("transactionType") != (
            "CHARGE"
        ):
            continue
        for item in txn.get("transactionLineItems") or []:
            key = line_item_key(item)
            for detail in details.get(key, ()) if key else ():
                number = consolidated_number(detail)
                if number is None or key is None:
                    continue
                request = DocumentRequest(number, "Invoice", str(txn.get("marketplaceId")))
                request = plan.setdefault(request.key, request)
                request.invoice_type = CONSOLIDATED
                request.cover(txn, [item])
                request.name_line_item(key)
                request.named_by_own_kind = True
                request.amount_problems.add(
                    "a consolidated invoice: its lines are counted in the invoices it consolidates"
                )


def attribute_money(
    request: DocumentRequest,
    txn: Mapping[str, Any],
    items: list[tuple[int, Mapping[str, Any]]],
    names: Mapping[int, set[str]] | None,
    invoice_meta: Mapping[str, Mapping[str, Any]],
) -> None:
    """Count the transaction's line items towards the document they belong to.

    A charge's money belongs to its invoice, a refund's to its credit memo. A refund's
    line item also names the invoice it refunds: that invoice's money came from the
    charge, so the refund is not counted there. `names` is None when the transaction
    itself carries the invoice number: then every line is that document's.
    """
    if DOCUMENT_TYPE_BY_TRANSACTION_TYPE.get(str(txn.get("transactionType"))) != (
        request.document_type
    ):
        return
    for index, item in items:
        if names is None:
            request.add_line(txn, index, item)
            continue
        same_kind = [
            number
            for number in names.get(index, ())
            if DOCUMENT_TYPE_BY_INVOICE_TYPE.get(
                str((invoice_meta.get(number) or {}).get("invoiceType"))
            )
            == request.document_type
        ]
        if same_kind == [request.invoice_number]:
            request.add_line(txn, index, item)
        else:
            # Two credit memos for one line item, or an invoice of unknown type: which
            # one holds this line's money cannot be told, so neither gets a sum.
            request.amount_problems.add(
                f"line {txn['transactionId']}#{index} names {len(same_kind)} "
                f"{request.document_type} documents"
            )


def document_record(
    request: DocumentRequest,
    *,
    processing_status: str,
    report_id: str | None,
    report_document_id: str | None = None,
    stored: StoredDocument | None = None,
) -> dict[str, Any]:
    amounts = request.amounts()
    return {
        "invoice_number": request.invoice_number,
        "document_type": request.document_type,
        "marketplace_id": request.marketplace_id,
        "invoice_type": request.invoice_type,
        # invoiceDate is a date-time, but an invoice is dated by its day, as Amazon wrote it.
        "invoice_date": request.invoice_date[:10] if request.invoice_date else None,
        "order_ids": sorted(request.order_ids),
        "order_line_item_ids": sorted(request.order_line_item_ids),
        "shipment_ids": sorted(request.shipment_ids),
        "transaction_ids": sorted(request.transaction_ids),
        "last_feed_date": request.last_feed_date or None,
        "report_id": report_id,
        "report_document_id": report_document_id,
        "processing_status": processing_status,
        "sha256": stored.sha256 if stored else None,
        "size": stored.size if stored else None,
        "page_count": stored.page_count if stored else None,
        "uri": stored.uri if stored else None,
        "content_base64": stored.content_base64 if stored else None,
        "currency": amounts.currency,
        "subtotal_amount": amounts.subtotal,
        "tax_amount": amounts.tax,
        "total_amount": amounts.total,
        "amount_status": amounts.status,
    }


# -- payment status (getBatchInvoicePaymentDetails) --------------------------------------
CLOSED = "Closed"  # paid: the one status after which an invoice is not asked about again
# paymentDetails.status -> `invoices.status`; past due is what due_date says of "unpaid".
INVOICE_STATUS = {
    "Closed": "paid",
    "Issued": "unpaid",
    "Past Due": "unpaid",
    "Payment Processing": "payment_processing",
}


@dataclass(frozen=True)
class PaymentStatus:
    status: str  # "Closed", "Past Due", "Issued", "Payment Processing", as Amazon writes it
    due_date: str | None  # YYYY-MM-DD

    def fields(self) -> dict[str, Any]:
        return {"payment_status": self.status, "payment_due_date": self.due_date}


def payment_statuses(results: Iterable[Mapping[str, Any]]) -> dict[str, PaymentStatus]:
    """{invoice id: its payment status} of the SUCCESS results; ERROR ones are left out."""
    found = {}
    for result in results:
        details = result.get("paymentDetails") or {}
        if result.get("resultType") != "SUCCESS" or not details.get("status"):
            continue
        due = details.get("dueDate")
        found[str(result["invoiceId"])] = PaymentStatus(
            str(details["status"]), str(due)[:10] if due else None
        )
    return found
