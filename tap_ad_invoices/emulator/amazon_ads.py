"""Amazon Ads: /adsAccounts/list, /billingStatements (create, poll), S3 statement downloads,
/invoiceSummaries/list and /billing/documents (with presigned or API-path PDFs).

The data is deterministic (derived from hashes, not from the clock): three
global accounts in several countries and currencies, monthly invoices from
January 2025 to October 2026, paid and unpaid, credit notes with negative
amounts, purchase orders holding commas, non-ASCII names. The CSV column names
are invented: Amazon does not publish them, and the tap must not depend on them.
/adsAccounts/list also lists accounts that are not CREATED (no statements), and
answers errors in its own shape, {errors: [{errorCode, errorId, errorMessage}]}.

Statement requests come in two forms (the guide's application/json with
YYYYMMDD, the model's media type with YYYY-MM-DD); `ads_statement_request_form`
says which one the API accepts ("any", "guide", "model"), the other is answered
415 (media type) or 400 (dates); `ads_invalid_accounts` are answered an unrelated 400.

Two regional hosts: NA at the root (`tap_config`), EU under `/ads-eu` with its own
Login with Amazon (`/ads-eu/auth/o2/token`), refresh token and accounts
(`tap_config_regions`). Access tokens name the region they were minted for, and a
host refuses another region's token.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import gzip
import hashlib
import io
import itertools
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import Any

import simplejson
from babel import Locale
from babel.numbers import format_decimal

from tap_ad_invoices.emulator.core import Emulator, Request, Response, json_response

CLIENT_ID = "amzn1.application-oa2-client.emulator0ads"
CLIENT_SECRET = "emulator-ads-client-secret-7f3a"
REFRESH_TOKEN = "Atzr|emulator-ads-refresh-token-91c2"

COUNTRY_CURRENCY = {
    "US": "USD",
    "CA": "CAD",
    "MX": "MXN",
    "DE": "EUR",
    "FR": "EUR",
    "UK": "GBP",
    "JP": "JPY",
    "AU": "AUD",
}
TAX_RATE = {
    "US": "0",
    "CA": "0.05",
    "MX": "0.16",
    "DE": "0.19",
    "FR": "0.20",
    "UK": "0.20",
    "JP": "0.10",
    "AU": "0.10",
}

ACCOUNTS = [
    ("amzn1.ads-account.g.emu1na000001", "Acme Outdoor Inc.", ["US", "CA"]),
    ("amzn1.ads-account.g.emu2eu000002", "Müller Gartenbedarf GmbH", ["DE", "FR", "UK"]),
    ("amzn1.ads-account.g.emu3fe000003", "株式会社さくら商事", ["JP", "AU"]),
]
# Listed by /adsAccounts/list after the CREATED ones; they have no billing statements.
INACTIVE_ACCOUNTS = [
    ("amzn1.ads-account.g.emu8na000008", "Acme Closed Store", ["US"], "DISABLED"),
    ("amzn1.ads-account.g.emu9na000009", "Acme New Brand", ["CA"], "PARTIALLY_CREATED"),
]
# The EU host's own accounts (a business authorised per region): other ids, other data.
EU_ACCOUNTS = [
    ("amzn1.ads-account.g.emu4eu000004", "Jardins Dupont SARL", ["FR", "DE"]),
]
REFRESH_TOKEN_EU = "Atzr|emulator-ads-eu-refresh-token-5e07"
# Path prefix of each regional host (at Amazon, advertising-api[-eu].amazon.com).
HOST_PREFIX = {"NA": "", "EU": "/ads-eu"}
EU_TOKEN_PATH = "/ads-eu/auth/o2/token"
# Access tokens are minted per client id; the EU region's carry this one, so a host
# can tell a token of another region (hosts differ at Amazon, not here).
TOKEN_CLIENT = {"NA": CLIENT_ID, "EU": f"{CLIENT_ID}#EU"}
HOST = "(?P<host>/ads-eu)?"  # route prefix: the NA host, or the EU one
MODEL_MEDIA_TYPE = "application/vnd.createbillingstatementsrequest.v1+json"
ACCOUNTS_MEDIA_TYPE = "application/vnd.listaccountsresource.v1+json"
FIRST_MONTH = dt.date(2025, 1, 1)
LAST_MONTH = dt.date(2026, 10, 1)
# Invoices issued on or after this date are still open in the emulator's world.
UNPAID_FROM = dt.date(2026, 9, 1)

HEADER = [
    "Invoice Number",
    "Invoice Date",
    "Due Date",
    "Invoice Status",
    "Country",
    "Currency",
    "Billing Period Start",
    "Billing Period End",
    "Advertiser Name",
    "Document Type",
    "Purchase Order",
    "Billable Amount",
    "Tax Amount",
    "Total Amount",
    "Amount Paid",
    "Remaining Amount",
    "Notes",
]


@dataclass
class AdsInvoice:
    account_id: str
    invoice_number: str
    invoice_date: dt.date
    due_date: dt.date
    status: str
    country_code: str
    currency: str
    period_start: dt.date
    period_end: dt.date
    advertiser: str
    document_type: str
    purchase_order: str
    billable_amount: Decimal
    tax_amount: Decimal
    total_amount: Decimal
    amount_paid: Decimal
    remaining_amount: Decimal
    notes: str


def _digits(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _quantum(currency: str) -> Decimal:
    return Decimal("1") if currency == "JPY" else Decimal("0.01")


def _months() -> list[dt.date]:
    months, month = [], FIRST_MONTH
    while month <= LAST_MONTH:
        months.append(month)
        month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return months


def _month_end(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def build_invoices(accounts: list[tuple[str, str, list[str]]] = ACCOUNTS) -> list[AdsInvoice]:
    invoices: list[AdsInvoice] = []
    for (account_id, name, countries), (index, month) in itertools.product(
        accounts, enumerate(_months())
    ):
        for country in countries:
            seed = _digits(account_id, country, month)
            currency = COUNTRY_CURRENCY[country]
            q = _quantum(currency)
            scale = Decimal(150) if currency == "JPY" else Decimal(1)
            billable = (Decimal(seed % 2_500_000) / 100 * scale + 25).quantize(q)
            invoices.append(_invoice(account_id, name, country, month, billable, seed, index))
            if seed % 7 == 0:  # a credit note against this month's invoice
                credit = -(billable * Decimal("0.1")).quantize(q)
                invoices.append(
                    _invoice(
                        account_id, name, country, month, credit, seed + 1, index, credit_note=True
                    )
                )
    return invoices


def _invoice(
    account_id: str,
    name: str,
    country: str,
    month: dt.date,
    billable: Decimal,
    seed: int,
    index: int,
    credit_note: bool = False,
) -> AdsInvoice:
    currency = COUNTRY_CURRENCY[country]
    q = _quantum(currency)
    tax = (billable * Decimal(TAX_RATE[country])).quantize(q)
    total = billable + tax
    issued = _month_end(month) + dt.timedelta(days=1 + seed % 3)
    paid = issued < UNPAID_FROM
    partial = not paid and seed % 3 == 0
    amount_paid = total if paid else ((total / 2).quantize(q) if partial else Decimal(0) * q)
    number = f"{'CN' if credit_note else 'IN'}-{country}-{month:%y%m}-{account_id[-4:]}"
    purchase_order = [
        "",
        f"PO {seed % 9000 + 1000}, {country}, Q{(month.month - 1) // 3 + 1}",
        f"PO-{seed % 100000}",
    ][seed % 3]
    notes = "Adjusted for invalid traffic,\nsee credit note" if credit_note else ""
    return AdsInvoice(
        account_id=account_id,
        invoice_number=number,
        invoice_date=issued,
        due_date=issued + dt.timedelta(days=30),
        status="Paid" if paid else ("Partially Paid" if partial else "Unpaid"),
        country_code=country,
        currency=currency,
        period_start=month,
        period_end=_month_end(month),
        advertiser=name,
        document_type="Credit Note" if credit_note else "Invoice",
        purchase_order=purchase_order,
        billable_amount=billable,
        tax_amount=tax,
        total_amount=total,
        amount_paid=amount_paid,
        remaining_amount=total - amount_paid,
        notes=notes,
    )


# Three header vocabularies, because Amazon publishes none: the tap must read each
# of them by meaning (knob ads_statement_vocabulary; columns in HEADER's order).
VOCABULARIES: dict[str, list[str]] = {
    "emulator": HEADER,
    "billed": [
        "Invoice #",
        "Issue Date",
        "Payment Due Date",
        "Payment Status",
        "Marketplace",
        "Currency",
        "Service Start Date",
        "Service End Date",
        "Advertiser",
        "Invoice Type",
        "PO Number",
        "Billed Amount",
        "Tax",
        "Total Amount Due",
        "Paid Amount",
        "Outstanding Balance",
        "Comments",
    ],
    "german": [
        "Rechnungsnummer",
        "Rechnungsdatum",
        "Fälligkeitsdatum",
        "Status",
        "Land",
        "Währung",
        "Leistungszeitraum Beginn",
        "Leistungszeitraum Ende",
        "Werbetreibender",
        "Belegart",
        "Bestellnummer",
        "Nettobetrag",
        "Steuer",
        "Rechnungsbetrag",
        "Bezahlt",
        "Offener Betrag",
        "Notizen",
    ],
}


def _money(value: Decimal, locale: str) -> str:
    """As the console writes amounts: the locale's own separators and grouping, minus sign
    in front, and every digit of the amount's scale (2221.10 stays 2,221.10)."""
    exponent = value.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    grouping = Locale.parse(locale).decimal_formats[None].pattern.split(".")[0]
    pattern = f"{grouping}.{'0' * places}" if places else grouping
    return format_decimal(value, format=pattern, locale=locale, numbering_system="latn")


def _date(value: dt.date, vocabulary: str) -> str:
    return value.strftime("%d.%m.%Y") if vocabulary == "german" else value.isoformat()


def render_csv(
    invoices: list[AdsInvoice],
    *,
    locale: str = "en_US",
    vocabulary: str = "emulator",
    drop_columns: Iterable[str] = (),
) -> bytes:
    """The statement as Amazon would write it; `drop_columns` names columns of HEADER."""
    header = VOCABULARIES[vocabulary]
    keep = [i for i, name in enumerate(HEADER) if name not in set(drop_columns)]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header[i] for i in keep])
    for position, inv in enumerate(invoices):
        if position == 2:
            out.write("\r\n")  # real exports carry stray blank lines
        row = [
            inv.invoice_number,
            _date(inv.invoice_date, vocabulary),
            _date(inv.due_date, vocabulary),
            inv.status,
            inv.country_code,
            inv.currency,
            _date(inv.period_start, vocabulary),
            _date(inv.period_end, vocabulary),
            inv.advertiser,
            inv.document_type,
            inv.purchase_order,
            _money(inv.billable_amount, locale),
            _money(inv.tax_amount, locale),
            _money(inv.total_amount, locale),
            _money(inv.amount_paid, locale),
            _money(inv.remaining_amount, locale),
            inv.notes,
        ]
        writer.writerow([row[i] for i in keep])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


_SYNTHETIC: dict[int, bytes] = {}


def synthetic_statement(invoices: list[AdsInvoice], rows: int) -> bytes:
    """A statement of `rows` distinct invoices (the emulator's, renumbered), for benchmarks."""
    if rows not in _SYNTHETIC:
        templates = invoices[:50]
        numbered = [
            replace(templates[n % len(templates)], invoice_number=f"SYN-{n:09d}")
            for n in range(rows)
        ]
        _SYNTHETIC.clear()  # one at a time: a million rows is a few hundred MB
        _SYNTHETIC[rows] = render_csv(numbered)
    return _SYNTHETIC[rows]


def bench_account_ids(count: int) -> list[str]:
    return [f"amzn1.ads-account.g.bench{n:06d}" for n in range(count)]


# Statement request forms: (media types taken, date format) of the guide's and the model's.
REQUEST_FORMS = {
    "guide": ({"application/json", MODEL_MEDIA_TYPE}, "YYYYMMDD"),
    "model": ({MODEL_MEDIA_TYPE}, "YYYY-MM-DD"),
}
DATE_FORMATS = {"YYYYMMDD": "%Y%m%d", "YYYY-MM-DD": "%Y-%m-%d"}


def parse_request_date(text: str, accepted: list[str]) -> dt.date | None:
    for name in accepted:
        try:
            return dt.datetime.strptime(text, DATE_FORMATS[name]).date()
        except (ValueError, TypeError):
            continue
    return None


def region_of(request: Request) -> str:
    """Which regional host a request reached, from its path prefix."""
    prefix = request.match["host"] if request.match is not None else None
    return next((r for r, p in HOST_PREFIX.items() if p and p == prefix), "NA")


def accounts_error(status: int, code: str, message: str) -> Response:
    """/adsAccounts/list's error shape (the accounts API, not the billing one)."""
    error_id = hashlib.sha256(f"{code}{message}".encode()).hexdigest()[:8]
    return json_response(
        status,
        {"errors": [{"errorCode": code, "errorId": f"emu-{error_id}", "errorMessage": message}]},
    )


class AmazonAdsEmulator:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.invoices = build_invoices()  # the NA host's
        # Per regional host: its accounts and their invoices.
        self.regions: dict[str, tuple[list[tuple[str, str, list[str]]], list[AdsInvoice]]] = {
            "NA": (ACCOUNTS, self.invoices),
            "EU": (EU_ACCOUNTS, build_invoices(EU_ACCOUNTS)),
        }
        self.statements: dict[str, dict[str, Any]] = {}
        self.sequence = itertools.count(1)
        self.create_requests: list[dict[str, Any]] = []
        # amazon_ads_invoices: (account, body) of every summaries call; calls held per account.
        self.summary_requests: list[tuple[str, dict[str, Any]]] = []
        self.list_holds: dict[str, threading.Event] = {}

    def tap_config(self) -> dict[str, Any]:
        base = self.emulator.base_url
        return {
            "amazon_ads": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN,
                "region": "NA",
                "api_url": base,
                "token_url": f"{base}/auth/o2/token",
                "poll_interval_seconds": 0.2,
            }
        }

    def tap_config_regions(self) -> dict[str, Any]:
        """The `regions` form: the NA and the EU host of one app, a refresh token each."""
        base = self.emulator.base_url
        return {
            "amazon_ads": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "regions": [
                    {
                        "region": "NA",
                        "refresh_token": REFRESH_TOKEN,
                        "api_url": base,
                        "token_url": f"{base}/auth/o2/token",
                    },
                    {
                        "region": "EU",
                        "refresh_token": REFRESH_TOKEN_EU,
                        "api_url": f"{base}{HOST_PREFIX['EU']}",
                        "token_url": f"{base}{EU_TOKEN_PATH}",
                    },
                ],
                "poll_interval_seconds": 0.2,
            }
        }

    def region_invoices(self, region: str) -> list[AdsInvoice]:
        return self.regions[region][1]

    def find(self, account_id: str, number: str) -> AdsInvoice | None:
        return next(
            (
                i
                for _, invoices in self.regions.values()
                for i in invoices
                if i.account_id == account_id and i.invoice_number == number
            ),
            None,
        )

    # ground truth for tests, and changes between runs
    def truth(self) -> list[dict[str, Any]]:
        return [asdict(inv) for inv in self.invoices]

    def mutate(self, change: dict[str, Any]) -> dict[str, Any]:
        if change["op"] == "pay":
            for inv in self.invoices:
                if inv.invoice_number == change["invoice_number"]:
                    inv.status, inv.amount_paid, inv.remaining_amount = (
                        "Paid",
                        inv.total_amount,
                        inv.total_amount - inv.total_amount,
                    )
                    return asdict(inv)
        if change["op"] == "add":
            template = next(i for i in self.invoices if i.account_id == change["account_id"])
            issued = dt.date.fromisoformat(change["invoice_date"])
            amount = Decimal(change["billable_amount"])
            new = AdsInvoice(
                **{
                    **asdict(template),
                    "invoice_number": change["invoice_number"],
                    "invoice_date": issued,
                    "due_date": issued + dt.timedelta(days=30),
                    "status": "Unpaid",
                    "billable_amount": amount,
                    "tax_amount": Decimal(0),
                    "total_amount": amount,
                    "amount_paid": Decimal("0.00"),
                    "remaining_amount": amount,
                    "purchase_order": "",
                    "notes": "",
                }
            )
            self.invoices.append(new)
            return asdict(new)
        raise ValueError(f"unknown change {change!r}")

    def _unauthorized(self, request: Request) -> Response | None:
        reason = self.refusal(request)
        return (
            None
            if reason is None
            else json_response(401, {"code": "UNAUTHORIZED", "details": reason})
        )

    def refusal(self, request: Request) -> str | None:
        """Why the call's credentials are refused on this host, or None."""
        client = self.emulator.token_client(request.headers.get("authorization"))
        if client is None:
            return "Not authorized"
        if client != TOKEN_CLIENT[region_of(request)]:
            return "Not authorized: token of another region"
        if request.headers.get("amazon-advertising-api-clientid") != CLIENT_ID:
            return "Invalid Amazon-Advertising-API-ClientId"
        return None

    def statement_rows(self, statement: dict[str, Any]) -> list[AdsInvoice]:
        return [
            inv
            for inv in self.region_invoices(statement["region"])
            if inv.account_id == statement["account_id"]
            and statement["start"] <= inv.invoice_date <= statement["end"]
            and (not statement["countries"] or inv.country_code in statement["countries"])
        ]


def install(emulator: Emulator) -> AmazonAdsEmulator:
    ads = AmazonAdsEmulator(emulator)
    emulator.lwa_clients[CLIENT_ID] = (CLIENT_SECRET, REFRESH_TOKEN)  # type: ignore[attr-defined]
    emulator.knobs.setdefault("ads_polls_until_ready", 1)
    # Real statements take minutes to generate; benchmarks set this to measure waiting.
    emulator.knobs.setdefault("ads_generation_seconds", 0)
    emulator.knobs.setdefault("ads_failed_accounts", [])
    # Which statement request form the API takes: "any", "guide" or "model" (docstring).
    emulator.knobs.setdefault("ads_statement_request_form", "any")
    emulator.knobs.setdefault("ads_invalid_accounts", [])  # create: an unrelated 400
    emulator.knobs.setdefault("ads_list_inactive_accounts", True)
    # NA account ids the EU host lists too: one global account serving in both regions.
    emulator.knobs.setdefault("ads_eu_also_lists", [])
    # /adsAccounts/list answers this error: {"status", "errorCode", "errorMessage"}.
    emulator.knobs.setdefault("ads_accounts_error", None)
    emulator.knobs.setdefault("ads_create_response_key", "billingStatementId")
    emulator.knobs.setdefault("ads_link_ttl_seconds", 10799)
    emulator.knobs.setdefault("ads_gzip_accounts", [ACCOUNTS[1][0]])
    # Statement content: header vocabulary, columns left out, or a crafted file per account.
    emulator.knobs.setdefault("ads_statement_vocabulary", "emulator")
    emulator.knobs.setdefault("ads_statement_drop_columns", [])
    emulator.knobs.setdefault("ads_raw_statements", {})
    emulator.knobs.setdefault("ads_synthetic_rows", 0)  # benchmarks: one statement this long
    if emulator.knobs["ads_synthetic_rows"]:  # rendered now, not while a tap waits for it
        synthetic_statement(ads.invoices, int(emulator.knobs["ads_synthetic_rows"]))
    # Benchmarks ask for statements of many accounts: extra ones exist, with no invoices.
    # Benchmarks ask for statements of many accounts: extra ones exist (NA), with no invoices.
    known_accounts = {
        "NA": {a[0] for a in ACCOUNTS}
        | set(bench_account_ids(int(emulator.knobs.get("ads_extra_accounts") or 0))),
        "EU": {a[0] for a in EU_ACCOUNTS},
    }
    install_invoice_routes(emulator, ads)

    @emulator.route("POST", EU_TOKEN_PATH, "ads.lwa.eu")
    def eu_token(request: Request) -> Response:
        """Login with Amazon for the EU host (api.amazon.co.uk): the EU refresh token only."""
        form = request.form()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return json_response(401, {"error": "invalid_client"})
        if form.get("refresh_token") != REFRESH_TOKEN_EU:
            return json_response(
                400,
                {"error": "invalid_grant", "error_description": "The request has an invalid grant"},
            )
        access_token, ttl = emulator.mint_token(TOKEN_CLIENT["EU"], "Atza|")
        return json_response(
            200, {"access_token": access_token, "token_type": "bearer", "expires_in": ttl}
        )

    @emulator.route("POST", f"{HOST}/adsAccounts/list", "ads.accounts.list")
    def list_accounts(request: Request) -> Response:
        if (reason := ads.refusal(request)) is not None:
            return accounts_error(401, "UNAUTHORIZED", reason)
        if (error := emulator.knobs["ads_accounts_error"]) is not None:
            return accounts_error(int(error["status"]), error["errorCode"], error["errorMessage"])
        if request.headers.get("content-type") != ACCOUNTS_MEDIA_TYPE:
            return accounts_error(
                415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be {ACCOUNTS_MEDIA_TYPE}"
            )
        body = request.json()
        if not 1 <= int(body.get("maxResults", 100)) <= 100:
            return accounts_error(400, "INVALID_ARGUMENT", "maxResults must be between 1 and 100")
        region = region_of(request)
        listed: list[tuple[str, str, list[str], str]] = [
            (*a, "CREATED") for a in ads.regions[region][0]
        ]
        if region == "NA" and emulator.knobs["ads_list_inactive_accounts"]:
            listed += INACTIVE_ACCOUNTS
        if region == "EU":  # a global account serving in both: listed by both hosts
            also = set(emulator.knobs.get("ads_eu_also_lists") or [])
            listed += [(*a, "CREATED") for a in ads.regions["NA"][0] if a[0] in also]
        page_size = min(int(body.get("maxResults", 100)), 2)  # small pages exercise paging
        start = int(body.get("nextToken") or 0)
        page = listed[start : start + page_size]
        result: dict[str, Any] = {
            "adsAccounts": [
                {
                    "adsAccountId": a[0],
                    "accountName": a[1],
                    "countryCodes": a[2],
                    "status": a[3],
                }
                for a in page
            ]
        }
        if start + page_size < len(listed):
            result["nextToken"] = str(start + page_size)
        return json_response(200, result)

    def refused_form(request: Request, body: dict[str, Any]) -> Response | None:
        """The answer to a request in a form this API does not take, as a real API words it."""
        form = emulator.knobs["ads_statement_request_form"]
        forms = list(REQUEST_FORMS.values()) if form == "any" else [REQUEST_FORMS[form]]
        media_type = (request.headers.get("content-type") or "").split(";")[0].strip()
        if not any(media_type in types for types, _ in forms):
            return json_response(
                415,
                {
                    "code": "UNSUPPORTED_MEDIA_TYPE",
                    "details": f"Content type '{media_type}' is not supported; "
                    f"expected {MODEL_MEDIA_TYPE}",
                },
            )
        dates = [date for types, date in forms if media_type in types]
        for key in ("startDate", "endDate"):
            if parse_request_date(str(body.get(key)), dates) is None:
                return json_response(
                    400,
                    {
                        "code": "INVALID_ARGUMENT",
                        "details": f"Invalid {key} '{body.get(key)}': "
                        f"expected {' or '.join(dates)}",
                    },
                )
        return None

    @emulator.route("POST", f"{HOST}/billingStatements", "ads.statements.create")
    def create(request: Request) -> Response:
        if (denied := ads._unauthorized(request)) is not None:
            return denied
        region = region_of(request)
        account_id = request.headers.get("amazon-ads-accountid")
        if account_id not in known_accounts[region]:
            return json_response(404, {"code": "404", "details": "Account does not exist"})
        body = request.json()
        ads.create_requests.append(body)
        if account_id in emulator.knobs["ads_invalid_accounts"]:
            return json_response(
                400,
                {
                    "code": "INVALID_ARGUMENT",
                    "details": "Amazon-Ads-AccountId is not eligible for billing statements",
                },
            )
        if (refused := refused_form(request, body)) is not None:
            return refused
        if not body.get("locale"):
            return json_response(400, {"code": "INVALID_ARGUMENT", "details": "locale is required"})
        start = parse_request_date(str(body["startDate"]), list(DATE_FORMATS))
        end = parse_request_date(str(body["endDate"]), list(DATE_FORMATS))
        assert start is not None and end is not None
        n = next(ads.sequence)
        countries = next((a[2] for a in [*ACCOUNTS, *EU_ACCOUNTS] if a[0] == account_id), ["US"])
        currency = COUNTRY_CURRENCY[countries[0]]
        raw_id = (
            f"{account_id};GLOBAL_ACCOUNT&CSV;{body['locale']};{currency};"
            f"{start:%Y%m%d};{end:%Y%m%d};{n:09d}"
        )
        statement_id = base64.b64encode(raw_id.encode()).decode()
        ads.statements[statement_id] = {
            "region": region,
            "account_id": account_id,
            "start": start,
            "end": end,
            "countries": body.get("countryCodes") or [],
            "polls": 0,
            "n": n,
            "locale": body["locale"],
            "created": time.monotonic(),
        }
        return json_response(
            202, {emulator.knobs["ads_create_response_key"]: statement_id, "details": "SUCCESS"}
        )

    @emulator.route("GET", f"{HOST}/billingStatements/(?P<id>[^/]+)", "ads.statements.get")
    def poll(request: Request) -> Response:
        if (denied := ads._unauthorized(request)) is not None:
            return denied
        assert request.match is not None
        statement = ads.statements.get(request.match["id"])
        if statement is None or statement["region"] != region_of(request):
            return json_response(
                404, {"code": "404", "details": "Billing statement not found for the given id"}
            )
        statement["polls"] += 1
        statement.setdefault("first_polled", time.monotonic())
        if statement["account_id"] in emulator.knobs["ads_failed_accounts"]:
            return json_response(
                200, {"details": "billing statement generation failed", "reportStatus": "FAILED"}
            )
        generating = time.monotonic() - statement["created"] < float(
            emulator.knobs["ads_generation_seconds"]
        )
        if generating or statement["polls"] < int(emulator.knobs["ads_polls_until_ready"]):
            return json_response(
                200,
                {
                    "details": "Billing Statement request is in progress",
                    "reportStatus": "IN_PROGRESS",
                },
            )
        path = (
            f"/s3/billing-statements/{request.match['id']}/"
            f"{statement['account_id']}{statement['end']:%Y%m%d}-{statement['n']}.csv"
        )
        return json_response(
            200,
            {
                "details": "Billing Statement request generated successfully",
                "reportStatus": "SUCCESS",
                "s3DownloadLink": emulator.presign(
                    path, float(emulator.knobs["ads_link_ttl_seconds"])
                ),
            },
        )

    @emulator.route("GET", "/s3/billing-statements/(?P<id>[^/]+)/[^/]+", "ads.statements.download")
    def download(request: Request) -> Response:
        if (refused := emulator.refuse_presigned(request)) is not None:
            return refused
        assert request.match is not None
        statement = ads.statements[request.match["id"]]
        raw = emulator.knobs["ads_raw_statements"].get(statement["account_id"])
        rows = int(emulator.knobs["ads_synthetic_rows"])
        body = (
            synthetic_statement(ads.invoices, rows)
            if rows
            else raw.encode()
            if raw is not None
            else render_csv(
                ads.statement_rows(statement),
                locale=statement["locale"],
                vocabulary=emulator.knobs["ads_statement_vocabulary"],
                drop_columns=emulator.knobs["ads_statement_drop_columns"],
            )
        )
        if statement["account_id"] in emulator.knobs["ads_gzip_accounts"]:
            body = gzip.compress(body, mtime=0)
        return Response(200, body, {"Content-Type": "text/csv"})

    return ads


# -- invoice summaries and billing documents (stream amazon_ads_invoices) --------------
# The same invoices as the statements: one summary per invoice number, its amounts and
# currency those of the statement row, so both streams describe one world.
SUMMARIES_MEDIA_TYPE = "application/vnd.billingInvoiceSummary.v1+json"
DOCUMENTS_MEDIA_TYPE = "application/vnd.billingDocuments.v1+json"
DOC_TYPES = {"INVOICE", "CREDIT_MEMO", "GIS_INVOICE", "GIS_CREDIT_MEMO"}
DOC_TYPES |= {"PAYMENT_COMPLEMENT", "PREPAYMENT_RECEIPT"}
STATUS_CODES = {"Paid": "PAID", "Partially Paid": "PARTIALLY_PAID", "Unpaid": "UNPAID"}
# The newest AU invoice of the third account: the API lists its PDF as not yet available.
UNAVAILABLE_DOCUMENT = "IN-AU-2610-0003"
UNAVAILABLE_REASON = "Document generation is in progress"


def _money_json(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currencyCode": currency}


def invoice_summary(inv: AdsInvoice) -> dict[str, Any]:
    """A BillingInvoiceSummary for one invoice; a credit note's amount due is negative."""
    summary: dict[str, Any] = {
        "id": inv.invoice_number,
        "issuedDate": inv.invoice_date.isoformat(),
        "dueDate": inv.due_date.isoformat(),
        "amountDue": _money_json(inv.total_amount, inv.currency),
        "remainingAmountDue": _money_json(inv.remaining_amount, inv.currency),
        "status": {
            "code": STATUS_CODES[inv.status],
            "value": inv.status,
            "description": f"Invoice is {inv.status.lower()}",
        },
        "statusDecorator": {"code": "NONE", "value": ""},
        "paymentMethodType": {"code": "INVOICE", "value": "Invoice"},
        "ePaymentStatus": {"code": "NOT_APPLICABLE", "value": "Not applicable"},
        "country": {"code": inv.country_code, "value": inv.country_code},
    }
    if inv.purchase_order:
        summary["reserveOrderNumber"] = inv.purchase_order
    if inv.document_type == "Credit Note":
        summary["refundDetails"] = {
            "amount": _money_json(-inv.total_amount, inv.currency),
            "reason": "Invalid traffic",
            "status": {"code": "ISSUED", "value": "Issued"},
        }
    return summary


def document_pdf(inv: AdsInvoice) -> bytes:
    """A one-page PDF naming the invoice and its total: what the billing API serves."""
    text = f"Amazon Ads {inv.document_type} {inv.invoice_number} {inv.total_amount} {inv.currency}"
    content = f"BT /F1 11 Tf 60 740 Td ({text}) Tj ET".encode()
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
    ]
    pdf = b"%PDF-1.7\n"
    positions = []
    for number, body in enumerate(bodies, 1):
        positions.append(len(pdf))
        pdf += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    table = "".join(f"{p:010d} 00000 n \n" for p in positions)
    trailer = f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{len(pdf)}\n%%EOF\n"
    return (
        pdf + f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n{table}".encode() + trailer.encode()
    )


def _decimal_json(status: int, body: Any) -> Response:
    """JSON with amounts as exact numbers, as the billing API writes them."""
    return Response(
        status,
        simplejson.dumps(body, use_decimal=True).encode(),
        {"Content-Type": SUMMARIES_MEDIA_TYPE},
    )


def _documents_json(answer: dict[str, Any]) -> Response:
    return Response(200, json.dumps(answer).encode(), {"Content-Type": DOCUMENTS_MEDIA_TYPE})


def install_invoice_routes(emulator: Emulator, ads: AmazonAdsEmulator) -> None:
    emulator.knobs.setdefault("ads_invoice_page_size", 20)  # small pages exercise paging
    # Where storagePath points: "presigned" (an S3-like link) or "path" (on the API host).
    emulator.knobs.setdefault("ads_document_storage", "presigned")
    emulator.knobs.setdefault("ads_document_link_ttl_seconds", 300)
    emulator.knobs.setdefault(
        "ads_unavailable_documents", {UNAVAILABLE_DOCUMENT: UNAVAILABLE_REASON}
    )

    def checked(request: Request, media_type: str | None) -> Response | None:
        """The model's request checks: credentials, the global account header, media types."""
        if (denied := ads._unauthorized(request)) is not None:
            return denied
        account_id = request.headers.get("amazon-ads-accountid")
        if not account_id:
            return json_response(
                400, {"code": "400", "details": "Amazon-Ads-AccountId is required"}
            )
        if account_id not in {a[0] for a in ads.regions[region_of(request)][0]}:
            return json_response(400, {"code": "400", "details": "Unknown advertising account"})
        if media_type and request.headers.get("content-type") != media_type:
            return json_response(415, {"code": "415", "details": "Unsupported media type"})
        if media_type and request.headers.get("accept") != media_type:
            return json_response(406, {"code": "406", "details": "Not acceptable"})
        return None

    find = ads.find

    @emulator.route("POST", f"{HOST}/invoiceSummaries/list", "ads.invoices.list")
    def list_summaries(request: Request) -> Response:
        if (refused := checked(request, SUMMARIES_MEDIA_TYPE)) is not None:
            return refused
        body = request.json()
        account_id = request.headers["amazon-ads-accountid"]
        ads.summary_requests.append((account_id, body))
        hold = ads.list_holds.get(account_id)
        if hold is not None:  # a test keeps the tap busy here, e.g. to kill it mid-run
            hold.wait(timeout=120)
        dates = body.get("invoiceIssuedDateRangeFilter") or {}
        first = dt.date.fromisoformat(dates.get("startDate") or "1970-01-01")
        last = dt.date.fromisoformat(dates.get("endDate") or "9999-12-31")
        matching = sorted(
            (
                i
                for i in ads.region_invoices(region_of(request))
                if i.account_id == account_id and first <= i.invoice_date <= last
            ),
            key=lambda i: (i.invoice_date, i.invoice_number),
        )
        size = min(int(body.get("maxResults", 100)), int(emulator.knobs["ads_invoice_page_size"]))
        offset = int(body.get("nextToken") or 0)
        page: dict[str, Any] = {
            "aggregation": {
                "invoiceSummaries": [invoice_summary(i) for i in matching[offset : offset + size]]
            }
        }
        if offset + size < len(matching):
            page["nextToken"] = str(offset + size)
        return _decimal_json(200, page)

    @emulator.route("GET", f"{HOST}/billing/documents/(?P<id>[^/]+)", "ads.documents.get")
    def documents(request: Request) -> Response:
        if (refused := checked(request, None)) is not None:
            return refused
        assert request.match is not None
        account_id = request.headers["amazon-ads-accountid"]
        wanted = request.query.get("docType") or []
        if not wanted or not set(wanted) <= DOC_TYPES:
            return json_response(400, {"code": "400", "details": "Invalid docType"})
        inv = find(account_id, request.match["id"])
        if inv is None:
            return json_response(404, {"code": "404", "details": "Document not found"})
        doc_type = "CREDIT_MEMO" if inv.document_type == "Credit Note" else "INVOICE"
        document: dict[str, Any] = {
            "docType": doc_type,
            "contentType": "application/pdf",
            "fileName": f"{inv.invoice_number}.pdf",
        }
        answer: dict[str, Any] = {"availableDocuments": [], "unavailableDocuments": []}
        reason = emulator.knobs["ads_unavailable_documents"].get(inv.invoice_number)
        if doc_type not in wanted:  # asked only for other types: nothing to list
            return _documents_json(answer)
        if reason:
            answer["unavailableDocuments"].append({**document, "reason": reason})
        else:
            # A path on the API host, so relative to the region's host (its prefix here).
            path = f"/billing/documents/{inv.invoice_number}/file"
            if emulator.knobs["ads_document_storage"] == "presigned":
                path = emulator.presign(
                    f"/s3/billing-documents/{account_id}/{inv.invoice_number}.pdf",
                    float(emulator.knobs["ads_document_link_ttl_seconds"]),
                )
            answer["availableDocuments"].append({**document, "storagePath": path})
        return Response(200, json.dumps(answer).encode(), {"Content-Type": DOCUMENTS_MEDIA_TYPE})

    @emulator.route(
        "GET",
        "/s3/billing-documents/(?P<account>[^/]+)/(?P<id>[^/]+)\\.pdf",
        "ads.documents.download",
    )
    def presigned_document(request: Request) -> Response:
        if (refused := emulator.refuse_presigned(request)) is not None:
            return refused
        assert request.match is not None
        inv = find(request.match["account"], request.match["id"])
        if inv is None:
            return Response(404, b"<Error><Code>NoSuchKey</Code></Error>")
        return Response(200, document_pdf(inv), {"Content-Type": "application/pdf"})

    @emulator.route("GET", f"{HOST}/billing/documents/(?P<id>[^/]+)/file", "ads.documents.file")
    def document_file(request: Request) -> Response:
        if (refused := checked(request, None)) is not None:
            return refused
        assert request.match is not None
        inv = find(request.headers["amazon-ads-accountid"], request.match["id"])
        if inv is None:
            return json_response(404, {"code": "404", "details": "Document not found"})
        return Response(200, document_pdf(inv), {"Content-Type": "application/pdf"})
