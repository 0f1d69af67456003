"""Amazon Business pieces in isolation: config, conversion, client calls, the pipeline."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests_mock

from tap_ad_invoices.amazon_business import SOURCE
from tap_ad_invoices.amazon_business.client import AmazonBusinessClient
from tap_ad_invoices.amazon_business.config import AmazonBusinessSettings
from tap_ad_invoices.amazon_business.conversion import (
    DocumentRequest,
    document_record,
    line_items_needing_details,
    plan_documents,
    transaction_record,
)
from tap_ad_invoices.amazon_business.pipeline import (
    CANCELLED,
    DONE,
    FATAL,
    NOT_STARTED,
    DocumentPipeline,
)
from tap_ad_invoices.amazon_business.streams import feed_windows
from tap_ad_invoices.documents import DocumentSettings, DocumentStore
from tap_ad_invoices.emulator.amazon_business import make_pdf, wrap_document
from tap_ad_invoices.errors import ApiError, ConfigError
from tap_ad_invoices.http import RetryPolicy

API = "https://na.business-api.amazon.com"
TOKEN_URL = "https://api.amazon.com/auth/o2/token"
BASE = {
    "start_date": "2026-01-01",
    "amazon_business": {"client_id": "cid", "client_secret": "sec-ret", "refresh_token": "Atzr|r"},
}


def settings(**section: Any) -> AmazonBusinessSettings:
    config = {**BASE, "amazon_business": {**BASE["amazon_business"], **section}}
    return AmazonBusinessSettings.from_config(config)


def client(**section: Any) -> AmazonBusinessClient:
    return AmazonBusinessClient(settings(**section), retry=RetryPolicy(3, 0.001, 0.01))


# -- config ----------------------------------------------------------------------------
def test_defaults_follow_the_region() -> None:
    eu = settings(region="EU")
    assert eu.api_url == "https://eu.business-api.amazon.com"
    assert eu.token_url == "https://api.amazon.co.uk/auth/o2/token"
    assert eu.marketplace_ids == ("A1F83G8C2ARO7P",)
    na = settings()
    assert na.marketplace_ids == ("ATVPDKIKX0DER",)
    assert na.document_types == ("Invoice", "Credits")
    assert (na.lookback_days, na.poll_interval_seconds) == (30, 15.0)


@pytest.mark.parametrize(
    ("section", "setting"),
    [
        ({"client_id": ""}, "amazon_business.client_id"),
        ({"region": "FE"}, "amazon_business.region"),
        ({"marketplace_ids": []}, "amazon_business.marketplace_ids"),
        ({"document_types": ["Invoice", "OrderSummary"]}, "amazon_business.document_types"),
        ({"poll_interval_seconds": 0}, "amazon_business.poll_interval_seconds"),
        ({"max_documents_per_run": 0}, "amazon_business.max_documents_per_run"),
        ({"token_url": "api.amazon.com"}, "amazon_business.token_url"),
    ],
)
def test_validation_names_the_setting(section: dict[str, Any], setting: str) -> None:
    assert SOURCE is not None
    config = {**BASE, "amazon_business": {**BASE["amazon_business"], **section}}
    with pytest.raises(ConfigError) as caught:
        SOURCE.validate(config["amazon_business"], config)
    assert caught.value.setting == setting


# -- conversion ------------------------------------------------------------------------
def _txn(
    txn_id: str, kind: str, feed: str, items: list[tuple[str, str, str]], invoice: str | None = None
) -> dict[str, Any]:
    txn: dict[str, Any] = {
        "transactionId": txn_id,
        "transactionType": kind,
        "feedDate": feed,
        "marketplaceId": "ATVPDKIKX0DER",
        "amount": {"currencyCode": "USD", "amount": "-1234.5678"},
        "transactionLineItems": [
            {
                "orderId": o,
                "orderLineItemId": li,
                "shipmentId": s,
                "discount": {"currencyCode": "USD", "amount": "-2.99"},
                "tax": None,
            }
            for o, li, s in items
        ],
    }
    if invoice:
        txn["invoiceNumber"] = invoice
    return txn


def test_amounts_stay_exact_and_nulls_stay_null() -> None:
    record = transaction_record(_txn("T1", "REFUND", "2026-02-01T00:00:00.000Z", [("o", "l", "s")]))
    assert record["amount"] == Decimal("-1234.5678")
    line = record["line_items"][0]
    assert line["discount"] == {"amount": Decimal("-2.99"), "currency_code": "USD"}
    assert line["tax"] is None


def test_plan_dedupes_and_maps_one_line_item_to_invoice_and_credit_memo() -> None:
    charge = _txn(
        "C1", "CHARGE", "2026-02-01T00:00:00.000Z", [("o1", "l1", "s1"), ("o1", "l2", "s1")]
    )
    refund = _txn("R1", "REFUND", "2026-02-03T00:00:00.000Z", [("o1", "l1", "s1")])
    carried = _txn(
        "C2", "CHARGE", "2026-02-02T00:00:00.000Z", [("o2", "l9", "s9")], invoice="INV-2"
    )
    other = {
        **_txn("C3", "CHARGE", "2026-02-02T00:00:00.000Z", [("o3", "l3", "s3")]),
        "marketplaceId": "A1PA6795UKMFR9",
    }
    assert line_items_needing_details([charge, refund, carried]) == [
        ("o1", "l1", "s1"),
        ("o1", "l2", "s1"),
        ("o2", "l9", "s9"),  # carried: its details still give the invoice's date and type
    ]
    details = {
        ("o1", "l1", "s1"): [
            {"invoiceNumber": "INV-1", "invoiceType": "STANDARD", "invoiceDate": "2026-01-31"},
            {"invoiceNumber": "CM-1", "invoiceType": "CREDIT_MEMO", "invoiceDate": "2026-02-03"},
        ],
        ("o1", "l2", "s1"): [{"invoiceNumber": "INV-1", "invoiceType": "STANDARD"}],
    }
    plan = plan_documents(
        [charge, refund, carried, other],
        details,
        document_types=("Invoice", "Credits"),
        marketplace_ids=("ATVPDKIKX0DER",),
    )
    assert sorted(plan) == ["CM-1|Credits", "INV-1|Invoice", "INV-2|Invoice"]
    inv1 = plan["INV-1|Invoice"]
    assert inv1.order_line_item_ids == {"l1", "l2"}
    assert inv1.transaction_ids == {"C1", "R1"}
    assert inv1.first_feed_date == "2026-02-01T00:00:00.000Z"
    assert inv1.last_feed_date == "2026-02-03T00:00:00.000Z"
    assert DocumentRequest.from_state(inv1.to_state()) == inv1
    only_credits = plan_documents(
        [charge, refund], details, document_types=("Credits",), marketplace_ids=("ATVPDKIKX0DER",)
    )
    assert sorted(only_credits) == ["CM-1|Credits"]


def _line(key: tuple[str, str, str], sign: int = 1, **money: str | None) -> dict[str, Any]:
    parts = {
        "principalAmount": "10.00",
        "shippingCharge": "4.99",
        "regulatoryFee": None,
        "giftWrappingCharge": None,
        "discount": "-2.99",
        "tax": "0.83",
        "totalAmount": "12.83",
        **money,
    }
    line: dict[str, Any] = {"orderId": key[0], "orderLineItemId": key[1], "shipmentId": key[2]}
    for name, amount in parts.items():
        value = None if amount is None else str(Decimal(amount) * sign)
        line[name] = None if value is None else {"currencyCode": "EUR", "amount": value}
    return line


def _priced(txn_id: str, kind: str, lines: list[dict[str, Any]], invoice: str | None = None):
    txn = _txn(txn_id, kind, "2026-02-01T00:00:00.000Z", [])
    txn["transactionLineItems"] = lines
    if invoice:
        txn["invoiceNumber"] = invoice
    return txn


def test_amounts_sum_the_line_items_that_name_each_document() -> None:
    a, b, c = ("o1", "l1", "s1"), ("o1", "l2", "s1"), ("o2", "l3", "s2")
    charge = _priced(
        "C1", "CHARGE", [_line(a), _line(b, principalAmount="20.00", totalAmount="22.83")]
    )
    refund = _priced("R1", "REFUND", [_line(a, -1)])
    carried = _priced("C2", "CHARGE", [_line(c)], invoice="INV-2")
    details = {
        a: [
            {
                "invoiceNumber": "INV-1",
                "invoiceType": "STANDARD",
                "invoiceDate": "2026-01-31T23:00:00Z",
            },
            {"invoiceNumber": "CM-1", "invoiceType": "CREDIT_MEMO"},
        ],
        b: [{"invoiceNumber": "INV-1", "invoiceType": "STANDARD"}],
        c: [{"invoiceNumber": "INV-2", "invoiceType": "STANDARD"}],
    }
    plan = plan_documents(
        [charge, refund, carried],
        details,
        document_types=("Invoice", "Credits"),
        marketplace_ids=("ATVPDKIKX0DER",),
    )
    # The refund names INV-1 too, but its money is the credit memo's only.
    inv1 = plan["INV-1|Invoice"].amounts()
    assert (inv1.currency, inv1.subtotal, inv1.tax, inv1.total, inv1.status) == (
        "EUR",
        Decimal("34.00"),
        Decimal("1.66"),
        Decimal("35.66"),
        "derived",
    )
    cm1 = plan["CM-1|Credits"].amounts()
    assert (cm1.subtotal, cm1.tax, cm1.total) == (
        Decimal("-12.00"),
        Decimal("-0.83"),
        Decimal("-12.83"),
    )
    assert plan["INV-2|Invoice"].amounts().total == Decimal("12.83")
    record = document_record(plan["INV-1|Invoice"], processing_status="DONE", report_id="R")
    assert record["invoice_date"] == "2026-01-31"  # a date, not a timestamp
    # The amounts survive the trip through state (pending reports resume with them).
    again = DocumentRequest.from_state(json.loads(json.dumps(plan["CM-1|Credits"].to_state())))
    assert again.amounts() == cm1


def test_a_document_waits_for_a_transaction_of_its_own_kind() -> None:
    a = ("o1", "l1", "s1")
    details = {
        a: [
            {"invoiceNumber": "INV-1", "invoiceType": "STANDARD"},
            {"invoiceNumber": "CM-1", "invoiceType": "CREDIT_MEMO"},
        ]
    }
    both = ("Invoice", "Credits")
    # The charge's line already names the credit memo; its refund is not fed yet.
    plan = plan_documents(
        [_priced("C1", "CHARGE", [_line(a)])],
        details,
        document_types=both,
        marketplace_ids=("ATVPDKIKX0DER",),
    )
    assert sorted(plan) == ["INV-1|Invoice"]
    # A refund long after its charge: the invoice is not fetched again with no charge line.
    plan = plan_documents(
        [_priced("R1", "REFUND", [_line(a, -1)])],
        details,
        document_types=both,
        marketplace_ids=("ATVPDKIKX0DER",),
    )
    assert sorted(plan) == ["CM-1|Credits"]
    assert plan["CM-1|Credits"].amounts().status == "derived"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (_line(("o1", "l1", "s1"), totalAmount=None), "no totalAmount"),
        (_line(("o1", "l1", "s1"), totalAmount="12.84"), "= 12.83, not its total"),
    ],
)
def test_a_line_that_does_not_add_up_leaves_the_amounts_null(line: dict, why: str) -> None:
    plan = plan_documents(
        [_priced("C1", "CHARGE", [line, _line(("o1", "l2", "s1"))], invoice="INV-1")],
        {},
        document_types=("Invoice",),
        marketplace_ids=("ATVPDKIKX0DER",),
    )
    amounts = plan["INV-1|Invoice"].amounts()
    assert amounts.total is None and amounts.subtotal is None and amounts.tax is None
    assert amounts.status.startswith("missing: ") and why in amounts.status


def test_a_line_naming_two_credit_memos_is_not_guessed() -> None:
    a = ("o1", "l1", "s1")
    refunds = [_priced("R1", "REFUND", [_line(a, -1)]), _priced("R2", "REFUND", [_line(a, -1)])]
    details = {
        a: [
            {"invoiceNumber": "CM-1", "invoiceType": "CREDIT_MEMO"},
            {"invoiceNumber": "CM-2", "invoiceType": "CREDIT_MEMO"},
        ]
    }
    plan = plan_documents(
        refunds, details, document_types=("Credits",), marketplace_ids=("ATVPDKIKX0DER",)
    )
    for key in ("CM-1|Credits", "CM-2|Credits"):
        amounts = plan[key].amounts()
        assert amounts.total is None and "names 2 Credits documents" in amounts.status
    # State from before amounts were kept: the document's lines are unknown.
    kept = ("lines", "amount_problems")
    old = {k: v for k, v in plan["CM-1|Credits"].to_state().items() if k not in kept}
    assert DocumentRequest.from_state(old).amounts().status.startswith("missing: requested by")


def test_feed_windows_cover_the_range_without_gaps() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(2026, 3, 15, 12, tzinfo=dt.timezone.utc)
    windows = list(feed_windows(start, end, 30))
    assert windows[0][0] == start and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))


# -- client ----------------------------------------------------------------------------
def test_a_page_token_that_comes_back_fails_the_window_instead_of_looping() -> None:
    with requests_mock.Mocker() as mock:
        mock.post(TOKEN_URL, json={"access_token": "Atza|tok", "expires_in": 3600})
        page = {"json": {"transactions": [{"transactionId": "1"}], "nextPageToken": "p2"}}
        mock.get(f"{API}/reconciliation/2021-01-08/transactions", [page, page, page])
        start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        with pytest.raises(ApiError, match="came back twice"):
            list(client().transactions(start, start + dt.timedelta(days=30)))
        assert len([c for c in mock.request_history if "transactions" in c.url]) == 2


def test_paging_sends_next_page_token_alone_and_the_token_header() -> None:
    with requests_mock.Mocker() as mock:
        mock.post(TOKEN_URL, json={"access_token": "Atza|tok", "expires_in": 3600})
        mock.get(
            f"{API}/reconciliation/2021-01-08/transactions",
            [
                {"json": {"transactions": [{"transactionId": "1"}], "nextPageToken": "p2"}},
                {"json": {"transactions": [{"transactionId": "2"}]}},
            ],
        )
        start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        found = list(client().transactions(start, start + dt.timedelta(days=30)))
        calls = [c for c in mock.request_history if "transactions" in c.url]
    assert [t["transactionId"] for t in found] == ["1", "2"]
    first, second = (parse_qs(urlsplit(c.url).query) for c in calls)
    assert first == {
        "feedStartDate": ["2026-01-01T00:00:00.000Z"],
        "feedEndDate": ["2026-01-31T00:00:00.000Z"],
    }
    assert second == {"nextPageToken": ["p2"]}
    assert all(c.headers["x-amz-access-token"] == "Atza|tok" for c in calls)
    assert all("Authorization" not in c.headers for c in calls)


def test_invoice_details_refuses_more_than_25_line_items() -> None:
    with pytest.raises(ValueError):
        client().invoice_details(
            [{"orderId": "o", "orderLineItemId": str(i), "shipmentId": "s"} for i in range(26)]
        )


# -- pipeline --------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeBucket:
    """One token per `period` seconds of fake time, after a burst."""

    def __init__(self, clock: FakeClock, period: float, burst: int) -> None:
        self.clock, self.period, self.tokens, self.updated = clock, period, float(burst), 0.0
        self.burst = burst
        self.rate = 1 / period

    def _refill(self) -> None:
        self.tokens = min(self.burst, self.tokens + (self.clock() - self.updated) / self.period)
        self.updated = self.clock()

    def wait_time(self) -> float:
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) * self.period

    def take(self) -> None:
        assert self.wait_time() == 0, "the pipeline called without a token"
        self.tokens -= 1


class FakeClient:
    """Reports take `report_time`; createReport and getReportDocument 1 per minute after 15."""

    def __init__(self, clock: FakeClock, report_time: float, outcomes: dict[str, str]) -> None:
        self.clock, self.report_time, self.outcomes = clock, report_time, outcomes
        self.buckets = {
            "createReport": FakeBucket(clock, 60, 15),
            "getReportDocument": FakeBucket(clock, 60, 15),
            "getReport": FakeBucket(clock, 0.5, 15),
        }
        self.reports: dict[str, tuple[str, float]] = {}
        self.pdf = wrap_document(make_pdf(["x"]), "x.pdf")

    def rate(self, operation: str) -> float:
        return self.buckets[operation].rate

    def create_report(self, invoice_id: str, document_type: str, marketplace_id: str) -> str:
        self.buckets["createReport"].take()
        self.reports[invoice_id] = (invoice_id, self.clock())
        return invoice_id

    def get_report(self, report_id: str) -> dict[str, Any]:
        self.buckets["getReport"].take()
        invoice, created = self.reports[report_id]
        if self.clock() - created < self.report_time:
            return {"processingStatus": "IN_PROGRESS"}
        status = self.outcomes.get(invoice, DONE)
        return {"processingStatus": status, "reportDocumentId": f"D{report_id}"}

    def get_report_document(self, document_id: str) -> dict[str, Any]:
        self.buckets["getReportDocument"].take()
        return {"url": "https://s3.example/x"}

    def download(self, url: str, max_bytes: int, what: str) -> bytes:
        return self.pdf


def _requests(n: int) -> list[DocumentRequest]:
    return [DocumentRequest(f"INV-{i:03d}", "Invoice", "ATVPDKIKX0DER") for i in range(n)]


def test_pipeline_wall_time_approaches_the_rate_limit_floor() -> None:
    clock = FakeClock()
    fake = FakeClient(clock, report_time=45.0, outcomes={"INV-003": CANCELLED, "INV-004": FATAL})
    runner = DocumentPipeline(
        fake,  # type: ignore[arg-type]
        DocumentStore(DocumentSettings()),
        max_bytes=1 << 20,
        poll_interval=15,
        clock=clock,
        sleep=clock.sleep,
    )
    outcomes = list(runner.run(_requests(40), []))
    statuses = {o.request.invoice_number: o.status for o in outcomes}
    assert len(outcomes) == 40
    assert statuses["INV-003"] == CANCELLED and statuses["INV-004"] == FATAL
    assert sum(1 for s in statuses.values() if s == DONE) == 38
    # Floor: 25 creates after the burst at 1/min, plus one report time and a poll.
    floor = (40 - 15) * 60 + 45
    sequential = 40 * (45 + 15)  # create, wait the report, download: one after the other
    assert clock.now <= floor + 2 * 15 + 60
    assert clock.now < sequential / 1.5


def test_pipeline_respects_max_new_reports_and_resumes_given_ids() -> None:
    clock = FakeClock()
    fake = FakeClient(clock, report_time=1.0, outcomes={})
    resumed_request = DocumentRequest("OLD-1", "Invoice", "ATVPDKIKX0DER")
    fake.reports["OLD-1"] = ("OLD-1", -100.0)
    created: list[str] = []
    runner = DocumentPipeline(
        fake,  # type: ignore[arg-type]
        DocumentStore(DocumentSettings()),
        max_bytes=1 << 20,
        poll_interval=1,
        max_new_reports=2,
        clock=clock,
        sleep=clock.sleep,
        on_created=lambda request, report_id: created.append(report_id),
    )
    outcomes = {
        o.request.invoice_number: o.status
        for o in runner.run(_requests(5), [(resumed_request, "OLD-1")])
    }
    assert outcomes["OLD-1"] == DONE
    assert created == ["INV-000", "INV-001"]
    assert [k for k, v in outcomes.items() if v == NOT_STARTED] == ["INV-002", "INV-003", "INV-004"]


def test_x_amz_date_is_utc_basic_format() -> None:
    from tap_ad_invoices.amazon_business.client import amz_date

    berlin = dt.timezone(dt.timedelta(hours=2))
    assert amz_date(dt.datetime(2026, 7, 1, 1, 2, 3, tzinfo=berlin)) == "20260630T230203Z"


def test_a_refused_token_alone_is_repeated_with_dates_and_remembered() -> None:
    with requests_mock.Mocker() as mock:
        mock.post(TOKEN_URL, json={"access_token": "Atza|tok", "expires_in": 3600})
        refused = {"errors": [{"code": "INVALID_REQUEST_PARAMETER", "message": "feedStartDate"}]}
        mock.get(
            f"{API}/reconciliation/2021-01-08/transactions",
            [
                {"json": {"transactions": [{"transactionId": "1"}], "nextPageToken": "p2"}},
                {"status_code": 400, "json": refused},
                {"json": {"transactions": [{"transactionId": "2"}], "nextPageToken": "p3"}},
                {"json": {"transactions": [{"transactionId": "3"}]}},
            ],
        )
        start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        found = list(client().transactions(start, start + dt.timedelta(days=30)))
        calls = [c for c in mock.request_history if "transactions" in c.url]
    assert [t["transactionId"] for t in found] == ["1", "2", "3"]
    forms = [sorted(parse_qs(urlsplit(c.url).query)) for c in calls]
    dated = ["feedEndDate", "feedStartDate", "nextPageToken"]
    assert forms == [["feedEndDate", "feedStartDate"], ["nextPageToken"], dated, dated]


def test_request_keys_follow_the_region_unless_overridden() -> None:
    assert settings().document_request_keys == "invoice"
    assert settings(region="EU").document_request_keys == "order"
    assert settings(region="JP").document_request_keys == "order"
    assert settings(region="EU", document_request_keys="invoice").document_request_keys == (
        "invoice"
    )
    with pytest.raises(ConfigError, match="document_request_keys"):
        settings(document_request_keys="orders")


def test_report_options_name_one_line_item_of_the_document_by_order() -> None:
    memo = DocumentRequest("CM-1", "Credits", "A1PA6795UKMFR9", order_ids={"o2", "o1"})
    assert memo.report_options("invoice") == {"invoiceId": "CM-1", "documentType": "Credits"}
    assert memo.report_options("order") == {"orderId": "o1", "documentType": "Credits"}
    memo.name_line_item(("o2", "l9", "s1"))
    memo.name_line_item(("o1", "l3", "s2"))
    memo.name_line_item(("o2", "l1", "s1"))
    assert memo.report_options("order") == {
        "orderId": "o1",
        "orderLineItemId": "l3",
        "shipmentId": "s2",
        "documentType": "Credits",
    }
    invoice = DocumentRequest.from_state({**memo.to_state(), "document_type": "Invoice"})
    assert invoice.report_options("order") == {
        "orderId": "o1",
        "orderLineItemId": "l3",
        "shipmentId": "s2",
    }


def test_a_number_unknown_to_the_details_is_not_requested_as_both_types() -> None:
    line = {"orderId": "o1", "orderLineItemId": "l1", "shipmentId": "s1"}
    charge = {
        "transactionId": "C1",
        "transactionType": "CHARGE",
        "feedDate": "2026-01-02T00:00:00.000Z",
        "marketplaceId": "ATVPDKIKX0DER",
        "invoiceNumber": "N1",
        "transactionLineItems": [line],
    }
    refund = {**charge, "transactionId": "R1", "transactionType": "REFUND"}
    plan = plan_documents(
        [charge, refund],
        {},
        document_types=("Invoice", "Credits"),
        marketplace_ids=("ATVPDKIKX0DER",),
    )
    assert set(plan) == {"N1|Invoice"}


def test_payment_details_and_consolidated_numbers_are_parsed() -> None:
    from tap_ad_invoices.amazon_business.conversion import (
        consolidated_number,
        payment_statuses,
    )

    results = [
        {
            "invoiceId": "A",
            "resultType": "SUCCESS",
            "paymentDetails": {"status": "Past Due", "dueDate": "2026-02-01T00:00:00Z"},
        },
        {"invoiceId": "B", "resultType": "ERROR", "error": {"code": "NOT_FOUND"}},
        {"invoiceId": "C", "resultType": "SUCCESS", "paymentDetails": {"status": "Closed"}},
    ]
    found = payment_statuses(results)
    assert set(found) == {"A", "C"}
    assert found["A"].fields() == {"payment_status": "Past Due", "payment_due_date": "2026-02-01"}
    assert found["C"].due_date is None
    assert consolidated_number({"consolidatedInvoiceDetails": {"invoiceNumber": "Pending"}}) is None
    assert consolidated_number({}) is None
    assert consolidated_number({"consolidatedInvoiceDetails": {"invoiceNumber": "CI-1"}}) == "CI-1"
