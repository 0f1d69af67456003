"""Transport faults over real loopback sockets (issue 10): one retry policy bounded by time,
hosts that refuse connections, bodies that break, redirects, token endpoints.

Unit tests talk to a scripted `http.server` or the emulator on 127.0.0.1; the end-to-end
tests run the real tap process against the emulator. Budgets are tiny, so nothing waits.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tap_ad_invoices.amazon_ads.client import AmazonAdsClient, StatementRequest
from tap_ad_invoices.amazon_ads.config import AmazonAdsSettings
from tap_ad_invoices.amazon_business.client import AmazonBusinessClient
from tap_ad_invoices.amazon_business.config import AmazonBusinessSettings
from tap_ad_invoices.documents import DocumentError, fetch_bounded
from tap_ad_invoices.emulator import Emulator, Fault
from tap_ad_invoices.emulator.amazon_ads import ACCOUNTS
from tap_ad_invoices.emulator.cli import tap_config
from tap_ad_invoices.errors import ApiError, AuthorizationExpired
from tap_ad_invoices.google_ads.client import GoogleAdsApi
from tap_ad_invoices.google_ads.config import GoogleAdsSettings
from tap_ad_invoices.http import HostHealth, HostUnreachable, HttpClient, RetryPolicy
from tap_ad_invoices.jobs import JobStatus
from tap_ad_invoices.lwa import LoginWithAmazon
from tests.tap_runner import run_tap
from tests.test_amazon_business_e2e import FAST_KNOBS  # rate limits scaled to ~1 s per run

PDF = b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n" + b"x" * 4000 + b"\n%%EOF\n"


def quick(seconds: float = 2.0) -> RetryPolicy:
    """A retry budget of `seconds` with millisecond backoff: many attempts, no real waiting."""
    return RetryPolicy(max_retry_seconds=seconds, base_delay=0.001, max_delay=0.005)


# -- a scripted loopback server -----------------------------------------------------------
@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    mode: str = "whole"  # "whole", "truncate" (half the announced body), "drop" (no answer)


class Scripted:
    """Answers requests from a script, in order; the last answer repeats forever."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, path: str, headers: dict[str, str]) -> Answer:
        with self._lock:
            self.requests.append((path, headers))
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answer = scripted._next(self.path, {k.lower(): v for k, v in self.headers.items()})
                if answer.mode == "drop":
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if answer.mode == "truncate":
                    self.wfile.write(answer.body[: len(answer.body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(answer.body)

            do_POST = do_GET

        return Handler


@pytest.fixture
def scripted() -> Iterator[list[Scripted]]:
    servers: list[Scripted] = []
    yield servers
    for server in servers:
        server.close()


def serve(servers: list[Scripted], *answers: Answer) -> Scripted:
    server = Scripted(*answers)
    servers.append(server)
    return server


def closed_port() -> int:
    """A loopback port nobody listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- one retry policy, bounded by time --------------------------------------------------
def test_retries_are_bounded_by_time_not_by_a_count(scripted: list[Scripted]) -> None:
    server = serve(scripted, Answer(503, b'{"code": "Unavailable"}'))
    http = HttpClient(base_url=server.url, retry=quick(0.3))
    started = time.monotonic()
    with pytest.raises(ApiError, match=r"HTTP 503 Unavailable.*max_retry_seconds=0\.3"):
        http.request("GET", "/x", operation="getThing")
    assert time.monotonic() - started < 3
    # The old policy gave up after 6 attempts whatever the time; this one keeps trying.
    assert len(server.requests) > 6


def test_a_long_429_storm_is_outlasted_honouring_retry_after(scripted: list[Scripted]) -> None:
    storm = [Answer(429, b"{}", {"Retry-After": "0.01"})] * 12
    server = serve(scripted, *storm, Answer(200, b'{"ok": true}'))
    waits: list[float] = []
    http = HttpClient(base_url=server.url, retry=quick(5), sleep=waits.append)
    assert http.request_json("GET", "/x", operation="getThing") == {"ok": True}
    assert waits == [0.01] * 12
    assert len(server.requests) == 13


def test_a_host_refusing_connections_fails_fast_with_one_line() -> None:
    port = closed_port()
    hosts = HostHealth(refusals_to_give_up=3)
    waits: list[float] = []
    first = HttpClient(base_url=f"http://127.0.0.1:{port}", retry=quick(60), hosts=hosts)
    first._sleep = waits.append
    with pytest.raises(HostUnreachable) as refused:
        first.request("GET", "/x", operation="getThing")
    assert str(refused.value) == f"cannot reach 127.0.0.1:{port}"
    assert isinstance(refused.value, ApiError)
    assert len(waits) == 2  # three refused connections, two waits between them

    # Every later call to that host, from any client, fails at once without trying again.
    second = HttpClient(base_url=f"http://127.0.0.1:{port}", retry=quick(60), hosts=hosts)
    second._sleep = waits.append
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(HostUnreachable, match=f"^cannot reach 127.0.0.1:{port}$"):
            second.request("GET", "/y", operation="getOther")
    assert time.monotonic() - started < 0.5
    assert len(waits) == 2


def test_a_dropped_connection_is_retried_and_does_not_mark_the_host(
    scripted: list[Scripted],
) -> None:
    drops = [Answer(mode="drop")] * 4
    server = serve(scripted, *drops, Answer(200, b"{}"))
    hosts = HostHealth(refusals_to_give_up=3)
    http = HttpClient(base_url=server.url, retry=quick(), hosts=hosts)
    assert http.request_json("GET", "/x", operation="getThing") == {}
    assert len(server.requests) == 5
    hosts.check(server.url.removeprefix("http://"))  # not given up


# -- broken bodies -------------------------------------------------------------------------
def corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 16]) + data[middle + 16 :]


@pytest.mark.parametrize("broken", ["truncated", "corrupt gzip"])
def test_a_broken_document_body_is_fetched_again(scripted: list[Scripted], broken: str) -> None:
    body = gzip.compress(PDF)
    first = (
        Answer(200, body, mode="truncate") if broken == "truncated" else Answer(200, corrupt(body))
    )
    server = serve(scripted, first, first, Answer(200, body))
    http = HttpClient(base_url="", retry=quick())
    assert (
        fetch_bounded(
            http, f"{server.url}/doc.gz", max_bytes=10**6, what="doc", authenticated=False
        )
        == PDF
    )
    assert len(server.requests) == 3


def test_a_document_broken_every_time_is_one_clear_error_when_the_budget_is_spent(
    scripted: list[Scripted],
) -> None:
    server = serve(scripted, Answer(200, corrupt(gzip.compress(PDF))))
    http = HttpClient(base_url="", retry=quick(0.2))
    with pytest.raises(ApiError, match=r"download invoice 7 failed: invoice 7: broken gzip data"):
        fetch_bounded(
            http, f"{server.url}/doc.gz", max_bytes=10**6, what="invoice 7", authenticated=False
        )
    assert len(server.requests) > 1


def test_a_document_larger_than_max_bytes_is_refused_not_retried(
    scripted: list[Scripted],
) -> None:
    server = serve(scripted, Answer(200, PDF))
    http = HttpClient(base_url="", retry=quick())
    url = f"{server.url}/doc.pdf"
    assert fetch_bounded(http, url, max_bytes=len(PDF), what="doc", authenticated=False) == PDF
    with pytest.raises(DocumentError, match=r"larger than documents\.max_bytes"):
        fetch_bounded(http, url, max_bytes=len(PDF) - 1, what="doc", authenticated=False)
    assert len(server.requests) == 2


# -- JSON ----------------------------------------------------------------------------------
def test_json_numbers_are_decimals_and_an_html_page_is_one_line(scripted: list[Scripted]) -> None:
    server = serve(
        scripted,
        Answer(200, b'{"amount": 0.1, "big": 123456789012345678.01}'),
        Answer(200, b"<html><body>Sign in</body></html>", {"Content-Type": "text/html"}),
    )
    http = HttpClient(base_url=server.url, retry=quick())
    body = http.request_json("GET", "/x", operation="getTransactions")
    assert body == {"amount": Decimal("0.1"), "big": Decimal("123456789012345678.01")}
    assert isinstance(body["amount"], Decimal)
    with pytest.raises(
        ApiError, match=r"^getTransactions answered HTTP 200 .*not JSON \(text/html\)$"
    ):
        http.request_json("GET", "/x", operation="getTransactions")


# -- credentials never follow a redirect ---------------------------------------------------
def arrivals_elsewhere(emulator: Emulator) -> list[dict[str, str]]:
    """Requests the emulator received under another host name (the redirect's target)."""
    return [h for _, _, h in emulator.requests_seen if h.get("host", "").startswith("localhost")]


def test_amazon_business_credentials_never_follow_a_redirect(emulator: Emulator) -> None:
    settings = AmazonBusinessSettings.from_config(tap_config(emulator))
    client = AmazonBusinessClient(settings, retry=quick())
    emulator.add_fault(Fault("ab.transactions", kind="redirect"))
    end = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(
        ApiError, match=f"getTransactions failed: HTTP 302 redirect to localhost:{emulator.port}"
    ):
        list(client.transactions(end - dt.timedelta(days=30), end))
    assert arrivals_elsewhere(emulator) == []


def test_amazon_ads_credentials_never_follow_a_redirect(emulator: Emulator) -> None:
    settings = AmazonAdsSettings.from_section(tap_config(emulator)["amazon_ads"])
    client = AmazonAdsClient(settings, retry=quick())
    emulator.add_fault(Fault("ads.accounts.list", kind="redirect"))
    with pytest.raises(ApiError, match=f"redirect to localhost:{emulator.port},") as refused:
        client.list_account_ids()
    assert "?" not in str(refused.value)
    assert arrivals_elsewhere(emulator) == []


def test_presigned_downloads_carry_no_credentials(emulator: Emulator) -> None:
    settings = AmazonAdsSettings.from_section(tap_config(emulator)["amazon_ads"])
    client = AmazonAdsClient(settings, retry=quick())
    emulator.knobs["ads_polls_until_ready"] = 0
    request = StatementRequest(ACCOUNTS[0][0], dt.date(2025, 1, 1), dt.date(2025, 3, 31))
    update = client.get_billing_statement(request, client.create_billing_statement(request))
    assert update.status is JobStatus.DONE and update.result
    with client.open_download(update.result, str(request)) as raw:
        assert b"".join(raw)
    downloads = [h for name, _, h in emulator.requests_seen if name == "ads.statements.download"]
    assert len(downloads) == 1
    credentials = {"authorization", "x-amz-access-token", "amazon-advertising-api-clientid"}
    assert credentials.isdisjoint(downloads[0])


# -- Login with Amazon ---------------------------------------------------------------------
def login(
    emulator: Emulator,
    token_url: str | None = None,
    seconds: float = 2.0,
    hosts: HostHealth | None = None,
) -> LoginWithAmazon:
    section = tap_config(emulator)["amazon_ads"]
    return LoginWithAmazon(
        token_url=token_url or section["token_url"],
        client_id=section["client_id"],
        client_secret=section["client_secret"],
        refresh_token=section["refresh_token"],
        settings_prefix="amazon_ads",
        retry=quick(seconds),
        hosts=hosts,
    )


def test_a_refused_refresh_token_is_asked_about_once(emulator: Emulator) -> None:
    emulator.knobs["lwa_invalid_grant"] = True
    auth = login(emulator)
    messages = set()
    for _ in range(25):
        with pytest.raises(AuthorizationExpired) as refused:
            auth.access_token()
        messages.add(str(refused.value))
    assert emulator.counters["lwa.token"] == 1
    assert len(messages) == 1 and "amazon_ads.refresh_token" in messages.pop()


def test_lwa_token_endpoint_in_a_503_storm_is_cannot_reach(emulator: Emulator) -> None:
    emulator.add_fault(Fault("lwa.token", status=503, count=10_000))
    auth = login(emulator, seconds=0.2, hosts=HostHealth())
    with pytest.raises(
        HostUnreachable, match=rf"^cannot reach 127\.0\.0\.1:{emulator.port} \("
    ) as down:
        auth.access_token()
    assert "HTTP 503" in str(down.value) and "re-authorise" not in str(down.value)
    calls = emulator.counters["lwa.token"]
    assert calls > 1
    # The budget is spent once: the next caller does not wait for the storm again.
    with pytest.raises(HostUnreachable, match=rf"^cannot reach 127\.0\.0\.1:{emulator.port}$"):
        auth.access_token()
    assert emulator.counters["lwa.token"] == calls


def test_lwa_token_endpoint_refusing_connections_is_cannot_reach() -> None:
    port = closed_port()
    with Emulator() as emulator:
        # A HostHealth of its own: the process-wide one must not remember a test's port.
        auth = login(
            emulator, token_url=f"http://127.0.0.1:{port}/auth/o2/token", hosts=HostHealth()
        )
        with pytest.raises(HostUnreachable, match=f"^cannot reach 127.0.0.1:{port}$"):
            auth.access_token()


# -- Google Ads ----------------------------------------------------------------------------
def google_settings(emulator: Emulator, **changes: Any) -> GoogleAdsSettings:
    return GoogleAdsSettings.from_config({**tap_config(emulator)["google_ads"], **changes})


def test_google_token_endpoint_in_a_503_storm_is_cannot_reach(emulator: Emulator) -> None:
    emulator.add_fault(Fault("google.token", status=503, count=10_000))
    with pytest.raises(
        HostUnreachable, match=rf"^cannot reach 127\.0\.0\.1:{emulator.port} \("
    ) as down:
        GoogleAdsApi(google_settings(emulator), retry=quick(), hosts=HostHealth())
    assert "kept failing" in str(down.value) and "refresh token" not in str(down.value)


def test_google_token_endpoint_refusing_connections_is_cannot_reach(emulator: Emulator) -> None:
    port = closed_port()
    settings = google_settings(emulator, token_uri=f"http://127.0.0.1:{port}/token")
    with pytest.raises(ApiError, match=f"^cannot reach 127.0.0.1:{port}") as down:
        GoogleAdsApi(settings, retry=quick(), hosts=HostHealth())
    assert not isinstance(down.value, AuthorizationExpired)


def test_a_dead_google_refresh_token_is_asked_about_once(emulator: Emulator) -> None:
    api = GoogleAdsApi(google_settings(emulator), retry=quick())
    emulator.knobs["google_invalid_grant"] = True
    before = emulator.counters["google.token"]
    for _ in range(10):
        api.invalidate(api.credentials.token or "")
        with pytest.raises(AuthorizationExpired, match=r"google_ads\.refresh_token"):
            api.access_token()
    assert emulator.counters["google.token"] == before + 1


# -- end to end, the real tap process ------------------------------------------------------
def google_only(emulator: Emulator) -> dict[str, Any]:
    return {
        "start_date": "2025-01-01",
        "end_date": "2026-10-31",
        "max_workers": 1,
        "google_ads": {**tap_config(emulator)["google_ads"], "customer_ids": ["1111111111"]},
    }


def test_google_unauthenticated_mid_run_refreshes_once_and_completes(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = google_only(emulator)
    whole = run_tap(config, tmp_path / "clean")
    assert whole.returncode == 0, whole.stderr
    expected = {r["id"] for r in whole.records["google_ads_invoices"]}
    assert expected
    emulator.counters.clear()

    # The eighth ListInvoices meets UNAUTHENTICATED and every token is revoked, as on expiry.
    emulator.add_fault(Fault("google.list_invoices", kind="grpc", status=401, after=7))
    run = run_tap(config, tmp_path / "faulted")
    assert run.returncode == 0, run.stderr
    assert {r["id"] for r in run.records["google_ads_invoices"]} == expected
    assert emulator.counters["google.token"] == 2
    assert "refreshing the access token once" in run.stderr
    assert "Create a new refresh token" not in run.stderr


def test_a_dead_amazon_ads_token_costs_one_token_call(emulator: Emulator, tmp_path: Path) -> None:
    section = {**tap_config(emulator)["amazon_ads"], "poll_interval_seconds": 0}
    section["account_ids"] = [account[0] for account in ACCOUNTS]
    emulator.knobs["lwa_invalid_grant"] = True
    run = run_tap(
        {"start_date": "2025-01-01", "end_date": "2026-11-15", "amazon_ads": section}, tmp_path
    )
    assert run.returncode == 1
    assert emulator.counters["lwa.token"] == 1
    failed = [line for line in run.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 1, run.stderr
    assert "AuthorizationExpired" in failed[0] and "amazon_ads.refresh_token" in failed[0]


def test_an_unreachable_api_host_ends_the_source_fast(emulator: Emulator, tmp_path: Path) -> None:
    port = closed_port()
    section = {**tap_config(emulator)["amazon_ads"], "api_url": f"http://127.0.0.1:{port}"}
    section["account_ids"] = [account[0] for account in ACCOUNTS]
    started = time.monotonic()
    run = run_tap(
        {"start_date": "2025-01-01", "end_date": "2026-11-15", "amazon_ads": section}, tmp_path
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 1
    assert f"cannot reach 127.0.0.1:{port}" in run.stderr
    # Three refused connections (two short backoffs), then every other call fails at once.
    assert elapsed < 30, elapsed
    retries = [
        line for line in run.stderr.splitlines() if "retry" in line and "ConnectionError" in line
    ]
    assert len(retries) == 2, run.stderr


def test_a_long_storm_logs_a_few_warnings_not_one_per_retry(
    scripted: list[Scripted], caplog: pytest.LogCaptureFixture
) -> None:
    storm = [Answer(429, b"{}", {"Retry-After": "0"})] * 40
    server = serve(scripted, *storm, Answer(200, b"{}"))
    http = HttpClient(base_url=server.url, retry=quick(5), sleep=lambda _: None)
    with caplog.at_level("WARNING", logger="tap_ad_invoices.http"):
        http.request_json("GET", "/x", operation="getThing")
    warned = [r.getMessage() for r in caplog.records if "getThing: HTTP 429" in r.getMessage()]
    assert [line.split("retry ")[1].split(" ")[0] for line in warned] == [
        "1",
        "2",
        "3",
        "4",
        "8",
        "16",
        "32",
    ]


def test_a_google_pdf_cut_off_once_is_fetched_again_in_the_run(
    emulator: Emulator, tmp_path: Path
) -> None:
    config = google_only(emulator)
    config["google_ads"]["download_pdfs"] = True
    config["documents"] = {"destination": str(tmp_path / "documents")}
    emulator.add_fault(Fault("google.pdf", kind="truncate", after=2))
    run = run_tap(config, tmp_path / "run")
    assert run.returncode == 0, run.stderr
    records = run.records["google_ads_invoices"]
    truth = emulator.sources["google_ads"].truth()["pdf_sha256"]
    assert records and all(r["pdf_sha256"] == truth[r["id"]] for r in records)
    assert emulator.counters["google.pdf"] == len(records) + 1


def test_an_amazon_business_document_corrupt_once_is_fetched_again_in_the_run(
    tmp_path: Path,
) -> None:
    with Emulator(knobs=json.loads(json.dumps(FAST_KNOBS))) as emulator:
        config = {"start_date": "2025-01-01", **emulator.sources["amazon_business"].tap_config()}
        config["amazon_business"].update(poll_interval_seconds=0.05, window_days=400)
        config["documents"] = {"destination": str(tmp_path / "documents")}
        emulator.add_fault(Fault("ab.documents.download", kind="corrupt", after=1))
        run = run_tap(config, tmp_path / "run")
        assert run.returncode == 0, run.stderr
        documents = run.records["amazon_business_invoice_documents"]
        assert documents and all(Path(d["uri"]).is_file() for d in documents)
        assert emulator.counters["ab.documents.download"] == len(documents) + 1


def test_a_google_endpoint_refusing_connections_is_given_up(emulator: Emulator) -> None:
    port = closed_port()
    settings = google_settings(emulator, endpoint=f"localhost:{port}")
    api = GoogleAdsApi(settings, retry=quick(60), hosts=HostHealth())
    with pytest.raises(HostUnreachable, match=f"^cannot reach localhost:{port}$"):
        api.billing_setups("1111111111")
    started = time.monotonic()
    with pytest.raises(HostUnreachable):
        api.billing_setups("2222222222")
    assert time.monotonic() - started < 0.5


def test_google_ads_unreachable_mid_run_ends_the_source_fast(
    emulator: Emulator, tmp_path: Path
) -> None:
    port = closed_port()
    config = google_only(emulator)
    config["google_ads"].update(endpoint=f"localhost:{port}", customer_ids=[])
    started = time.monotonic()
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    assert time.monotonic() - started < 30
    failed = [line for line in run.stderr.splitlines() if "FAILED" in line]
    assert len(failed) == 1, run.stderr
    assert f"HostUnreachable: cannot reach localhost:{port}" in failed[0]
