"""What each stream's table must hold, derived from the emulator's ground truth.

Amazon Ads (and its rows of `invoices`) is asserted column by column, every column
required. Google Ads, Amazon Business and Meta are checked by keys, counts, and the
amounts, types and digests their truth holds, for the columns the streams have. A
stream the tap gains later and that is not listed here still gets the generic
checks (table present, no duplicate keys, equal after crashes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.amazon_ads.streams import rereads_from
from tap_ad_invoices.windows import plan_windows

Key = tuple[Any, ...]
MICROS = Decimal(1_000_000)


def today_utc() -> dt.date:
    # The tap's end date defaults to now in UTC (settings.sync_range).
    return dt.datetime.now(dt.timezone.utc).date()


@dataclass(frozen=True)
class StreamExpectation:
    source: str  # the emulator source whose truth this stream mirrors
    # Rows keyed by primary key; each row maps a column to its exact value. Columns not
    # named in a row are not compared.
    rows: Callable[[Any, dt.date, dt.date], dict[Key, dict[str, Any]]]
    # Columns that depend on the run rather than the data (request ids, windows).
    run_columns: frozenset[str] = field(default_factory=frozenset)
    date_columns: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()
    json_columns: tuple[str, ...] = ()
    # The keys the truth accounts for completely: a stored key it owns but does not list
    # is an error. Keys it does not own (other platforms' rows) may exist besides.
    owns: Callable[[Key], bool] = lambda key: True


def _date(value: str) -> dt.date:
    return dt.date.fromisoformat(str(value)[:10])


# -- Amazon Ads ----------------------------------------------------------------------


def amazon_ads_rows(
    truth: list[dict[str, Any]], start: dt.date, end: dt.date
) -> dict[Key, dict[str, Any]]:
    rows: dict[Key, dict[str, Any]] = {}
    for invoice in truth:
        issued = _date(invoice["invoice_date"])
        if not start <= issued <= end:
            continue  # outside the run's start_date..now: never requested
        rows[(invoice["account_id"], invoice["invoice_number"])] = {
            "invoice_number": invoice["invoice_number"],
            "document_type": invoice["document_type"],
            "invoice_status": invoice["status"],
            "invoice_date": issued,
            "due_date": _date(invoice["due_date"]),
            "service_start_date": _date(invoice["period_start"]),
            "service_end_date": _date(invoice["period_end"]),
            "country_code": invoice["country_code"],
            "currency": invoice["currency"],
            "advertiser_name": invoice["advertiser"],
            "purchase_order": invoice["purchase_order"] or None,
            "billable_amount": Decimal(str(invoice["billable_amount"])),
            "tax_amount": Decimal(str(invoice["tax_amount"])),
            "total_amount": Decimal(str(invoice["total_amount"])),
            "amount_paid": Decimal(str(invoice["amount_paid"])),
            "remaining_amount": Decimal(str(invoice["remaining_amount"])),
        }
    return rows


AMAZON_ADS = StreamExpectation(
    source="amazon_ads",
    rows=amazon_ads_rows,
    run_columns=frozenset({"billing_statement_id", "statement_start_date", "statement_end_date"}),
    date_columns=(
        "invoice_date",
        "due_date",
        "service_start_date",
        "service_end_date",
        "statement_start_date",
        "statement_end_date",
    ),
    numeric_columns=(
        "billable_amount",
        "tax_amount",
        "total_amount",
        "amount_paid",
        "remaining_amount",
    ),
    json_columns=("columns",),
)


def amazon_ads_statement_windows(
    config: dict[str, Any], accounts: Iterable[str], since: dt.date | None = None
) -> int:
    """How many statements a run creates: the stream's own window plan, per account.

    `since` is the bookmark of an earlier run (None: first run from start_date).
    """
    settings = AmazonAdsSettings.from_section(config["amazon_ads"])
    start = _date(config["start_date"])
    if since is not None:
        start = rereads_from(start, today_utc(), since, settings)
    windows = plan_windows(start, today_utc(), settings.window_days)
    return len(windows) * len(set(accounts))


# -- Google Ads ----------------------------------------------------------------------


def google_ads_rows(
    truth: dict[str, Any], start: dt.date, end: dt.date
) -> dict[Key, dict[str, Any]]:
    rows: dict[Key, dict[str, Any]] = {}
    for invoice in truth["invoices"]:
        if not start <= _date(invoice["issue_date"]) <= end:
            continue
        row: dict[str, Any] = {
            "issue_date": _date(invoice["issue_date"]),
            "currency_code": invoice["currency_code"],
        }
        for amount in ("total_amount", "subtotal_amount", "tax_amount"):
            micros = int(invoice[f"{amount}_micros"])
            row[f"{amount}_micros"] = micros
            row[amount] = Decimal(micros) / MICROS  # exact: micros are integers
        rows[(str(invoice["id"]),)] = row
    return rows


GOOGLE_ADS = StreamExpectation(
    source="google_ads",
    rows=google_ads_rows,
    date_columns=("issue_date", "due_date"),
    numeric_columns=("total_amount", "subtotal_amount", "tax_amount"),
    json_columns=("account_budget_summaries",),
)


# -- Amazon Business -----------------------------------------------------------------


def amazon_business_transaction_rows(
    truth: dict[str, Any], start: dt.date, end: dt.date
) -> dict[Key, dict[str, Any]]:
    return {
        (t["transactionId"],): {
            "amount": Decimal(t["amount"]["amount"]),
            "currency_code": t["amount"]["currencyCode"],
        }
        for t in truth["transactions"]
        if start <= _date(t["transactionDate"]) <= end
    }


def amazon_business_document_rows(
    truth: dict[str, Any], start: dt.date, end: dt.date
) -> dict[Key, dict[str, Any]]:
    return {
        (d["invoice_number"], d["document_type"]): {"sha256": d["sha256"]}
        for d in truth["documents"]
    }


AMAZON_BUSINESS_TRANSACTIONS = StreamExpectation(
    source="amazon_business", rows=amazon_business_transaction_rows, numeric_columns=("amount",)
)
AMAZON_BUSINESS_DOCUMENTS = StreamExpectation(
    source="amazon_business",
    rows=amazon_business_document_rows,
    # Report ids are the run's requests; a CANCELLED report (a document type an invoice
    # does not have) may be recorded too, so only the served documents are required.
    run_columns=frozenset({"report_id", "report_document_id"}),
    owns=lambda key: False,
)

# -- Meta ------------------------------------------------------------------------------


def _meta_issued(truth: dict[str, Any], start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    return [i for i in truth["invoices"] if start <= _date(i["_issue_date"]) <= end]


def meta_invoice_rows(
    truth: dict[str, Any], start: dt.date, end: dt.date
) -> dict[Key, dict[str, Any]]:
    return {
        (invoice["_business"], invoice["id"]): {
            "invoice_id": invoice["invoice_id"],
            "type": invoice["type"],
            "currency": invoice["currency"],
            "issue_date": _date(invoice["_issue_date"]),
            "amount": Decimal(invoice["amount"]),
            "payment_status": invoice["payment_status"],
            "pdf_sha256": truth["pdf_sha256"][invoice["id"]],
        }
        for invoice in _meta_issued(truth, start, end)
    }


def meta_campaign_rows(
    truth: dict[str, Any], start: dt.date, end: dt.date
) -> dict[Key, dict[str, Any]]:
    return {
        (invoice["id"], number): {
            "campaign_id": line["campaign_id"],
            "amount": Decimal(line["amount"]),
            "impressions": line["impressions"],
        }
        for invoice in _meta_issued(truth, start, end)
        for number, line in enumerate(truth["campaigns"][invoice["id"]], start=1)
    }


META_INVOICES = StreamExpectation(
    source="meta",
    rows=meta_invoice_rows,
    date_columns=("issue_date",),
    numeric_columns=("amount",),
    json_columns=("amount_due", "billed_amount_details"),
)
META_CAMPAIGNS = StreamExpectation(
    source="meta", rows=meta_campaign_rows, numeric_columns=("amount",)
)

# -- invoices: every platform in one shape (Amazon Ads rows asserted) --------------------


def _status_name(text: str) -> str:
    return "_".join(text.strip().lower().replace("-", " ").split())


def unified_amazon_ads_rows(
    truth: list[dict[str, Any]], start: dt.date, end: dt.date
) -> dict[Key, dict[str, Any]]:
    """The Amazon Ads rows of `invoices`: credit notes are credit memos with negative amounts."""
    rows: dict[Key, dict[str, Any]] = {}
    for (account_id, number), ads in amazon_ads_rows(truth, start, end).items():
        credit = "credit" in ads["document_type"].lower() or ads["total_amount"] < 0
        kind = "credit_memo" if credit else "invoice"

        def signed(amount: Decimal, credit: bool = credit) -> Decimal:
            return -abs(amount) if credit else amount

        # The warehouse's catalog selects amazon_ads_invoices, so the invoice summaries
        # feed these rows (README: which stream feeds `invoices`): the total is the
        # amount due, the PDF is stored; subtotal, tax and advertiser name are only on
        # the statement rows.
        rows[("amazon_ads", account_id, number, kind)] = {
            "issue_date": ads["invoice_date"],
            "due_date": ads["due_date"],
            "currency": ads["currency"],
            "subtotal_amount": None,
            "tax_amount": None,
            "total_amount": signed(ads["total_amount"]),
            "status": _status_name(ads["invoice_status"]),
            "account_name": None,
            "source_stream": "amazon_ads_invoices",
        }
    return rows


INVOICES = StreamExpectation(
    source="amazon_ads",
    rows=unified_amazon_ads_rows,
    date_columns=("issue_date", "due_date", "service_start_date", "service_end_date"),
    numeric_columns=("subtotal_amount", "tax_amount", "total_amount"),
    json_columns=("source_key",),
    owns=lambda key: key[0] == "amazon_ads",  # the others: through their own streams
)

EXPECTATIONS: dict[str, StreamExpectation] = {
    "amazon_ads_billing_statements": AMAZON_ADS,
    "invoices": INVOICES,
    "google_ads_invoices": GOOGLE_ADS,
    "amazon_business_transactions": AMAZON_BUSINESS_TRANSACTIONS,
    "amazon_business_invoice_documents": AMAZON_BUSINESS_DOCUMENTS,
    "meta_invoices": META_INVOICES,
    "meta_invoice_campaigns": META_CAMPAIGNS,
}
