"""Amazon Business: Reconciliation API (transactions, invoice details) and Document API.

The world is deterministic apart from its dates, which are anchored to the day
the emulator starts so that look-back windows always have something to re-read:
orders with one to three line items over one or two shipments, a STANDARD
invoice per shipment, refunds with their CREDIT_MEMO invoice (so one line item
maps to two invoices), some transactions carrying `invoiceNumber` and some not.
Two regional stores of one business: NA (US, USD; `ab_orders`) and EU (DE, EUR;
`ab_eu_orders`), each with its own refresh token and Login with Amazon endpoint
(`/eu/auth/o2/token` for EU); the access token tells the routes which store's data to
serve, and a report of one store is not found by the other.

Documents are real small PDFs, zipped then gzipped as Amazon serves them; one
archive names its member "../../escape/evil.pdf" to prove the tap never uses
names inside an archive as paths. Reports take `ab_report_delay_seconds` to
process; `ab_fatal_invoices` / `ab_cancelled_invoices` force those outcomes, and
a document type an invoice does not have ends CANCELLED ("no data").
createReport names the document as each region's API does: NA by `invoiceId` +
`documentType`, EU by order (`orderId` required; `orderLineItemId`, `shipmentId`
and `documentType`, default Invoice, narrow it down); the other region's keys are
refused with 400 INVALID_REQUEST_PARAMETER.
`ab_consolidated_orders` [order ids] bills those orders' line items together in a
consolidated invoice: its number is "Pending" in consolidatedInvoiceDetails until
`ab_consolidated_issued`, and then it has a document. Other invoice details carry
no consolidatedInvoiceDetails.
getBatchInvoicePaymentDetails answers "Issued" (due 30 days after the invoice date)
for every invoice unless `ab_payment_status` {invoice number: status} says otherwise,
so tests change a status between runs ("ERROR": an ERROR result); an unknown id is
an ERROR result too.

Bad inputs, for the failure boundary (all persistent until the knob is cleared):
`ab_broken_transactions` {transactionId: "no_feed_date" | "no_transaction_id" |
"amount_abc"} serves that transaction damaged; `ab_html_transactions` answers
getTransactions with an HTML page and status 200, as a captive portal or a
misrouted proxy does; `ab_corrupt_documents` [invoice numbers] serves their
documents as gzip whose deflate stream is garbage.
`ab_paging_needs_dates` refuses a nextPageToken sent alone (the model marks both feed
dates required; the parameter text says to send the token alone): 400 unless both
dates come with it.
Every successful answer of a rate-limited route carries x-amzn-RateLimit-Limit,
as Amazon's does, so the tap's buckets follow the emulator's scaled-down limits.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import itertools
import json
import time
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tap_ad_invoices.emulator.core import Emulator, Request, Response, json_response

CLIENT_ID = "amzn1.application-oa2-client.emulator0business"
CLIENT_SECRET = "emulator-business-client-secret-5d2e"
REFRESH_TOKEN = "Atzr|emulator-business-refresh-token-3b71"
# The same business's EU store (amazon.de): its own authorisation, token endpoint and data.
REFRESH_TOKEN_EU = "Atzr|emulator-business-eu-refresh-token-8c40"
EU_TOKEN_PATH = "/eu/auth/o2/token"
# Access tokens are minted per client id; the EU store's carry this one, so every
# route can tell which store a call is for (hosts differ at Amazon, not here).
EU_TOKEN_CLIENT = f"{CLIENT_ID}#EU"
STORE_OF_TOKEN_CLIENT = {CLIENT_ID: "NA", EU_TOKEN_CLIENT: "EU"}

MARKETPLACE_US = "ATVPDKIKX0DER"
MARKETPLACE_DE = "A1PA6795UKMFR9"
ROUTE_EU_TOKEN = "ab.lwa.eu"
TRANSACTIONS_PATH = "/reconciliation/2021-01-08/transactions"
INVOICES_PATH = "/reconciliation/2021-01-08/invoices"
PAYMENT_DETAILS_PATH = "/reconciliation/2021-01-08/invoices/batch/paymentDetails"
REPORTS_PATH = "/reports/2021-09-30/reports"
DOCUMENTS_PATH = "/reports/2021-09-30/documents"
DOWNLOAD_PREFIX = "/s3/ab-documents"

# Counter names (also the keys of the `rate_limits` knob).
ROUTE_TRANSACTIONS = "ab.transactions"
ROUTE_INVOICES = "ab.invoices"
ROUTE_PAYMENTS = "ab.invoices.payments"
ROUTE_CREATE = "ab.reports.create"
ROUTE_GET_REPORT = "ab.reports.get"
ROUTE_GET_DOCUMENT = "ab.documents.get"
ROUTE_DOWNLOAD = "ab.documents.download"

# Amazon's limits are 1/min for createReport and getReportDocument; scaled up here
# so a demo finishes in seconds. Tests and the benchmark set their own.
DEFAULT_RATE_LIMITS = {
    ROUTE_TRANSACTIONS: [20.0, 10],
    ROUTE_INVOICES: [20.0, 10],
    ROUTE_PAYMENTS: [20.0, 10],
    ROUTE_CREATE: [1.0, 15],
    ROUTE_GET_REPORT: [20.0, 15],
    ROUTE_GET_DOCUMENT: [1.0, 15],
}
MAX_LINE_ITEMS_PER_CALL = 25
DOCUMENT_TYPES = {"STANDARD": "Invoice", "CREDIT_MEMO": "Credits"}
# How each store's createReport names a document: NA by invoiceId + documentType, EU by
# order (orderId required; orderLineItemId, shipmentId, documentType narrow it down).
REQUEST_KEYS = {"NA": "invoice", "EU": "order"}


def _iso(moment: dt.datetime) -> str:
    return (
        moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _parse_iso(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _money(amount: Decimal | None, currency: str = "USD") -> dict[str, str] | None:
    return None if amount is None else {"currencyCode": currency, "amount": f"{amount:.2f}"}


def make_pdf(lines: list[str], pages: int = 1) -> bytes:
    """A small valid PDF (Helvetica text), `pages` pages, exact xref offsets."""
    objects: list[bytes] = []
    page_ids = [3 + 2 * i for i in range(pages)]
    font_id = 3 + 2 * pages
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    for page_number, _page_id in enumerate(page_ids, start=1):
        text = [*lines, f"Page {page_number} of {pages}"]
        ops = ["BT", "/F1 11 Tf", "14 TL", "50 750 Td"]
        for line in text:
            safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({safe}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1", "replace")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents "
            f"{_page_id + 1} 0 R /Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def wrap_document(pdf: bytes, member_name: str) -> bytes:
    """As Amazon serves invoice PDFs: zipped, then gzipped."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(member_name, date_time=(2026, 1, 1, 0, 0, 0))
        archive.writestr(info, pdf)
    return gzip.compress(buffer.getvalue(), mtime=0)


@dataclass
class LineItem:
    order_id: str
    order_line_item_id: str
    shipment_id: str
    asin: str
    title: str
    quantity: int
    unit_price: Decimal

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.order_id, self.order_line_item_id, self.shipment_id)


@dataclass
class Invoice:
    invoice_number: str
    invoice_type: str  # STANDARD | CREDIT_MEMO
    invoice_date: dt.datetime
    line_items: list[tuple[str, str, str]]
    pdf: bytes = b""
    member_name: str = "invoice.pdf"

    @property
    def document_type(self) -> str:
        return DOCUMENT_TYPES[self.invoice_type]


@dataclass
class Report:
    store: str
    report_id: str
    invoice_id: str
    document_type: str
    marketplace_ids: list[str]
    created: float
    created_iso: str
    outcome: str  # DONE | CANCELLED | FATAL
    report_document_id: str | None = None
    options: dict[str, str] = field(default_factory=dict)  # reportOptions as sent


@dataclass
class World:
    transactions: list[dict[str, Any]] = field(default_factory=list)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    line_item_invoices: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreProfile:
    """What differs between the regional stores' data."""

    marketplace_id: str
    currency: str
    prefix: str  # of transaction ids and invoice numbers, so no two stores share one
    merchant: str


STORES = {
    "NA": StoreProfile(MARKETPLACE_US, "USD", "", "Amazon.com Services LLC"),
    "EU": StoreProfile(MARKETPLACE_DE, "EUR", "DE-", "Amazon EU S.à r.l."),
}


class WorldBuilder:
    """Deterministic orders, transactions and invoices; dates relative to `anchor`."""

    def __init__(
        self, anchor: dt.datetime, world: World, profile: StoreProfile = STORES["NA"]
    ) -> None:
        self.anchor = anchor
        self.world = world
        self.profile = profile

    def add_order(
        self,
        index: int,
        feed_date: dt.datetime,
        *,
        carry_invoice: bool | None = None,
        refund: bool | None = None,
    ) -> list[str]:
        """One order: its CHARGE transaction, invoices per shipment, maybe a refund."""
        world = self.world
        order_id = f"112-{index:07d}-{(index * 7919) % 10_000_000:07d}"
        item_count = 1 + index % 3
        shipments = 1 if item_count == 1 or index % 2 == 0 else 2
        items = []
        for j in range(item_count):
            price = Decimal(1999 + (index * 37 + j * 101) % 9000) / 100
            items.append(
                LineItem(
                    order_id=order_id,
                    order_line_item_id=f"{9253990283445 + index * 10 + j}",
                    shipment_id=f"Drs{index:04d}S{j % shipments}",
                    asin=f"B0{(index * 31 + j) % 10**8:08d}",
                    title=[
                        "Copy paper, 10 reams",
                        "Nitrile gloves (100)",
                        'Label printer, 4"',
                        "Café table — oak",
                        "USB-C cable, 2 m",
                    ][(index + j) % 5],
                    quantity=1 + (index + j) % 4,
                    unit_price=price,
                )
            )
        created: list[str] = []
        invoice_numbers: dict[str, str] = {}
        for shipment in sorted({item.shipment_id for item in items}):
            tail = 3333 + index % 97 * 10 + int(shipment[-1])
            number = (
                f"{self.profile.prefix}{1111 + index:04d}-{2222 + len(shipment):04d}-{tail:04d}"
            )
            keys = [i.key for i in items if i.shipment_id == shipment]
            invoice = Invoice(number, "STANDARD", feed_date - dt.timedelta(hours=2), keys)
            self._add_invoice(invoice, index)
            invoice_numbers[shipment] = number
            created.append(number)
        carry = carry_invoice if carry_invoice is not None else (shipments == 1 and index % 2 == 0)
        charge = self._transaction(
            f"{self.profile.prefix}TXN-C-{index:05d}",
            "CHARGE",
            feed_date,
            items,
            invoice_numbers[items[0].shipment_id] if carry and shipments == 1 else None,
        )
        world.transactions.append(charge)
        if refund if refund is not None else index % 3 == 1:
            item = items[0]
            memo = Invoice(
                f"CM-{self.profile.prefix}{1111 + index:04d}-{index % 89:04d}",
                "CREDIT_MEMO",
                feed_date + dt.timedelta(days=1),
                [item.key],
            )
            self._add_invoice(memo, index)
            created.append(memo.invoice_number)
            refund_txn = self._transaction(
                f"{self.profile.prefix}TXN-R-{index:05d}",
                "REFUND",
                feed_date + dt.timedelta(days=1, hours=3),
                [item],
                memo.invoice_number if index % 2 == 0 else None,
                refund=True,
                associated=charge["transactionId"],
            )
            world.transactions.append(refund_txn)
        return created

    def _add_invoice(self, invoice: Invoice, index: int) -> None:
        pages = 2 if index % 4 == 3 else 1
        lines = [
            "Amazon Business"
            + (" - Credit memo" if invoice.invoice_type == "CREDIT_MEMO" else " - Invoice"),
            f"Invoice number: {invoice.invoice_number}",
            f"Invoice date: {invoice.invoice_date:%Y-%m-%d}",
        ] + [f"Order {o} line {li} shipment {s}" for o, li, s in invoice.line_items]
        invoice.pdf = make_pdf(lines, pages)
        if index == 0:
            invoice.member_name = "../../escape/evil.pdf"
        self.world.invoices[invoice.invoice_number] = invoice
        for key in invoice.line_items:
            self.world.line_item_invoices.setdefault(key, []).append(invoice.invoice_number)

    def _transaction(
        self,
        transaction_id: str,
        kind: str,
        feed_date: dt.datetime,
        items: list[LineItem],
        invoice_number: str | None,
        *,
        refund: bool = False,
        associated: str | None = None,
    ) -> dict[str, Any]:
        sign = Decimal(-1) if refund else Decimal(1)
        currency = self.profile.currency

        def money(amount: Decimal | None) -> dict[str, str] | None:
            return _money(amount, currency)

        line_items = []
        total = Decimal(0)
        for item in items:
            principal = item.unit_price * item.quantity
            shipping = Decimal("0.00") if principal > 50 else Decimal("4.99")
            discount = Decimal("-2.99") if item.quantity > 2 else None
            tax = (principal * Decimal("0.0825")).quantize(Decimal("0.01"))
            line_total = principal + shipping + tax + (discount or 0)
            total += line_total
            line_items.append(
                {
                    "refundReason": "Damaged in transit" if refund else None,
                    "totalAmount": money(sign * line_total),
                    "principalAmount": money(sign * principal),
                    "shippingCharge": money(sign * shipping),
                    "regulatoryFee": None,
                    "giftWrappingCharge": None,
                    "discount": money(sign * discount) if discount is not None else None,
                    "tax": money(sign * tax),
                    "unitPrice": money(item.unit_price),
                    "taxRate": "0.0825",
                    "orderId": item.order_id,
                    "unspsc": "44121600",
                    "orderLineItemId": item.order_line_item_id,
                    "purchaseOrderNumber": f"PO-{item.order_id[-4:]}",
                    "purchaseOrderLineItemId": f"{item.order_line_item_id[-3:]}",
                    "asin": item.asin,
                    "productTitle": item.title,
                    "itemQuantity": item.quantity,
                    "shipmentId": item.shipment_id,
                    "shipmentDate": _iso(feed_date - dt.timedelta(hours=5)),
                    "merchantLegalName": self.profile.merchant,
                    "budgetId": None,
                    "businessOrderInfo": {"costCenter": "CC-42"},
                }
            )
        transaction: dict[str, Any] = {
            "marketplaceId": self.profile.marketplace_id,
            "transactionDate": _iso(feed_date - dt.timedelta(hours=1)),
            "feedDate": _iso(feed_date),
            "transactionType": kind,
            "transactionId": transaction_id,
            "chargeIdentifier": f"CHG-{transaction_id[-5:]}",
            "shipTaxRate": "0.0825",
            "giftWrapTaxRate": None,
            "legalEntityName": "Acme Widgets LLC",
            "purchasingCustomerGroupName": "Facilities",
            "amount": money(sign * total),
            "paymentInstrumentType": "PayStation",
            "paymentInstrumentLast4Digits": "4242",
            "buyer": {"id": "BUYER1", "name": "Zoë Buyer", "email": "zoe@example.com"},
            "payer": {"id": "PAYER1", "name": "Accounts Payable", "email": "ap@example.com"},
            "associatedTransactionDetails": (
                [{"associatedTransactionId": associated}] if associated else []
            ),
            "transactionLineItems": line_items,
        }
        if invoice_number is not None:
            transaction["invoiceNumber"] = invoice_number
        return transaction


class AmazonBusinessEmulator:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self.anchor = now
        self.worlds = {store: World() for store in STORES}
        self.world = self.worlds["NA"]  # the single-store config's store
        self.builders = {
            store: WorldBuilder(now, self.worlds[store], profile)
            for store, profile in STORES.items()
        }
        self.builder = self.builders["NA"]
        span_days = float(emulator.knobs.get("ab_span_days", 90))
        self.next_order: dict[str, int] = {}
        for store, knob, default in (("NA", "ab_orders", 9), ("EU", "ab_eu_orders", 4)):
            orders = int(emulator.knobs.get(knob, default))
            for index in range(orders):
                # Oldest first; the newest order lands a few hours before now.
                age = span_days * (orders - index) / orders
                self.builders[store].add_order(index, now - dt.timedelta(days=age, hours=6))
            self.next_order[store] = orders
        self.reports: dict[str, Report] = {}
        self.sequence = itertools.count(1)
        self.documents_served: dict[str, str] = {}  # report document id -> sha256 served
        self._consolidated: dict[tuple[str, str], Invoice] = {}

    def tap_config(self) -> dict[str, Any]:
        base = self.emulator.base_url
        return {
            "amazon_business": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN,
                "region": "NA",
                "api_url": base,
                "token_url": f"{base}/auth/o2/token",
                "poll_interval_seconds": 0.1,
                "progress_interval_seconds": 5,
            }
        }

    def tap_config_stores(self) -> dict[str, Any]:
        """The `stores` form: the NA and the EU store of one business, one app."""
        base = self.emulator.base_url
        return {
            "amazon_business": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "stores": [
                    {
                        "region": "NA",
                        "refresh_token": REFRESH_TOKEN,
                        "api_url": base,
                        "token_url": f"{base}/auth/o2/token",
                    },
                    {
                        "region": "EU",
                        "refresh_token": REFRESH_TOKEN_EU,
                        "marketplace_ids": [MARKETPLACE_DE],
                        "api_url": base,
                        "token_url": f"{base}{EU_TOKEN_PATH}",
                    },
                ],
                "poll_interval_seconds": 0.1,
                "progress_interval_seconds": 5,
            }
        }

    # ground truth for tests, and changes between runs --------------------------------
    def truth(self, store: str = "NA") -> dict[str, Any]:
        world = self.worlds[store]
        return {
            "marketplace_id": STORES[store].marketplace_id,
            "transactions": world.transactions,
            "documents": [
                {
                    "invoice_number": inv.invoice_number,
                    "document_type": inv.document_type,
                    "invoice_type": inv.invoice_type,
                    "sha256": hashlib.sha256(inv.pdf).hexdigest(),
                    "size": len(inv.pdf),
                    "line_items": [list(k) for k in inv.line_items],
                }
                for inv in world.invoices.values()
            ],
            "reports_created": sum(1 for r in self.reports.values() if r.store == store),
        }

    def mutate(self, change: dict[str, Any]) -> dict[str, Any]:
        if change.get("op") == "add_transaction":
            store = str(change.get("store", "NA"))
            index = self.next_order[store]
            self.next_order[store] += 1
            feed = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
            created = self.builders[store].add_order(
                index, feed, carry_invoice=change.get("carry_invoice"), refund=False
            )
            return {"invoice_numbers": created}
        raise ValueError(f"unknown change {change!r}")

    # helpers ----------------------------------------------------------------------------
    def store(self, request: Request) -> str | None:
        """The store whose access token the call carries; None: not a valid token."""
        client = self.emulator.token_client(request.headers.get("x-amz-access-token"))
        return STORE_OF_TOKEN_CLIENT.get(client or "")

    def consolidated(self, store: str) -> Invoice | None:
        """The consolidated invoice of the orders in `ab_consolidated_orders`, if any.

        It bills their charged line items together; its number is "Pending" in the
        invoice details until `ab_consolidated_issued`, and only then has a document.
        """
        orders = set(self.emulator.knobs.get("ab_consolidated_orders") or [])
        if not orders:
            return None
        world = self.worlds[store]
        keys = sorted(
            {
                key
                for invoice in world.invoices.values()
                if invoice.invoice_type == "STANDARD"
                for key in invoice.line_items
                if key[0] in orders
            }
        )
        if not keys:
            return None
        number = f"{STORES[store].prefix}CI-{self.anchor:%Y%m}-{len(orders):04d}"
        cached = self._consolidated.get((store, number))
        if cached is None or cached.line_items != keys:
            cached = Invoice(number, "STANDARD", self.anchor, keys)
            cached.pdf = make_pdf(
                ["Amazon Business - Consolidated invoice", f"Invoice number: {number}"]
                + [f"Order {o} line {li} shipment {s}" for o, li, s in keys]
            )
            self._consolidated[(store, number)] = cached
        return cached

    def document(self, store: str, invoice_id: str) -> Invoice | None:
        """An invoice or credit memo of the store, or its consolidated invoice once issued."""
        found = self.worlds[store].invoices.get(invoice_id)
        if found is not None:
            return found
        consolidated = self.consolidated(store)
        if (
            consolidated is not None
            and consolidated.invoice_number == invoice_id
            and self.emulator.knobs.get("ab_consolidated_issued")
        ):
            return consolidated
        return None

    def invoice_of_order(
        self, store: str, options: dict[str, Any], document_type: str
    ) -> str | None:
        """The document an order-keyed request names: the store's invoices of that type
        covering a line item of the order (and of the line item and shipment, if given).
        Several (an order shipped twice, keyed by orderId alone): the first issued."""
        order = options["orderId"]
        line, shipment = options.get("orderLineItemId"), options.get("shipmentId")
        world = self.worlds[store]
        consolidated = self.consolidated(store)
        if (
            line is None
            and shipment is None
            and consolidated is not None
            and self.emulator.knobs.get("ab_consolidated_issued")
            and any(key[0] == order for key in consolidated.line_items)
        ):
            return consolidated.invoice_number  # the order is billed by it
        found = [
            invoice
            for invoice in world.invoices.values()
            if invoice.document_type == document_type
            and any(
                key[0] == order and line in (None, key[1]) and shipment in (None, key[2])
                for key in invoice.line_items
            )
        ]
        found.sort(key=lambda invoice: (invoice.invoice_date, invoice.invoice_number))
        return found[0].invoice_number if found else None

    def refused(self, request: Request) -> Response | None:
        """Why an API call is refused before its route looks at it, or None.

        The access token first (401), then the x-amz-date header the onboarding guide
        requires: missing, not YYYYMMDDTHHMMSSZ, or more than 15 minutes off, the call
        is refused 403 as AWS's front door refuses an unsigned or stale request.
        """
        if self.store(request) is None:
            return _denied()
        stamp = request.headers.get("x-amz-date")
        if stamp is None:
            return _errors(
                403,
                "MissingAuthenticationToken",
                "Request is missing the required header x-amz-date (UTC, YYYYMMDDTHHMMSSZ).",
            )
        try:
            sent = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return _errors(
                403,
                "IncompleteSignature",
                f"Date must be in ISO-8601 'basic format'. Got '{stamp}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601",
            )
        if abs((dt.datetime.now(dt.timezone.utc) - sent).total_seconds()) > 15 * 60:
            return _errors(
                403,
                "InvalidSignatureException",
                f"Signature expired: {stamp} is now earlier or later than 15 minutes "
                "from the server time.",
            )
        return None

    def limited(self, route: str, status: int, body: Any) -> Response:
        """A success answer with the route's rate limit announced, as Amazon does."""
        headers = {"x-amzn-RequestId": f"emu-{next(self.sequence)}"}
        limits = (self.emulator.knobs.get("rate_limits") or {}).get(route)
        if limits:
            headers["x-amzn-RateLimit-Limit"] = f"{float(limits[0]):g}"
        return Response(status, body, headers)


HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
    b"<body><p>Please sign in to continue.</p></body></html>"
)
# A gzip header followed by bytes that are no deflate stream (an invalid block type).
CORRUPT_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\xff" * 64


def _damaged(transaction: dict[str, Any], broken: dict[str, str]) -> dict[str, Any]:
    """The transaction as served, damaged as the `ab_broken_transactions` knob says."""
    fault = broken.get(transaction["transactionId"])
    if fault is None:
        return transaction
    served = dict(transaction)
    if fault == "no_feed_date":
        del served["feedDate"]
    elif fault == "no_transaction_id":
        del served["transactionId"]
    elif fault == "amount_abc":
        served["amount"] = {**(served.get("amount") or {}), "amount": "abc"}
    else:
        raise ValueError(f"unknown ab_broken_transactions fault {fault!r}")
    return served


def _errors(status: int, code: str, message: str) -> Response:
    return json_response(status, {"errors": [{"code": code, "message": message}]})


def _denied() -> Response:
    return _errors(401, "Unauthorized", "Access to requested resource is denied.")


def _page_token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def install(emulator: Emulator) -> AmazonBusinessEmulator:
    knobs = emulator.knobs
    knobs.setdefault("ab_report_delay_seconds", 0.2)
    knobs.setdefault("ab_link_ttl_seconds", 300)
    knobs.setdefault("ab_page_size", 3)
    knobs.setdefault("ab_fatal_invoices", [])
    knobs.setdefault("ab_cancelled_invoices", [])
    limits = knobs.get("rate_limits")
    if limits is None:
        limits = knobs["rate_limits"] = {}
    for route, limit in DEFAULT_RATE_LIMITS.items():
        limits.setdefault(route, list(limit))
    ab = AmazonBusinessEmulator(emulator)
    emulator.lwa_clients[CLIENT_ID] = (CLIENT_SECRET, REFRESH_TOKEN)  # type: ignore[attr-defined]

    @emulator.route("POST", EU_TOKEN_PATH, ROUTE_EU_TOKEN)
    def eu_token(request: Request) -> Response:
        """Login with Amazon of the EU store (api.amazon.co.uk): the EU refresh token only."""
        form = request.form()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return json_response(401, {"error": "invalid_client"})
        if knobs.get("ab_eu_invalid_grant") or form.get("refresh_token") != REFRESH_TOKEN_EU:
            return json_response(
                400,
                {"error": "invalid_grant", "error_description": "The request has an invalid grant"},
            )
        access_token, ttl = emulator.mint_token(EU_TOKEN_CLIENT, "Atza|")
        return json_response(
            200, {"access_token": access_token, "token_type": "bearer", "expires_in": ttl}
        )

    @emulator.route("GET", TRANSACTIONS_PATH, ROUTE_TRANSACTIONS)
    def transactions(request: Request) -> Response:
        if (refused := ab.refused(request)) is not None:
            return refused
        store = ab.store(request)
        assert store is not None
        token = request.param("nextPageToken")
        if token is not None:
            if knobs.get("ab_paging_needs_dates"):
                # The model's reading: both dates are required on every page.
                for name in ("feedStartDate", "feedEndDate"):
                    if request.param(name) is None:
                        return _errors(
                            400,
                            "INVALID_REQUEST_PARAMETER",
                            f"Missing required parameter {name}.",
                        )
            elif set(request.query) != {"nextPageToken"}:
                return _errors(
                    400,
                    "INVALID_REQUEST_PARAMETER",
                    "When paging, nextPageToken must be the only parameter.",
                )
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
            except ValueError:
                return _errors(400, "INVALID_REQUEST_PARAMETER", "Invalid nextPageToken.")
            start, end, offset = _parse_iso(state["s"]), _parse_iso(state["e"]), int(state["o"])
        else:
            start = _parse_iso(request.param("feedStartDate"))
            end = _parse_iso(request.param("feedEndDate"))
            offset = 0
            for name, value in (("feedStartDate", start), ("feedEndDate", end)):
                if value is None:
                    return _errors(
                        400,
                        "INVALID_REQUEST_PARAMETER",
                        f"Input date [{request.param(name)}] is not in the expected "
                        "ISO8601 format.",
                    )
        assert start is not None and end is not None
        matching = sorted(
            (
                t
                for t in ab.worlds[store].transactions
                if start <= (_parse_iso(t["feedDate"]) or start) < end
            ),
            key=lambda t: (t["feedDate"], t["transactionId"]),
        )
        size = int(knobs["ab_page_size"])
        if knobs.get("ab_html_transactions"):
            return Response(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        page = [_damaged(t, knobs.get("ab_broken_transactions") or {}) for t in matching]
        page = page[offset : offset + size]
        body: dict[str, Any] = {"transactions": page}
        if offset + size < len(matching):
            body["nextPageToken"] = _page_token(
                {"s": _iso(start), "e": _iso(end), "o": offset + size}
            )
        return ab.limited(ROUTE_TRANSACTIONS, 200, body)

    @emulator.route("POST", INVOICES_PATH, ROUTE_INVOICES)
    def invoice_details(request: Request) -> Response:
        if (refused := ab.refused(request)) is not None:
            return refused
        store = ab.store(request)
        assert store is not None
        items = request.json().get("orderLineItems") or []
        if not items or len(items) > MAX_LINE_ITEMS_PER_CALL:
            return _errors(
                400,
                "INVALID_REQUEST_PARAMETER",
                f"orderLineItems must hold 1 to {MAX_LINE_ITEMS_PER_CALL} items.",
            )
        results = []
        for item in items:
            key = (item.get("orderId"), item.get("orderLineItemId"), item.get("shipmentId"))
            if not all(key):
                return _errors(
                    400,
                    "INVALID_REQUEST_PARAMETER",
                    "orderId, orderLineItemId and shipmentId are required.",
                )
            details = []
            world = ab.worlds[store]
            for number in world.line_item_invoices.get(key, []):  # type: ignore[arg-type]
                invoice = world.invoices[number]
                detail: dict[str, Any] = {
                    "invoiceNumber": number,
                    "invoiceDate": _iso(invoice.invoice_date),
                    "invoiceType": invoice.invoice_type,
                }
                consolidated = ab.consolidated(store)
                if consolidated is not None and key in consolidated.line_items:
                    issued = knobs.get("ab_consolidated_issued")
                    detail["consolidatedInvoiceDetails"] = {
                        "invoiceNumber": consolidated.invoice_number if issued else "Pending"
                    }
                details.append(detail)
            results.append({"orderLineItem": item, "invoiceDetails": details})
        return ab.limited(ROUTE_INVOICES, 200, {"invoiceDetailsByOrderLineItems": results})

    @emulator.route("POST", PAYMENT_DETAILS_PATH, ROUTE_PAYMENTS)
    def payment_details(request: Request) -> Response:
        if (refused := ab.refused(request)) is not None:
            return refused
        store = ab.store(request)
        assert store is not None
        ids = request.json().get("invoiceIds") or []
        if not 1 <= len(ids) <= 25:
            return _errors(
                400, "INVALID_REQUEST_PARAMETER", "invoiceIds must hold 1 to 25 invoice ids."
            )
        statuses = knobs.get("ab_payment_status") or {}
        results = []
        for invoice_id in ids:
            invoice = ab.document(store, str(invoice_id))
            if (
                invoice is None
                or invoice.invoice_type != "STANDARD"
                or (
                    statuses.get(invoice_id) == "ERROR"  # Amazon keeps no status for it
                )
            ):
                results.append(
                    {
                        "invoiceId": invoice_id,
                        "resultType": "ERROR",
                        "error": {"code": "NOT_FOUND", "message": "Invoice not found."},
                    }
                )
                continue
            due = invoice.invoice_date + dt.timedelta(days=30)
            results.append(
                {
                    "invoiceId": invoice_id,
                    "resultType": "SUCCESS",
                    "paymentDetails": {
                        "status": statuses.get(invoice_id, "Issued"),
                        "dueDate": f"{due:%Y-%m-%d}",
                    },
                }
            )
        return ab.limited(ROUTE_PAYMENTS, 200, {"invoicePaymentDetailsResults": results})

    @emulator.route("POST", REPORTS_PATH, ROUTE_CREATE)
    def create_report(request: Request) -> Response:
        if (refused := ab.refused(request)) is not None:
            return refused
        store = ab.store(request)
        assert store is not None
        body = request.json()
        options = body.get("reportOptions") or {}
        marketplaces = body.get("marketplaceIds") or []
        if body.get("reportType") != "GET_AB_INVOICE_PDF":
            return _errors(400, "INVALID_REQUEST_PARAMETER", "Unsupported reportType.")
        if not 1 <= len(marketplaces) <= 25:
            return _errors(
                400, "INVALID_REQUEST_PARAMETER", "marketplaceIds must hold 1 to 25 ids."
            )
        if "invoiceType" in options and "documentType" in options:
            return _errors(
                400, "INVALID_REQUEST_PARAMETER", "Either invoiceType or documentType, not both."
            )
        if REQUEST_KEYS[store] == "invoice":
            if not options.get("invoiceId"):
                return _errors(
                    400,
                    "INVALID_REQUEST_PARAMETER",
                    "reportOptions.invoiceId and reportOptions.documentType are required for "
                    "GET_AB_INVOICE_PDF in this marketplace.",
                )
            invoice_id = str(options["invoiceId"])
            document_type = str(options.get("documentType", ""))
        else:
            if not options.get("orderId") or "invoiceId" in options:
                return _errors(
                    400,
                    "INVALID_REQUEST_PARAMETER",
                    "reportOptions.orderId is required for GET_AB_INVOICE_PDF in this "
                    "marketplace; invoiceId is not a supported option here.",
                )
            document_type = str(options.get("documentType") or "Invoice")
            invoice_id = ab.invoice_of_order(store, options, document_type) or ""
        invoice = ab.document(store, invoice_id)
        if invoice_id in knobs["ab_fatal_invoices"]:
            outcome = "FATAL"
        elif (
            invoice is None
            or invoice_id in knobs["ab_cancelled_invoices"]
            or invoice.document_type != document_type
        ):
            outcome = "CANCELLED"
        else:
            outcome = "DONE"
        report_id = f"AB{next(ab.sequence):08d}"
        with emulator.lock:
            ab.reports[report_id] = Report(
                store,
                report_id,
                invoice_id,
                document_type,
                list(marketplaces),
                time.monotonic(),
                _iso(dt.datetime.now(dt.timezone.utc)),
                outcome,
                options={str(k): str(v) for k, v in options.items()},
            )
        return ab.limited(ROUTE_CREATE, 202, {"reportId": report_id})

    @emulator.route("GET", f"{REPORTS_PATH}/(?P<id>[^/]+)", ROUTE_GET_REPORT)
    def get_report(request: Request) -> Response:
        if (refused := ab.refused(request)) is not None:
            return refused
        store = ab.store(request)
        assert store is not None
        assert request.match is not None
        report = ab.reports.get(request.match["id"])
        if report is None or report.store != store:  # another store's report is not found
            return _errors(404, "NotFound", "Report not found.")
        delay = float(knobs["ab_report_delay_seconds"])
        age = time.monotonic() - report.created
        if age < delay / 2:
            status = "IN_QUEUE"
        elif age < delay:
            status = "IN_PROGRESS"
        else:
            status = report.outcome
        body: dict[str, Any] = {
            "reportId": report.report_id,
            "reportType": "GET_AB_INVOICE_PDF",
            "marketplaceIds": report.marketplace_ids,
            "createdTime": report.created_iso,
            "processingStatus": status,
            "reportOptions": report.options,
        }
        if status not in ("IN_QUEUE",):
            body["processingStartTime"] = report.created_iso
        if status == "DONE":
            report.report_document_id = f"DOC-{report.report_id}"
            body["reportDocumentId"] = report.report_document_id
            body["processingEndTime"] = _iso(dt.datetime.now(dt.timezone.utc))
        return ab.limited(ROUTE_GET_REPORT, 200, body)

    @emulator.route("GET", f"{DOCUMENTS_PATH}/(?P<id>[^/]+)", ROUTE_GET_DOCUMENT)
    def get_document(request: Request) -> Response:
        if (refused := ab.refused(request)) is not None:
            return refused
        store = ab.store(request)
        assert store is not None
        assert request.match is not None
        document_id = request.match["id"]
        if not any(
            r.report_document_id == document_id and r.store == store for r in ab.reports.values()
        ):
            return _errors(404, "NotFound", "Report document not found.")
        url = emulator.presign(
            f"{DOWNLOAD_PREFIX}/{document_id}", float(knobs["ab_link_ttl_seconds"])
        )
        return ab.limited(
            ROUTE_GET_DOCUMENT,
            200,
            {
                "reportDocumentId": document_id,
                "url": url,
                "compressionAlgorithm": "GZIP",
            },
        )

    @emulator.route("GET", f"{DOWNLOAD_PREFIX}/(?P<id>[^/]+)", ROUTE_DOWNLOAD)
    def download(request: Request) -> Response:
        if (refused := emulator.refuse_presigned(request)) is not None:
            return refused
        assert request.match is not None
        document_id = request.match["id"]
        report = next(r for r in ab.reports.values() if r.report_document_id == document_id)
        invoice = ab.document(report.store, report.invoice_id)
        assert invoice is not None
        if report.invoice_id in (knobs.get("ab_corrupt_documents") or []):
            return Response(200, CORRUPT_GZIP, {"Content-Type": "application/octet-stream"})
        with emulator.lock:
            ab.documents_served[document_id] = hashlib.sha256(invoice.pdf).hexdigest()
        return Response(
            200,
            wrap_document(invoice.pdf, invoice.member_name),
            {"Content-Type": "application/octet-stream"},
        )

    return ab
