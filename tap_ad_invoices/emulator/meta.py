"""Meta Graph API: business_invoices, invoice campaign lines, invoice PDFs.

Two businesses on monthly invoicing (USD and JPY) and one paid by card. Each
invoiced business gets a monthly invoice (INV) per billing period for the last
five months, issued on the 1st of the next month; the USD business also has a
credit memo (CM), a debit memo (DM) and a pro forma (PRO_FORMA), the JPY one a
credit memo. Dates are anchored to the day the emulator starts, so look-back
windows always have something to re-read.

Requests are checked as Graph checks them: a version in the path, an access
token (query `access_token` or `Authorization: Bearer`), only the `fields`
asked for are returned (Graph's default is `id`), cursor paging. Every answer
carries `X-Business-Use-Case-Usage`. Knobs (see `install`) drive usage,
throttling, an expired token, a broken PDF and an amount that disagrees with its
minor units.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from decimal import Decimal
from typing import Any

from tap_ad_invoices.emulator.core import Emulator, Request, Response, json_response
from tap_ad_invoices.emulator.google_ads import render_pdf

ACCESS_TOKEN = "EAAGemulatorMetaSystemUserToken7d41"
API_VERSION = "v25.0"
SUPPORTED_VERSIONS = ("v24.0", "v25.0")
GRAPH_PREFIX = "/graph"  # the emulated graph.facebook.com lives under this path
CDN_PREFIX = "/meta-cdn"  # served under the host name "localhost": another host

BUSINESS_USD = "1000000000000001"
BUSINESS_JPY = "1000000000000002"
BUSINESS_CARD = "1000000000000003"  # paid by card: no monthly invoicing
OFFSETS = {"USD": 100, "JPY": 1}
DEFAULT_PAGE_SIZE = 3

ROUTE_INVOICES = "meta.business_invoices"
ROUTE_CAMPAIGNS = "meta.campaigns"
ROUTE_PDF_GRAPH = "meta.pdf.graph"
ROUTE_PDF_CDN = "meta.pdf.cdn"


def utc_today() -> dt.date:
    """The tap's runs end today in UTC (settings.sync_range): the emulator's clock agrees."""
    return dt.datetime.now(dt.timezone.utc).date()


def _month(day: dt.date, delta: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + delta
    return dt.date(index // 12, index % 12 + 1, 1)


def graph_time(day: dt.date, hour: int = 7) -> str:
    """Graph writes datetimes as 2026-11-02T07:00:00+0000 (midnight Pacific, in UTC)."""
    return f"{day.isoformat()}T{hour:02d}:00:00+0000"


def _money(value: Decimal, currency: str) -> str:
    return f"{value:.2f}" if OFFSETS[currency] == 100 else f"{value:.0f}"


def graph_error(
    code: int, message: str, *, subcode: int | None = None, status: int = 400
) -> Response:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AEmulatorTrace",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return json_response(status, {"error": error})


class MetaBook:
    """The invoices and campaign lines of every business: the emulator's truth."""

    def __init__(self, today: dt.date, graph: str) -> None:
        self.today = today
        self.graph = graph
        self.invoices: list[dict[str, Any]] = []
        self.campaigns: dict[str, list[dict[str, Any]]] = {}
        self._serial = 0
        this_month = _month(today, 0)
        businesses = (
            (BUSINESS_USD, "USD", "Acme Outdoor Inc.", Decimal("4210.37"), "act_20001"),
            (BUSINESS_JPY, "JPY", "Sakura Shoten K.K.", Decimal("512345"), "act_30001"),
        )
        for business, currency, advertiser, base, account in businesses:
            for back in range(5, 0, -1):  # five closed billing periods, oldest first
                period = _month(this_month, -back)
                net = base + Decimal(back * 37) * (1 if currency == "JPY" else Decimal("1.01"))
                self.add(business, "INV", currency, advertiser, account, period, net)
        usd, jpy = BUSINESS_USD, BUSINESS_JPY
        last = _month(this_month, -1)
        self.add(usd, "CM", "USD", "Acme Outdoor Inc.", "act_20001", last, Decimal("-150.25"))
        self.add(usd, "DM", "USD", "Acme Outdoor Inc.", "act_20001", last, Decimal("75.10"))
        self.add(
            usd, "PRO_FORMA", "USD", "Acme Outdoor Inc.", "act_20002", this_month, Decimal("999.99")
        )
        self.add(jpy, "CM", "JPY", "Sakura Shoten K.K.", "act_30001", last, Decimal("-12000"))

    def add(
        self,
        business: str,
        kind: str,
        currency: str,
        advertiser: str,
        account: str,
        period: dt.date,
        net: Decimal,
    ) -> dict[str, Any]:
        self._serial += 1
        node = f"{business[-4:]}{self._serial:08d}"
        # Issued on the first day after the period (a pro forma: on the period's first day),
        # so no invoice is ever issued after today, whatever day the emulator starts.
        issue = period if kind == "PRO_FORMA" else _month(period, 1)
        rate = Decimal("0.10") if currency == "JPY" else Decimal("0.0825")
        tax = (net * rate).quantize(Decimal(1) if currency == "JPY" else Decimal("0.01"))
        total = net + tax
        number = f"{'FBADS' if currency == 'USD' else 'FBJP'}-{period:%Y%m}-{self._serial:05d}"
        invoice: dict[str, Any] = {
            "id": node,
            "invoice_id": number,
            "type": kind,
            "invoice_type": "PRO_FORMA" if kind == "PRO_FORMA" else "MONTHLY_INVOICE",
            "amount": _money(total, currency),
            "amount_due": {
                "amount": _money(total, currency),
                "amount_in_hundredths": str(int(total * 100)),
                "currency": currency,
                "offsetted_amount": str(int(total * OFFSETS[currency])),
            },
            "billed_amount_details": {
                "currency": currency,
                "net_amount": _money(net, currency),
                "tax_amount": _money(tax, currency),
                "total_amount": _money(total, currency),
            },
            "billing_period": period.isoformat(),
            "currency": currency,
            "invoice_date": graph_time(issue),
            "due_date": graph_time(issue + dt.timedelta(days=30)),
            # Older invoices are paid; the newest ones are still open, and `mutate` pays them.
            "payment_status": "PAID" if (self.today - issue).days > 40 else "UNPAID",
            "payment_term": "NET_30",
            "liability_type": "Normal",
            "entity": "Meta Platforms, Inc." if currency == "USD" else "Facebook Japan G.K.",
            "advertiser_name": advertiser,
            "ad_account_ids": [account],
            "campaign": None,
            "download_uri": f"{self.graph}/{API_VERSION}/{node}/invoice_pdf",
            # The JPY business's PDFs come only through the Graph URL (cdn link absent).
            "cdn_download_uri": None if currency == "JPY" else "cdn",
            "_business": business,
            "_issue_date": issue.isoformat(),
        }
        self.invoices.append(invoice)
        self.campaigns[node] = self._lines(node, account, net, currency, period)
        return invoice

    def _lines(
        self, node: str, account: str, net: Decimal, currency: str, period: dt.date
    ) -> list[dict[str, Any]]:
        """Two or three campaign lines whose amounts add up to the invoice's net amount."""
        count = 3 if int(node[-1]) % 2 else 2
        quantum = Decimal(1) if currency == "JPY" else Decimal("0.01")
        share = (net / count).quantize(quantum)
        amounts = [share] * (count - 1) + [net - share * (count - 1)]
        end = _month(period, 1) - dt.timedelta(days=1)
        return [
            {
                "id": f"{node}{index:02d}",
                "campaign_id": f"2385{node[-6:]}{index:02d}",
                "campaign_name": f"Campaign {index} {period:%b %Y}",
                "ad_account_id": account,
                "description": "Ads",
                "amount": _money(amount, currency),
                "impressions": 1000 * (index + 3),
                "clicks": 17 * (index + 1),
                "conversions": index,
                "start_date": period.isoformat(),
                "end_date": end.isoformat(),
            }
            for index, amount in enumerate(amounts, start=1)
        ]

    def find(self, node: str) -> dict[str, Any] | None:
        return next((i for i in self.invoices if i["id"] == node), None)


class MetaEmulator:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.lock = threading.Lock()
        self.book = MetaBook(utc_today(), self.graph_url)
        # Every business_invoices query, as the tap sent it (for request-shape tests).
        self.invoice_requests: list[dict[str, Any]] = []
        self.pdf_requests: list[dict[str, Any]] = []
        self._throttled = 0
        self.held = threading.Event()  # a request of a held business arrived
        self.release = threading.Event()  # let held requests go on

    def invoice_fields(self) -> tuple[str, ...]:
        """The OmegaCustomerTrx fields this emulator serves: those its invoices carry."""
        return tuple(k for k in self.book.invoices[0] if not k.startswith("_"))

    def campaign_fields(self) -> tuple[str, ...]:
        """The InvoiceCampaignNew fields served: those its campaign lines carry."""
        return tuple(next(iter(self.book.campaigns.values()))[0])

    @property
    def graph_url(self) -> str:
        return f"{self.emulator.base_url}{GRAPH_PREFIX}"

    def tap_config(self) -> dict[str, Any]:
        return {
            "meta": {
                "access_token": ACCESS_TOKEN,
                "business_ids": [BUSINESS_USD, BUSINESS_JPY],
                "api_url": self.graph_url,
            }
        }

    def truth(self) -> dict[str, Any]:
        with self.lock:
            invoices = copy.deepcopy(self.book.invoices)
            campaigns = copy.deepcopy(self.book.campaigns)
        for invoice in invoices:
            invoice["cdn_download_uri"] = (
                self.cdn_url(invoice) if invoice["cdn_download_uri"] else None
            )
        return {
            "invoices": invoices,
            "campaigns": campaigns,
            "pdf_sha256": {i["id"]: hashlib.sha256(self.pdf(i)).hexdigest() for i in invoices},
            "businesses": [BUSINESS_USD, BUSINESS_JPY],
            "card_business": BUSINESS_CARD,
        }

    def mutate(self, change: dict[str, Any]) -> dict[str, Any]:
        """{"op": "pay", "id": node} marks an invoice PAID (the change a look-back re-reads)."""
        if change.get("op") != "pay":
            raise ValueError(f"unknown change {change!r}")
        with self.lock:
            invoice = self.book.find(change["id"])
            if invoice is None:
                raise ValueError(f"no invoice {change['id']}")
            invoice["payment_status"] = "PAID"
            invoice["amount_due"]["amount"] = _money(Decimal(0), invoice["currency"])
            invoice["amount_due"]["amount_in_hundredths"] = "0"
            invoice["amount_due"]["offsetted_amount"] = "0"
            return copy.deepcopy(invoice)

    # -- request checks -------------------------------------------------------------
    def pdf(self, invoice: dict[str, Any]) -> bytes:
        return render_pdf(
            {
                "id": invoice["invoice_id"],
                "currency_code": invoice["currency"],
                "total_amount_micros": invoice["billed_amount_details"]["total_amount"],
            }
        )

    def cdn_url(self, invoice: dict[str, Any]) -> str:
        path = f"{CDN_PREFIX}/invoices/{invoice['id']}.pdf"
        signature = hmac.new(self.emulator.signing_key, path.encode(), hashlib.sha256).hexdigest()
        return f"http://localhost:{self.emulator.port}{path}?sig={signature}"

    def usage_header(self, business: str | None) -> dict[str, str]:
        knobs = self.emulator.knobs
        usage = int(knobs.get("meta_usage_percent") or 0)
        regain = knobs.get("meta_regain_minutes") or 0
        entry = {
            "type": "ads_management",
            "call_count": usage,
            "total_cputime": max(0, usage - 10),
            "total_time": max(0, usage - 5),
            "estimated_time_to_regain_access": regain if usage >= 100 else 0,
        }
        return {"X-Business-Use-Case-Usage": json.dumps({business or BUSINESS_USD: [entry]})}

    def check(self, request: Request, business: str | None) -> Response | None:
        """Graph's refusals, in the order Graph applies them."""
        knobs = self.emulator.knobs
        assert request.match is not None
        if request.match["version"] not in SUPPORTED_VERSIONS:
            return graph_error(
                2635,
                f"(#2635) You are calling a deprecated version of the Graph API: "
                f"{request.match['version']}",
            )
        authorization = request.headers.get("authorization", "")
        token = request.param("access_token") or authorization.removeprefix("Bearer ").strip()
        if not token:
            return graph_error(104, "An access token is required to request this resource.")
        if token != ACCESS_TOKEN or knobs.get("meta_token_expired"):
            return graph_error(
                190,
                "Error validating access token: Session has expired.",
                subcode=463,
                status=401 if knobs.get("meta_token_expired") == 401 else 400,
            )
        throttle = knobs.get("meta_throttle") or {}
        with self.lock:
            if self._throttled < int(throttle.get("count") or 0):
                self._throttled += 1
                self.emulator.count("meta.throttled")
                response = graph_error(
                    int(throttle.get("code") or 80004),
                    "There have been too many calls to this ad-account. Wait a bit and try again.",
                    subcode=2446079,
                )
                regain = throttle.get("regain_minutes", 0)
                entry = {
                    "type": "ads_management",
                    "call_count": 100,
                    "total_cputime": 40,
                    "total_time": 60,
                    "estimated_time_to_regain_access": regain,
                }
                response.headers["X-Business-Use-Case-Usage"] = json.dumps(
                    {business or BUSINESS_USD: [entry]}
                )
                return response
        if business in (knobs.get("meta_held_businesses") or []):
            # Held until a test releases it: a run can be stopped mid-business, on cue.
            self.held.set()
            self.release.wait(timeout=120)
        latency = float(knobs.get("meta_latency_seconds") or 0)
        if latency:
            time.sleep(latency)
        return None


def _fields(request: Request, known: tuple[str, ...]) -> list[str] | Response:
    asked = [f for f in (request.param("fields") or "id").split(",") if f]
    unknown = [f for f in asked if f not in known]
    if unknown:
        return graph_error(100, f"(#100) Tried accessing nonexisting field ({unknown[0]})")
    return asked


def _page(
    request: Request, items: list[dict[str, Any]], page_size: int, url: str
) -> dict[str, Any]:
    """Graph cursor paging: cursors are opaque; ours encode the offset."""
    # Graph caps `limit` on its side; the cap here is small so paging is always exercised.
    limit = min(int(request.param("limit") or page_size), page_size)
    after = request.param("after")
    start = int(base64.urlsafe_b64decode(after).decode()) if after else 0
    chunk = items[start : start + limit]
    body: dict[str, Any] = {"data": chunk}
    if chunk:

        def cursor(offset: int) -> str:
            return base64.urlsafe_b64encode(str(offset).encode()).decode()

        paging: dict[str, Any] = {
            "cursors": {"before": cursor(start), "after": cursor(start + len(chunk))}
        }
        if start + limit < len(items):
            query = {
                k: v[0] for k, v in request.query.items() if k not in ("after", "access_token")
            }
            query["after"] = cursor(start + limit)
            paging["next"] = f"{url}?" + "&".join(f"{k}={v}" for k, v in query.items())
        body["paging"] = paging
    return body


def install(emulator: Emulator) -> MetaEmulator:
    """Knobs: meta_page_size, meta_usage_percent, meta_regain_minutes, meta_throttle
    ({count, code, regain_minutes}), meta_token_expired, meta_latency_seconds,
    meta_held_businesses (their calls wait for `MetaEmulator.release`),
    meta_broken_pdfs (invoice node ids), meta_bad_minor_units (invoice node ids),
    meta_denied_businesses (their invoices answer a permission error)."""
    meta = MetaEmulator(emulator)
    emulator.on_stop(meta.release.set)  # no request thread left waiting at shutdown
    emulator.knobs.setdefault("meta_page_size", DEFAULT_PAGE_SIZE)
    emulator.knobs.setdefault("meta_broken_pdfs", [])
    emulator.knobs.setdefault("meta_bad_minor_units", [])
    graph = f"{GRAPH_PREFIX}/(?P<version>[^/]+)"

    def shown(invoice: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        visible = {k: v for k, v in invoice.items() if not k.startswith("_")}
        if visible["cdn_download_uri"]:
            visible["cdn_download_uri"] = meta.cdn_url(invoice)
        if invoice["id"] in emulator.knobs["meta_bad_minor_units"]:
            due = visible["amount_due"] = dict(visible["amount_due"])
            due["amount_in_hundredths"] = str(int(due["amount_in_hundredths"]) + 1)
        return {k: visible[k] for k in fields if visible.get(k) is not None}

    @emulator.route("GET", f"{graph}/(?P<business>[0-9]+)/business_invoices", ROUTE_INVOICES)
    def business_invoices(request: Request) -> Response:
        assert request.match is not None
        business = request.match["business"]
        refused = meta.check(request, business)
        if refused is not None:
            return refused
        with meta.lock:
            meta.invoice_requests.append(
                {k: v[0] for k, v in request.query.items() if k != "access_token"}
                | {"business": business}
            )
        headers = meta.usage_header(business)
        if business in emulator.knobs.get("meta_denied_businesses", []):
            return graph_error(
                200,
                "(#200) Requires business_management permission to manage the object",
                status=403,
            )
        if business == BUSINESS_CARD:
            response = graph_error(
                100, "(#100) This business does not have monthly invoicing (it pays by card)."
            )
            response.headers.update(headers)
            return response
        if business not in (BUSINESS_USD, BUSINESS_JPY):
            return graph_error(
                100, f"(#100) Unsupported get request. Object with ID '{business}' does not exist"
            )
        fields = _fields(request, meta.invoice_fields())
        if isinstance(fields, Response):
            return fields
        today = utc_today()
        period_from = request.param("start_date") or _month(today, -6).isoformat()
        period_to = request.param("end_date") or "9999-12-31"
        issued_from = request.param("issue_start_date") or "0000-01-01"
        issued_to = request.param("issue_end_date") or "9999-12-31"
        with meta.lock:
            matching = [
                shown(invoice, fields)
                for invoice in meta.book.invoices
                if invoice["_business"] == business
                and period_from <= invoice["billing_period"] < period_to
                and issued_from <= invoice["_issue_date"] < issued_to
                and request.param("type") in (None, invoice["type"])
            ]
        url = f"{meta.graph_url}/{request.match['version']}/{business}/business_invoices"
        body = _page(request, matching, int(emulator.knobs["meta_page_size"]), url)
        return json_response(200, body, **headers)

    @emulator.route("GET", f"{graph}/(?P<node>[0-9]+)/campaigns", ROUTE_CAMPAIGNS)
    def campaigns(request: Request) -> Response:
        assert request.match is not None
        node = request.match["node"]
        with meta.lock:
            invoice = meta.book.find(node)
        business = invoice["_business"] if invoice else None
        refused = meta.check(request, business)
        if refused is not None:
            return refused
        if invoice is None:
            return graph_error(100, f"(#100) Object with ID '{node}' does not exist")
        fields = _fields(request, meta.campaign_fields())
        if isinstance(fields, Response):
            return fields
        with meta.lock:
            lines = [{k: line[k] for k in fields} for line in meta.book.campaigns[node]]
        url = f"{meta.graph_url}/{request.match['version']}/{node}/campaigns"
        body = _page(request, lines, int(emulator.knobs["meta_page_size"]), url)
        return json_response(200, body, **meta.usage_header(business))

    def pdf_answer(invoice: dict[str, Any] | None) -> Response:
        if invoice is None:
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        if invoice["id"] in emulator.knobs["meta_broken_pdfs"]:
            return Response(
                200, b"<html>Something went wrong</html>", {"Content-Type": "text/html"}
            )
        return Response(200, meta.pdf(invoice), {"Content-Type": "application/pdf"})

    @emulator.route("GET", f"{graph}/(?P<node>[0-9]+)/invoice_pdf", ROUTE_PDF_GRAPH)
    def graph_pdf(request: Request) -> Response:
        assert request.match is not None
        with meta.lock:
            invoice = meta.book.find(request.match["node"])
            meta.pdf_requests.append({"via": "graph", "id": request.match["node"]})
        refused = meta.check(request, invoice["_business"] if invoice else None)
        return refused if refused is not None else pdf_answer(invoice)

    @emulator.route("GET", f"{CDN_PREFIX}/invoices/(?P<node>[0-9]+)\\.pdf", ROUTE_PDF_CDN)
    def cdn_pdf(request: Request) -> Response:
        assert request.match is not None
        with meta.lock:
            invoice = meta.book.find(request.match["node"])
            meta.pdf_requests.append({"via": "cdn", "id": request.match["node"]})
        # The CDN is another host: a Graph token sent here is a leak, refused loudly.
        if "authorization" in request.headers or request.param("access_token"):
            return Response(400, b"credentials sent to the CDN", {"Content-Type": "text/plain"})
        if request.headers.get("host", "").split(":")[0] != "localhost" or invoice is None:
            return Response(404, b"Not Found", {"Content-Type": "text/plain"})
        expected = meta.cdn_url(invoice).split("sig=")[1]
        if not hmac.compare_digest(request.param("sig") or "", expected):
            return Response(403, b"URL signature mismatch", {"Content-Type": "text/plain"})
        return pdf_answer(invoice)

    return meta
