"""Google Ads: a gRPC server over TLS (GoogleAdsService, InvoiceService), OAuth token, PDFs.

The real google-ads client talks to it unchanged: the server speaks gRPC over
TLS with a self-signed certificate for localhost, and errors travel as Google
sends them, a serialized GoogleAdsFailure in the trailing metadata
(`google.ads.googleads.v26.errors.googleadsfailure-bin`) plus a `request-id`,
so the client raises GoogleAdsException (or, for INTERNAL and
RESOURCE_EXHAUSTED, which it passes through, a gRPC error carrying the same
metadata).

The world is deterministic: one paying manager over serving accounts in USD,
EUR and JPY; monthly invoices issued January 2025 to October 2026; months with
no invoice; a credit memo; a corrected invoice (credit memo with
corrected_invoice, rebill with replaced_invoices); consolidated billing shared
by two customers (same invoice id, one resource name per customer); a billing
setup not on monthly invoicing; a customer that is not invoiced; a manager that
discovery must skip; accounts that stopped serving (CANCELED, SUSPENDED, CLOSED)
inside the range, whose final invoices are still listed, and one cancelled before it.

Accounts that stopped serving, as modelled here (Google documents only the error's
name, "Cannot request invoices for a non serving customer"): ListInvoices answers
their issue months up to the final invoice (issued the month after the last month
of service) and `invoice_error.NON_SERVING_CUSTOMER` for every later month. A
`customer_client` query filters on `customer_client.status` as GAQL does (`=` or
`IN (...)`), so a query for ENABLED accounts alone never sees them.

Knobs (besides the core's `latency_seconds`, `rate_limits`):
- `google_latency_seconds`: added to every gRPC call (overrides `latency_seconds`).
- `google_extra_customers`: that many more plain USD accounts on monthly invoicing.
- `google_extra_card_paid`: that many more accounts whose billing setup is not on
  monthly invoicing (`BILLING_SETUP_NOT_ON_MONTHLY_INVOICING` for every month).
- `google_non_serving_from`: {customer id: "YYYY-MM"}, that issue month on answers
  NON_SERVING_CUSTOMER (an account that stops serving in the month in progress).
- `google_extra_lapsed`: that many more accounts that stopped serving (CANCELED,
  SUSPENDED, CLOSED in turn) in 2025 or 2026, with final invoices.
- `google_denied_customers`: customer ids answered `USER_PERMISSION_DENIED`.
- `google_invalid_grant`: the token endpoint refuses the refresh token.
- `google_grpc_port`, `google_certificate_file`: where the CLI serves and writes.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import hashlib
import ipaddress
import itertools
import re
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.ads.googleads.v26.enums.types.month_of_year import MonthOfYearEnum
from google.ads.googleads.v26.errors.types import errors as ads_errors
from google.ads.googleads.v26.resources.types import invoice as invoice_types
from google.ads.googleads.v26.services.types import google_ads_service, invoice_service
from google.protobuf import duration_pb2

from tap_ad_invoices.emulator.core import Emulator, Fault, Request, Response, json_response

API_VERSION = "v26"
FAILURE_KEY = f"google.ads.googleads.{API_VERSION}.errors.googleadsfailure-bin"
TOKEN_PATH = "/google/oauth2/token"
PDF_PATH = "/google/invoices/pdf"
DEFAULT_GRPC_PORT = 8766

CLIENT_ID = "emulator-0001.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-emulator-google-secret-5d1e"
REFRESH_TOKEN = "1//emulator-google-refresh-token-0b7c"
DEVELOPER_TOKEN = "emulator-dev-token-3a9f"
MANAGER_ID = "1234567890"

# JANUARY..DECEMBER, from the API's own enum (UNSPECIFIED and UNKNOWN come first).
MONTHS = [m.name for m in MonthOfYearEnum.MonthOfYear if m.value >= 2]  # type: ignore[attr-defined]
MONTH_VALUES = {getattr(MonthOfYearEnum.MonthOfYear, name) for name in MONTHS}
FIRST_MONTH = dt.date(2025, 1, 1)
LAST_MONTH = dt.date(2026, 10, 1)


@dataclass(frozen=True)
class Account:
    customer_id: str
    name: str
    currency: str
    manager: bool = False
    status: str = "ENABLED"
    # Accounts that stopped serving: the last month of service. Its final invoice is
    # issued the month after; later issue months answer NON_SERVING_CUSTOMER.
    last_service_month: dt.date | None = None

    @property
    def final_issue_month(self) -> dt.date | None:
        if self.last_service_month is None:
            return None
        return _next_month(self.last_service_month)


@dataclass(frozen=True)
class Setup:
    """A billing setup; setups sharing a `payments_account` are consolidated billing."""

    customer_id: str
    setup_id: str
    payments_account_id: str
    payments_profile_id: str
    status: str = "APPROVED"
    monthly_invoicing: bool = True
    invoiced: bool = True

    @property
    def resource_name(self) -> str:
        return f"customers/{self.customer_id}/billingSetups/{self.setup_id}"


ACCOUNTS = [
    Account("1111111111", "Acme Outdoor US", "USD"),
    Account("2222222222", "Acme Outdoor FR", "EUR"),
    Account("3333333333", "Acme Outdoor AT", "EUR"),
    Account("4444444444", "Sakura Shoji", "JPY"),
    Account("5555555555", "Acme Agency (sub-manager)", "USD", manager=True),
    Account("6666666666", "Closed Shop", "USD", status="CANCELED"),
    Account("7777777777", "Sakura Online", "JPY"),
    Account("8888888888", "Card-paid Startup", "USD"),
    # Stopped serving inside the range: final invoices, then NON_SERVING_CUSTOMER.
    Account("1212121212", "Pop-up Store DE", "EUR", False, "CANCELED", dt.date(2026, 4, 1)),
    Account("1313131313", "Paused Reseller", "USD", False, "SUSPENDED", dt.date(2026, 8, 1)),
    Account("1414141414", "Closed Studio", "JPY", False, "CLOSED", dt.date(2025, 10, 1)),
]
SETUPS = [
    Setup("1111111111", "101", "1111-2222-3333-4444", "1111-2222-3333"),
    Setup("1111111111", "100", "1111-2222-3333-0000", "1111-2222-3333", status="CANCELLED"),
    # Consolidated billing: one payments account pays for both customers.
    Setup("2222222222", "201", "5555-6666-7777-8888", "5555-6666-7777"),
    Setup("3333333333", "301", "5555-6666-7777-8888", "5555-6666-7777"),
    Setup("4444444444", "401", "9999-0000-1111-2222", "9999-0000-1111", monthly_invoicing=False),
    Setup("7777777777", "701", "3333-4444-5555-6666", "3333-4444-5555"),
    Setup("8888888888", "801", "7777-8888-9999-0000", "7777-8888-9999", invoiced=False),
    Setup("1212121212", "1201", "1212-3434-5656-7878", "1212-3434-5656"),
    Setup("1313131313", "1301", "1313-3434-5656-7878", "1313-3434-5656"),
    Setup("1414141414", "1401", "1414-3434-5656-7878", "1414-3434-5656"),
]
LAPSED_STATUSES = ("CANCELED", "SUSPENDED", "CLOSED")
TAX_RATE = {"USD": (0, 1), "EUR": (19, 100), "JPY": (10, 100)}
# (customer, "YYYY-MM") issue months with no invoice at all.
QUIET_MONTHS = {("1111111111", "2025-03"), ("1111111111", "2026-02"), ("2222222222", "2025-08")}


def world(
    extra_customers: int, extra_card_paid: int = 0, extra_lapsed: int = 0
) -> tuple[list[Account], list[Setup]]:
    """The fixed accounts, plus plain USD accounts on monthly invoicing, card-paid ones and
    ones that stopped serving (benchmarks: many calls, a mix of what a real manager holds)."""
    accounts, setups = list(ACCOUNTS), list(SETUPS)

    def add(kind: str, n: int, name: str, account: dict[str, Any], **setup: Any) -> None:
        """Benchmark account `n` of a kind (its id's first digit)."""
        customer = f"{kind}{n:09d}"
        accounts.append(Account(customer, f"{name} {n}", "USD", **account))
        number = f"{kind}{n:03d}-{n % 10000:04d}-0000-0000"
        setups.append(Setup(customer, f"{kind}{n}", number, number[:14], **setup))

    for n in range(extra_customers):
        add("9", n, "Benchmark account", {})
    for n in range(extra_card_paid):
        add("8", n, "Card-paid benchmark account", {}, monthly_invoicing=False)
    for n in range(extra_lapsed):
        # Stopped between March 2025 and August 2026, so each has invoices, a final one,
        # and NON_SERVING_CUSTOMER months inside the fixed world's range.
        lapsed = {
            "status": LAPSED_STATUSES[n % len(LAPSED_STATUSES)],
            "last_service_month": _add_months(dt.date(2025, 3, 1), (n * 5) % 18),
        }
        add("6", n, "Lapsed benchmark account", lapsed)
    return accounts, setups


def _digits(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _months() -> list[dt.date]:
    months, month = [], FIRST_MONTH
    while month <= LAST_MONTH:
        months.append(month)
        month = _next_month(month)
    return months


def _next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _add_months(month: dt.date, count: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + count
    return dt.date(index // 12, index % 12 + 1, 1)


def _previous_month(month: dt.date) -> dt.date:
    return (month - dt.timedelta(days=1)).replace(day=1)


def _unit_micros(currency: str) -> int:
    return 1_000_000 if currency == "JPY" else 10_000  # whole yen; cents elsewhere


def _tax(subtotal: int, currency: str) -> int:
    numerator, denominator = TAX_RATE[currency]
    unit = _unit_micros(currency)
    return subtotal * numerator // denominator // unit * unit


def _date_range(start: dt.date, end: dt.date) -> dict[str, str]:
    return {"start_date": start.isoformat(), "end_date": end.isoformat()}


class InvoiceBook:
    """The invoices, as plain dicts named like the Invoice proto (micros as int)."""

    def __init__(self, base_url: str, accounts: list[Account], setups: list[Setup]) -> None:
        self.base_url = base_url
        self.accounts = accounts
        self.setups = setups
        self.invoices: list[dict[str, Any]] = []  # each with "_issue_month" and "_setups"
        self._index: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._sequence = itertools.count(1)
        for group in self.payment_groups().values():
            for month in _months():
                self.monthly_invoice(group, month)
        self._add_corrections()

    def payment_groups(self) -> dict[str, list[Setup]]:
        groups: dict[str, list[Setup]] = {}
        for setup in self.setups:
            if setup.status == "APPROVED" and setup.monthly_invoicing and setup.invoiced:
                groups.setdefault(setup.payments_account_id, []).append(setup)
        return groups

    def new_id(self, group: list[Setup], month: dt.date) -> str:
        return f"{group[0].payments_account_id[:4]}{month:%y%m}{next(self._sequence):04d}"

    def monthly_invoice(self, group: list[Setup], month: dt.date) -> dict[str, Any] | None:
        customers = [s.customer_id for s in group]
        if any((c, f"{month:%Y-%m}") in QUIET_MONTHS for c in customers):
            return None
        finals = [self.account(c).final_issue_month for c in customers]
        if any(final is not None and month > final for final in finals):
            return None  # stopped serving: nothing is billed after the final invoice
        spends = {
            c: (_digits(c, month) % 4_000_000 + 5_000) * _unit_micros(self.currency(group))
            for c in customers
        }
        return self.add(group, month, spends, "INVOICE")

    def currency(self, group: list[Setup]) -> str:
        return self.account(group[0].customer_id).currency

    def account(self, customer_id: str) -> Account:
        return next(a for a in self.accounts if a.customer_id == customer_id)

    def add(
        self,
        group: list[Setup],
        month: dt.date,
        spends: dict[str, int],
        kind: str,
        *,
        corrected_invoice: str | None = None,
        replaced_invoices: list[str] | None = None,
    ) -> dict[str, Any]:
        """An invoice issued in `month` for the service in the month before."""
        currency = self.currency(group)
        service_start = _previous_month(month)
        service_end = month - dt.timedelta(days=1)
        invoice_id = self.new_id(group, month)
        budgets, summaries = [], []
        subtotal = tax = regulatory = 0
        for customer, spend in spends.items():
            account = self.account(customer)
            customer_tax = _tax(spend, currency)
            # Some countries add regulatory costs (digital services taxes) to the bill.
            customer_regulatory = spend * 5 // 100 // 10_000 * 10_000 if currency == "EUR" else 0
            subtotal, tax, regulatory = (
                subtotal + spend,
                tax + customer_tax,
                regulatory + customer_regulatory,
            )
            budget_id = _digits(customer) % 10**9
            budgets.append(
                {
                    "customer": f"customers/{customer}",
                    "customer_descriptive_name": account.name,
                    "account_budget": f"customers/{customer}/accountBudgets/{budget_id}",
                    "account_budget_name": f"{account.name} monthly budget",
                    "purchase_order_number": f"PO-{_digits(customer, month) % 100000}, {month:%Y}",
                    "subtotal_amount_micros": spend,
                    "tax_amount_micros": customer_tax,
                    "total_amount_micros": spend + customer_tax,
                    "billable_activity_date_range": _date_range(service_start, service_end),
                    "served_amount_micros": spend + spend // 100 // 10_000 * 10_000,
                    "billed_amount_micros": spend,
                    "overdelivery_amount_micros": spend // 100 // 10_000 * 10_000,
                    "invalid_activity_amount_micros": 0,
                    "invalid_activity_summaries": [],
                    # Granular details: only with include_granular_level_invoice_details.
                    "campaign_summaries": [
                        {
                            "campaign_description": f"Search | {account.name}",
                            "quantity": 1000 + spend % 977,
                            "unit_of_measure": "CLICKS",
                            "amount_micros": spend - spend // 3,
                        },
                        {
                            "campaign_description": f"Display | {account.name}",
                            "quantity": 50000 + spend % 991,
                            "unit_of_measure": "IMPRESSIONS",
                            "amount_micros": spend // 3,
                        },
                    ],
                }
            )
            summaries.append(
                {
                    "customer": f"customers/{customer}",
                    "billing_correction_subtotal_amount_micros": 0,
                    "billing_correction_tax_amount_micros": 0,
                    "billing_correction_total_amount_micros": 0,
                    "coupon_adjustment_subtotal_amount_micros": 0,
                    "coupon_adjustment_tax_amount_micros": 0,
                    "coupon_adjustment_total_amount_micros": 0,
                    "excess_credit_adjustment_subtotal_amount_micros": 0,
                    "excess_credit_adjustment_tax_amount_micros": 0,
                    "excess_credit_adjustment_total_amount_micros": 0,
                    "regulatory_costs_subtotal_amount_micros": customer_regulatory,
                    "regulatory_costs_tax_amount_micros": 0,
                    "regulatory_costs_total_amount_micros": customer_regulatory,
                    "export_charge_subtotal_amount_micros": 0,
                    "export_charge_tax_amount_micros": 0,
                    "export_charge_total_amount_micros": 0,
                    "subtotal_amount_micros": spend,
                    "tax_amount_micros": customer_tax,
                    "total_amount_micros": spend + customer_tax + customer_regulatory,
                    "regulatory_cost_summaries": (
                        [
                            {
                                "regulatory_fee_type": "AUSTRIA_DST_FEE"
                                if customer == "3333333333"
                                else "FRANCE_REGULATORY_OPERATING_COST",
                                "amount_micros": customer_regulatory,
                            }
                        ]
                        if customer_regulatory
                        else []
                    ),
                    "adjustment_summaries": [],
                }
            )
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "type": kind,
            "payments_account_id": group[0].payments_account_id,
            "payments_profile_id": group[0].payments_profile_id,
            "issue_date": (month + dt.timedelta(days=_digits(invoice_id) % 3)).isoformat(),
            "due_date": (month + dt.timedelta(days=30)).isoformat(),
            "service_date_range": _date_range(service_start, service_end),
            "currency_code": currency,
            "adjustments_subtotal_amount_micros": 0,
            "adjustments_tax_amount_micros": 0,
            "adjustments_total_amount_micros": 0,
            "regulatory_costs_subtotal_amount_micros": regulatory,
            "regulatory_costs_tax_amount_micros": 0,
            "regulatory_costs_total_amount_micros": regulatory,
            "export_charge_subtotal_amount_micros": 0,
            "export_charge_tax_amount_micros": 0,
            "export_charge_total_amount_micros": 0,
            "subtotal_amount_micros": subtotal,
            "tax_amount_micros": tax,
            # The proto: total = subtotal + tax + regulatory costs + export charges.
            "total_amount_micros": subtotal + tax + regulatory,
            "corrected_invoice": corrected_invoice,
            "replaced_invoices": replaced_invoices or [],
            "pdf_url": f"{self.base_url}{PDF_PATH}/{invoice_id}",
            "account_budget_summaries": budgets,
            "account_summaries": summaries,
            "_issue_month": f"{month:%Y-%m}",
            "_setups": [s.resource_name for s in group],
        }
        self.invoices.append(invoice)
        for name in invoice["_setups"]:
            self._index.setdefault((name, invoice["_issue_month"]), []).append(invoice)
        return invoice

    def _add_corrections(self) -> None:
        us = self.payment_groups()["1111-2222-3333-4444"]
        # A credit memo for invalid activity, June 2025.
        self.add(us, dt.date(2025, 6, 1), {"1111111111": -1_234_560_000}, "CREDIT_MEMO")
        # September 2026's invoice was wrong: October cancels it and rebills it.
        original = next(
            i
            for i in self.invoices
            if i["_issue_month"] == "2026-09" and i["_setups"] == [us[0].resource_name]
        )
        original_name = f"customers/1111111111/invoices/{original['id']}"
        spend = original["subtotal_amount_micros"]
        self.add(
            us,
            dt.date(2026, 10, 1),
            {"1111111111": -spend},
            "CREDIT_MEMO",
            corrected_invoice=original_name,
        )
        self.add(
            us,
            dt.date(2026, 10, 1),
            {"1111111111": spend - 99_990_000},
            "INVOICE",
            replaced_invoices=[original_name],
        )

    def for_request(self, setup: Setup, issue_month: str, granular: bool) -> list[dict[str, Any]]:
        found = []
        for invoice in self._index.get((setup.resource_name, issue_month), []):
            served = {k: v for k, v in copy.deepcopy(invoice).items() if not k.startswith("_")}
            served["resource_name"] = f"customers/{setup.customer_id}/invoices/{invoice['id']}"
            served["billing_setup"] = setup.resource_name
            if not granular:
                for budget in served["account_budget_summaries"]:
                    budget["campaign_summaries"] = []
                for summary in served["account_summaries"]:
                    summary["regulatory_cost_summaries"] = []
                    summary["adjustment_summaries"] = []
            found.append(served)
        return found


def render_pdf(invoice: dict[str, Any]) -> bytes:
    """A small, valid one-page PDF naming the invoice."""
    text = (
        f"Google Ads invoice {invoice['id']} {invoice['currency_code']} "
        f"{invoice['total_amount_micros']} micros"
    )
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@functools.cache
def self_signed_certificate() -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for localhost and 127.0.0.1.

    One per process: gRPC reads its trusted roots once per process, so every
    emulator a test process starts must present the same certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


class GrpcAbort(Exception):
    def __init__(self, code: grpc.StatusCode, failure: ads_errors.GoogleAdsFailure) -> None:
        super().__init__(code.name)
        self.code = code
        self.failure = failure


def failure(
    kind: str,
    name: str,
    message: str,
    *,
    retry_delay: float | None = None,
    customer_id: str | None = None,
) -> ads_errors.GoogleAdsFailure:
    """A GoogleAdsFailure with one error, e.g. failure("invoice_error", "NOT_INVOICED_CUSTOMER")."""
    error = ads_errors.GoogleAdsError(message=message)
    setattr(error.error_code, kind, name)  # type: ignore[union-attr]
    if retry_delay is not None:
        seconds = int(retry_delay)
        error.details = ads_errors.ErrorDetails(
            quota_error_details=ads_errors.QuotaErrorDetails(
                rate_scope="ACCOUNT",
                rate_name="Requests per service per method",
                retry_delay=duration_pb2.Duration(
                    seconds=seconds, nanos=round((retry_delay - seconds) * 1e9)
                ),
            )
        )
    if customer_id is not None:
        error.trigger.string_value = customer_id  # type: ignore[union-attr]
    return ads_errors.GoogleAdsFailure(errors=[error], request_id=secrets.token_hex(11))


class GoogleAdsEmulator:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        knobs = emulator.knobs
        self.accounts, self.setups = world(
            int(knobs.get("google_extra_customers") or 0),
            int(knobs.get("google_extra_card_paid") or 0),
            int(knobs.get("google_extra_lapsed") or 0),
        )
        self.book = InvoiceBook(emulator.base_url, self.accounts, self.setups)
        self.list_requests: list[dict[str, Any]] = []
        self.metadata_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.certificate_pem, key_pem = self_signed_certificate()
        # The CLI writes it where sample_config.json and meltano.yml look for it.
        fixed_file = emulator.knobs.get("google_certificate_file")
        self._certificate_dir = (
            Path(fixed_file).parent
            if fixed_file
            else Path(tempfile.mkdtemp(prefix="tap-ad-invoices-google-"))
        )
        self._certificate_dir.mkdir(parents=True, exist_ok=True)
        self.certificate_file = (
            Path(fixed_file) if fixed_file else self._certificate_dir / "localhost.pem"
        )
        self.certificate_file.write_bytes(self.certificate_pem)
        # Removed on stop(), or at exit when an emulator is dropped without stop().
        # A fixed file is removed alone, never the directory it was put in.
        self._remove_certificate = (
            weakref.finalize(self, self.certificate_file.unlink, missing_ok=True)
            if fixed_file
            else weakref.finalize(self, shutil.rmtree, self._certificate_dir, ignore_errors=True)
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        self.server.add_generic_rpc_handlers((self._handlers(),))
        credentials = grpc.ssl_server_credentials([(key_pem, self.certificate_pem)])
        self.grpc_port = self.server.add_secure_port(
            f"127.0.0.1:{self._chosen_port()}", credentials
        )
        self.server.start()
        emulator.on_stop(self.close)

    def _chosen_port(self) -> int:
        knob = self.emulator.knobs.get("google_grpc_port")
        if knob is not None:
            return int(knob)
        # The CLI's fixed port gets a fixed neighbour; a free-port emulator gets a free port.
        return DEFAULT_GRPC_PORT if self.emulator.requested_port else 0

    def close(self) -> None:
        self.server.stop(grace=None)
        self._remove_certificate()

    @property
    def endpoint(self) -> str:
        return f"localhost:{self.grpc_port}"

    def tap_config(self) -> dict[str, Any]:
        base = self.emulator.base_url
        return {
            "google_ads": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN,
                "developer_token": DEVELOPER_TOKEN,
                "login_customer_id": "123-456-7890",
                "customer_ids": [],
                "endpoint": self.endpoint,
                "token_uri": f"{base}{TOKEN_PATH}",
                "root_certificates_file": str(self.certificate_file),
            }
        }

    # -- ground truth and changes between runs ------------------------------------------
    def truth(self) -> dict[str, Any]:
        with self._lock:
            invoices = copy.deepcopy(self.book.invoices)
        with_setup = {s.customer_id for s in self.setups if s.status == "APPROVED"}
        return {
            "invoices": invoices,
            "pdf_sha256": {i["id"]: hashlib.sha256(render_pdf(i)).hexdigest() for i in invoices},
            # Every account a full sync reads invoices of: the enabled ones and those that
            # stopped serving but still have an approved billing setup (final invoices).
            "serving_customers": [
                a.customer_id
                for a in self.accounts
                if not a.manager and (a.status == "ENABLED" or a.customer_id in with_setup)
            ],
            "lapsed_customers": {
                a.customer_id: {
                    "status": a.status,
                    "final_issue_month": f"{a.final_issue_month:%Y-%m}",
                }
                for a in self.accounts
                if a.final_issue_month is not None
            },
            "billing_setups": {
                s.resource_name: {
                    "status": s.status,
                    "monthly_invoicing": s.monthly_invoicing,
                    "invoiced": s.invoiced,
                    "payments_account_id": s.payments_account_id,
                }
                for s in self.setups
            },
            "manager_id": MANAGER_ID,
        }

    def mutate(self, change: dict[str, Any]) -> dict[str, Any]:
        """{"op": "add", "billing_setup": name, "issue_month": "YYYY-MM", "subtotal_micros": n,
        "type": "INVOICE"|"CREDIT_MEMO", "corrected_invoice": optional resource name}, or
        {"op": "monthly_invoicing", "billing_setup": name}: a card-paid setup (with a payments
        account of its own) moves to monthly invoicing, its months billed as the others'."""
        if change.get("op") == "monthly_invoicing":
            return self._to_monthly_invoicing(change["billing_setup"])
        if change.get("op") != "add":
            raise ValueError(f"unknown change {change!r}")
        setup = next(s for s in self.setups if s.resource_name == change["billing_setup"])
        group = self.book.payment_groups()[setup.payments_account_id]
        month = dt.date.fromisoformat(f"{change['issue_month']}-01")
        with self._lock:
            invoice = self.book.add(
                group,
                month,
                {setup.customer_id: int(change["subtotal_micros"])},
                change.get("type", "INVOICE"),
                corrected_invoice=change.get("corrected_invoice"),
            )
        return {k: v for k, v in invoice.items() if not k.startswith("_")}

    def _to_monthly_invoicing(self, name: str) -> dict[str, Any]:
        with self._lock:
            index = next(i for i, s in enumerate(self.setups) if s.resource_name == name)
            setup = dataclasses.replace(self.setups[index], monthly_invoicing=True)
            self.setups[index] = setup  # the book reads the same list
            billed = [self.book.monthly_invoice([setup], month) for month in _months()]
        return {"billing_setup": name, "invoices": [i["id"] for i in billed if i]}

    # -- gRPC -----------------------------------------------------------------------------
    def _handlers(self) -> grpc.GenericRpcHandler:
        prefix = f"/google.ads.googleads.{API_VERSION}.services."
        search_request = google_ads_service.SearchGoogleAdsRequest
        stream_request = google_ads_service.SearchGoogleAdsStreamRequest
        list_request = invoice_service.ListInvoicesRequest
        handlers = {
            f"{prefix}GoogleAdsService/Search": grpc.unary_unary_rpc_method_handler(
                self._guard("google.search", self._search),
                request_deserializer=search_request.deserialize,
                response_serializer=google_ads_service.SearchGoogleAdsResponse.serialize,
            ),
            f"{prefix}GoogleAdsService/SearchStream": grpc.unary_stream_rpc_method_handler(
                self._guard("google.search_stream", self._search_stream, streaming=True),
                request_deserializer=stream_request.deserialize,
                response_serializer=google_ads_service.SearchGoogleAdsStreamResponse.serialize,
            ),
            f"{prefix}InvoiceService/ListInvoices": grpc.unary_unary_rpc_method_handler(
                self._guard("google.list_invoices", self._list_invoices),
                request_deserializer=list_request.deserialize,
                response_serializer=invoice_service.ListInvoicesResponse.serialize,
            ),
        }

        class _Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> Any:
                return handlers.get(details.method)

        return _Handler()

    def _guard(self, counter: str, handler: Any, streaming: bool = False) -> Any:
        """Count the call, check auth, inject faults, and send errors as Google does."""

        def run(request: Any, context: grpc.ServicerContext) -> Any:
            self.emulator.count(counter)
            metadata = {
                k: (v if isinstance(v, str) else "<binary>")
                for k, v in context.invocation_metadata()
            }
            with self._lock:
                self.metadata_seen.append(metadata)
            knobs = self.emulator.knobs
            latency = knobs.get("google_latency_seconds", knobs.get("latency_seconds") or 0)
            if latency:
                time.sleep(float(latency))
            try:
                self._check_call(counter, metadata)
                result = handler(request, metadata)
            except GrpcAbort as abort:
                context.set_trailing_metadata(
                    (
                        (FAILURE_KEY, ads_errors.GoogleAdsFailure.serialize(abort.failure)),
                        ("request-id", abort.failure.request_id),
                    )
                )
                context.abort(abort.code, abort.failure.errors[0].message)
            request_id = secrets.token_hex(11)
            context.set_trailing_metadata((("request-id", request_id),))
            if streaming:
                return iter(result)
            return result

        return run

    def _check_call(self, counter: str, metadata: dict[str, str]) -> None:
        if self.emulator.token_client(metadata.get("authorization")) != CLIENT_ID:
            raise GrpcAbort(
                grpc.StatusCode.UNAUTHENTICATED,
                failure(
                    "authentication_error",
                    "OAUTH_TOKEN_INVALID",
                    "Request is missing required authentication credential. Expected OAuth 2 "
                    "access token, login cookie or other valid authentication credential.",
                ),
            )
        login = metadata.get("login-customer-id")
        if login is not None and login != MANAGER_ID:
            raise GrpcAbort(
                grpc.StatusCode.PERMISSION_DENIED,
                failure(
                    "authorization_error",
                    "USER_PERMISSION_DENIED",
                    "User doesn't have permission to access customer. Note: If you're accessing a "
                    "client customer, the manager's customer id must be set in the "
                    "'login-customer-id' header.",
                ),
            )
        fault = self._take_fault(counter)
        if fault is None:
            return
        if fault.status == 429:
            raise GrpcAbort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                failure(
                    "quota_error",
                    "RESOURCE_TEMPORARILY_EXHAUSTED",
                    "Too many requests. Retry in the time given by retry_delay.",
                    retry_delay=fault.retry_after if fault.retry_after is not None else 1.0,
                ),
            )
        if fault.status == 401:
            # As when a token is revoked mid-run: the rejected token stays rejected.
            self.emulator.revoke_tokens()
            raise GrpcAbort(
                grpc.StatusCode.UNAUTHENTICATED,
                failure(
                    "authentication_error", "OAUTH_TOKEN_REVOKED", "The OAuth token was revoked."
                ),
            )
        if fault.status == 403:
            raise GrpcAbort(
                grpc.StatusCode.PERMISSION_DENIED,
                failure(
                    "authorization_error",
                    "USER_PERMISSION_DENIED",
                    "User doesn't have permission to access customer.",
                ),
            )
        raise GrpcAbort(
            grpc.StatusCode.INTERNAL,
            failure(
                "internal_error",
                "INTERNAL_ERROR",
                "An internal error has occurred. Please retry your request.",
            ),
        )

    def _take_fault(self, counter: str) -> Fault | None:
        """gRPC faults: Fault(route=counter, kind="grpc", status=429|500|401|403, retry_after).

        401 answers UNAUTHENTICATED and revokes every access token, as an expired one is.
        """
        emulator = self.emulator
        with emulator.lock:
            for fault in emulator.faults:
                if fault.hits(counter, grpc=True):
                    if fault.count == 0:
                        emulator.faults.remove(fault)
                    return fault
        return None

    def _check_customer(self, customer_id: str) -> None:
        denied = self.emulator.knobs.get("google_denied_customers") or []
        known = customer_id == MANAGER_ID or any(
            a.customer_id == customer_id for a in self.accounts
        )
        if not known or customer_id in denied:
            raise GrpcAbort(
                grpc.StatusCode.PERMISSION_DENIED,
                failure(
                    "authorization_error",
                    "USER_PERMISSION_DENIED",
                    "User doesn't have permission to access customer.",
                    customer_id=customer_id,
                ),
            )

    def _rows(self, request: Any) -> list[google_ads_service.GoogleAdsRow]:
        self._check_customer(request.customer_id)
        query = " ".join(request.query.split())
        if "FROM customer_client" in query:
            if request.customer_id != MANAGER_ID:
                return []
            manager_name = f"customers/{MANAGER_ID}"
            statuses = _status_filter(query)
            no_managers = "CUSTOMER_CLIENT.MANAGER = FALSE" in query.upper()
            rows = []
            for account in self.accounts:
                if (statuses is not None and account.status not in statuses) or (
                    no_managers and account.manager
                ):
                    continue
                client_id = account.customer_id
                rows.append(
                    google_ads_service.GoogleAdsRow(
                        customer_client={
                            "resource_name": f"{manager_name}/customerClients/{client_id}",
                            "client_customer": f"customers/{account.customer_id}",
                            "id": int(account.customer_id),
                            "manager": account.manager,
                            "descriptive_name": account.name,
                            "currency_code": account.currency,
                            "status": account.status,
                            "level": 1,
                        }
                    )
                )
            return rows
        if "FROM billing_setup" in query:
            rows = []
            for setup in self.setups:
                if setup.customer_id != request.customer_id:
                    continue
                if "billing_setup.status = 'APPROVED'" in query and setup.status != "APPROVED":
                    continue
                rows.append(
                    google_ads_service.GoogleAdsRow(
                        billing_setup={
                            "resource_name": setup.resource_name,
                            "id": int(setup.setup_id),
                            "status": setup.status,
                            "payments_account": f"customers/{setup.customer_id}/paymentsAccounts/"
                            f"{setup.payments_account_id}",
                            "payments_account_info": {
                                "payments_account_id": setup.payments_account_id,
                                "payments_profile_id": setup.payments_profile_id,
                            },
                            "start_date_time": "2019-01-01 00:00:00",
                        }
                    )
                )
            return rows
        raise GrpcAbort(
            grpc.StatusCode.INVALID_ARGUMENT,
            failure(
                "query_error",
                "PROHIBITED_RESOURCE_TYPE_IN_FROM_CLAUSE",
                "The emulator answers customer_client and billing_setup queries only.",
            ),
        )

    def _search(self, request: Any, _: dict[str, str]) -> Any:
        return google_ads_service.SearchGoogleAdsResponse(results=self._rows(request))

    def _search_stream(self, request: Any, _: dict[str, str]) -> Any:
        rows = self._rows(request)
        return [
            google_ads_service.SearchGoogleAdsStreamResponse(results=rows[i : i + 2])
            for i in range(0, max(len(rows), 1), 2)
        ]

    def _list_invoices(self, request: Any, metadata: dict[str, str]) -> Any:
        customer_id = request.customer_id
        self._check_customer(customer_id)
        month_name = request.issue_month.name if request.issue_month in MONTH_VALUES else ""
        with self._lock:
            self.list_requests.append(
                {
                    "customer_id": customer_id,
                    "billing_setup": request.billing_setup,
                    "issue_year": request.issue_year,
                    "issue_month": month_name,
                    "granular": request.include_granular_level_invoice_details,
                    "login_customer_id": metadata.get("login-customer-id"),
                }
            )
        setup = next((s for s in self.setups if s.resource_name == request.billing_setup), None)
        if not request.billing_setup or not request.issue_year or not month_name:
            raise GrpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                failure(
                    "request_error",
                    "REQUIRED_FIELD_MISSING",
                    "billing_setup, issue_year and issue_month are required.",
                ),
            )
        if setup is None or setup.customer_id != customer_id or setup.status != "APPROVED":
            raise GrpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                failure(
                    "invoice_error",
                    "BILLING_SETUP_NOT_APPROVED",
                    "The billing setup is not approved or does not belong to the customer.",
                ),
            )
        if int(request.issue_year) < 2019:
            raise GrpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                failure(
                    "invoice_error",
                    "YEAR_MONTH_TOO_OLD",
                    "Cannot request invoices issued before 2019-01-01.",
                ),
            )
        if not setup.invoiced:
            raise GrpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                failure(
                    "invoice_error",
                    "NOT_INVOICED_CUSTOMER",
                    "Cannot request invoices for customers not using monthly invoicing.",
                ),
            )
        if not setup.monthly_invoicing:
            raise GrpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                failure(
                    "invoice_error",
                    "BILLING_SETUP_NOT_ON_MONTHLY_INVOICING",
                    "Cannot request invoices for a billing setup not on monthly invoicing.",
                ),
            )
        issue_month = f"{request.issue_year}-{MONTHS.index(month_name) + 1:02d}"
        final = next(a for a in self.accounts if a.customer_id == customer_id).final_issue_month
        # `google_non_serving_from` {customer: "YYYY-MM"}: that month on answers
        # NON_SERVING_CUSTOMER already (an account stopping in the month in progress).
        early = (self.emulator.knobs.get("google_non_serving_from") or {}).get(customer_id)
        if (final is not None and issue_month > f"{final:%Y-%m}") or (
            early is not None and issue_month >= early
        ):
            raise GrpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                failure(
                    "invoice_error",
                    "NON_SERVING_CUSTOMER",
                    "Cannot request invoices for a non serving customer.",
                    customer_id=customer_id,
                ),
            )
        with self._lock:
            invoices = self.book.for_request(
                setup, issue_month, request.include_granular_level_invoice_details
            )
        return invoice_service.ListInvoicesResponse(
            invoices=[_invoice_message(i) for i in invoices]
        )


_STATUS_CLAUSE = re.compile(
    r"customer_client\.status\s*(?:=\s*'(?P<one>[A-Z_]+)'|IN\s*\((?P<many>[^)]*)\))",
    re.IGNORECASE,
)


def _status_filter(query: str) -> set[str] | None:
    """The statuses a customer_client query asks for (`=` or `IN (...)`); None: any."""
    match = _STATUS_CLAUSE.search(query)
    if match is None:
        return None
    if match["one"]:
        return {match["one"].upper()}
    return {part.strip().strip("'\"").upper() for part in match["many"].split(",")}


def _invoice_message(data: dict[str, Any]) -> invoice_types.Invoice:
    fields = {k: v for k, v in data.items() if v is not None and v != []}
    fields["type_"] = fields.pop("type")
    return invoice_types.Invoice(**fields)


def install(emulator: Emulator) -> GoogleAdsEmulator:
    google = GoogleAdsEmulator(emulator)
    emulator.knobs.setdefault("google_denied_customers", [])
    emulator.knobs.setdefault("google_invalid_grant", False)

    @emulator.route("POST", TOKEN_PATH, "google.token")
    def token(request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != "refresh_token":
            return json_response(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return json_response(
                401,
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
            )
        if emulator.knobs.get("google_invalid_grant") or form.get("refresh_token") != REFRESH_TOKEN:
            return json_response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                },
            )
        access_token, ttl = emulator.mint_token(CLIENT_ID, "ya29.")
        return json_response(
            200,
            {
                "access_token": access_token,
                "expires_in": ttl,
                "token_type": "Bearer",
                "scope": "https://www.googleapis.com/auth/adwords",
            },
        )

    @emulator.route("GET", f"{PDF_PATH}/(?P<id>[0-9]+)", "google.pdf")
    def pdf(request: Request) -> Response:
        if emulator.token_client(request.headers.get("authorization")) != CLIENT_ID:
            return Response(401, b"Unauthorized", {"Content-Type": "text/plain"})
        assert request.match is not None
        invoice = next((i for i in google.book.invoices if i["id"] == request.match["id"]), None)
        if invoice is None:
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        return Response(200, render_pdf(invoice), {"Content-Type": "application/pdf"})

    return google
