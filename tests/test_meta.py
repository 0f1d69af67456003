"""meta_invoices end to end: the real tap process against the emulated Graph API.

Expected values come from the emulator's truth(), never from constants; the
signs and sums the `invoices` table must show are computed here from Graph's
own invoice types, independently of the tap's conversion code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator import meta as fake
from tap_ad_invoices.errors import ConfigError
from tap_ad_invoices.meta.client import (
    MAX_PACE_SECONDS,
    SLOW_FROM,
    GraphError,
    MetaGraph,
    Usage,
    parse_usage,
)
from tap_ad_invoices.meta.config import MetaSettings
from tap_ad_invoices.meta.conversion import invoice_record
from tap_ad_invoices.redaction import strip_query
from tap_ad_invoices.tap import check_config
from tests.reconcile import assert_reconciles
from tests.tap_runner import TapRun, WatchedTap, run_tap

STREAM = "meta_invoices"
CAMPAIGNS = "meta_invoice_campaigns"
PK = ["business_id", "id"]
KINDS = {"INV": "invoice", "CM": "credit_memo", "DM": "debit_memo", "PRO_FORMA": "pro_forma"}


@pytest.fixture
def graph(emulator: Emulator) -> fake.MetaEmulator:
    meta: fake.MetaEmulator = emulator.sources["meta"]
    return meta


def config(graph: fake.MetaEmulator, tmp_path: Path, **section: Any) -> dict[str, Any]:
    return {
        "start_date": "2025-01-01",
        "max_workers": 4,
        "meta": {**graph.tap_config()["meta"], **section},
        "documents": {"destination": str(tmp_path / "documents")},
    }


def truth_by_id(graph: fake.MetaEmulator) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in graph.truth()["invoices"]}


def failed_lines(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "FAILED" in line and "| ERROR" in line]


def assert_no_secrets(run: TapRun) -> None:
    assert fake.ACCESS_TOKEN not in run.stderr
    assert all(fake.ACCESS_TOKEN not in json.dumps(m, default=str) for m in run.messages)


def signed_total(invoice: dict[str, Any]) -> Decimal | None:
    """What `invoices` must carry, from Graph's type alone: CM negative, INV/DM positive."""
    total = abs(Decimal(invoice["billed_amount_details"]["total_amount"]))
    return {"INV": total, "DM": total, "CM": -total, "PRO_FORMA": None}[invoice["type"]]


def source_signed_total(record: Mapping[str, Any]) -> Decimal | None:
    """The same rule applied to a meta_invoices record, for tests.reconcile."""
    total = abs(record["billed_amount_details"]["total_amount"])
    return {"INV": total, "DM": total, "CM": -total, "PRO_FORMA": None}[record["type"]]


def test_every_field_pdf_and_campaign_line_matches_the_truth(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    graph.emulator.knobs["meta_page_size"] = 2  # invoices and campaign lines span pages
    run = run_tap(config(graph, tmp_path), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    truth = graph.truth()
    expected = {i["id"]: i for i in truth["invoices"]}
    per_business = Counter(i["_business"] for i in truth["invoices"])
    pages = sum(-(-count // 2) for count in per_business.values())
    assert graph.emulator.counters[fake.ROUTE_INVOICES] == pages
    lines_pages = sum(-(-len(lines) // 2) for lines in truth["campaigns"].values())
    assert graph.emulator.counters[fake.ROUTE_CAMPAIGNS] == lines_pages
    records = run.records[STREAM]
    assert sorted(r["id"] for r in records) == sorted(expected)
    assert {r["type"] for r in records} == {"INV", "CM", "DM", "PRO_FORMA"}
    assert {r["currency"] for r in records} == {"USD", "JPY"}

    for record in records:
        want = expected[record["id"]]
        assert record["business_id"] == want["_business"]
        for name in (
            "invoice_id", "type", "invoice_type", "billing_period", "currency",
            "payment_status", "payment_term", "liability_type", "entity",
            "advertiser_name", "ad_account_ids", "download_uri",
        ):  # fmt: skip
            assert record[name] == want[name], name
        assert record["document_kind"] == KINDS[want["type"]]
        assert record["amount"] == Decimal(want["amount"])
        due = want["amount_due"]
        assert record["amount_due"] == {
            "amount": Decimal(due["amount"]),
            "amount_in_hundredths": int(due["amount_in_hundredths"]),
            "currency": due["currency"],
            "offsetted_amount": int(due["offsetted_amount"]),
        }
        billed = want["billed_amount_details"]
        assert record["billed_amount_details"] == {
            k: (v if k == "currency" else Decimal(v)) for k, v in billed.items()
        }
        for name in ("invoice_date", "due_date"):
            assert record[name] == dt.datetime.fromisoformat(want[name]).isoformat()
        assert record["issue_date"] == want["_issue_date"]
        cdn = want["cdn_download_uri"]
        assert record["cdn_download_uri"] == (strip_query(cdn) if cdn else None)
        assert "sig=" not in json.dumps(record, default=str)  # the CDN link's credential stays out
        # The PDF, stored under documents.destination, is the emulator's byte for byte.
        assert record["pdf_sha256"] == truth["pdf_sha256"][record["id"]]
        stored = Path(record["pdf_uri"])
        assert stored.is_file()
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == record["pdf_sha256"]
        assert record["pdf_size"] == stored.stat().st_size
        assert record["pdf_page_count"] == 1

    # Campaign lines: every line, in API order, adding up to the invoice's net amount.
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in run.records[CAMPAIGNS]:
        lines[line["invoice_node_id"]].append(line)
    assert set(lines) == set(expected)
    for node, got in lines.items():
        want_lines = truth["campaigns"][node]
        assert [g["line_number"] for g in got] == list(range(1, len(want_lines) + 1))
        for line, want in zip(got, want_lines, strict=True):
            assert line["amount"] == Decimal(want["amount"])
            assert line["issue_date"] == expected[node]["_issue_date"]
            for name in ("campaign_id", "campaign_name", "ad_account_id", "impressions", "clicks"):
                assert line[name] == want[name], name
        net = Decimal(expected[node]["billed_amount_details"]["net_amount"])
        assert sum(line["amount"] for line in got) == net

    # Both download paths were used, and the token went to the Graph host only.
    vias = {r["via"] for r in graph.pdf_requests}
    assert vias == {"cdn", "graph"}
    cdn_calls = [seen for seen in graph.emulator.requests_seen if seen[0] == fake.ROUTE_PDF_CDN]
    assert cdn_calls and all("authorization" not in headers for _, _, headers in cdn_calls)
    graph_calls = [seen for seen in graph.emulator.requests_seen if seen[0] != fake.ROUTE_PDF_CDN]
    assert all(
        headers.get("authorization") == f"Bearer {fake.ACCESS_TOKEN}"
        for name, _, headers in graph_calls
        if name.startswith("meta.")
    )
    assert_no_secrets(run)


def test_requests_are_graph_requests(graph: fake.MetaEmulator, tmp_path: Path) -> None:
    run = run_tap(config(graph, tmp_path, download_pdfs=False), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    paths = [path for name, path, _ in graph.emulator.requests_seen if name.startswith("meta.")]
    assert paths and all(path.startswith(f"{fake.GRAPH_PREFIX}/v25.0/") for path in paths)
    for request in graph.invoice_requests:
        assert set(request["fields"].split(",")) == set(graph.invoice_fields())
        assert request["issue_start_date"] == "2025-01-01"
        tomorrow = fake.utc_today() + dt.timedelta(days=1)  # issue_end_date is exclusive
        assert request["issue_end_date"] == tomorrow.isoformat()
    assert {r["business"] for r in graph.invoice_requests} == set(graph.truth()["businesses"])


def test_invoices_rows_signed_and_reconciled_per_currency(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    run = run_tap(config(graph, tmp_path), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    truth = truth_by_id(graph)
    rows = [r for r in run.records["invoices"] if r["platform"] == "meta"]
    assert len(rows) == len(truth)
    by_number = {r["invoice_number"]: r for r in rows}
    for invoice in truth.values():
        row = by_number[invoice["invoice_id"]]
        assert row["account_id"] == invoice["_business"]
        assert row["document_kind"] == KINDS[invoice["type"]]
        assert row["total_amount"] == signed_total(invoice)
        billed = invoice["billed_amount_details"]
        for field, part in (("subtotal_amount", "net_amount"), ("tax_amount", "tax_amount")):
            amount = abs(Decimal(billed[part]))
            sign = {"INV": 1, "DM": 1, "CM": -1, "PRO_FORMA": None}[invoice["type"]]
            assert row[field] == (None if sign is None else sign * amount), field
        assert row["issue_date"] == invoice["_issue_date"]
        assert row["due_date"] == invoice["due_date"][:10]
        period = dt.date.fromisoformat(invoice["billing_period"])
        assert row["service_start_date"] == period.isoformat()
        following = dt.date(period.year + period.month // 12, period.month % 12 + 1, 1)
        assert row["service_end_date"] == (following - dt.timedelta(days=1)).isoformat()
        assert row["account_name"] == invoice["advertiser_name"]
        assert row["status"] == invoice["payment_status"].lower()
        assert row["source_stream"] == STREAM
        pro_forma = invoice["type"] == "PRO_FORMA"
        assert row["amount_status"].startswith("missing:" if pro_forma else "as_reported")
    assert {r["document_kind"] for r in rows} >= {"credit_memo", "debit_memo", "pro_forma"}

    # Per currency: the sum over `invoices` equals the sum over meta_invoices (pro formas
    # excluded, credit memos subtracted), every record is in it once, and both equal the
    # emulator's own books.
    sums = assert_reconciles(
        run,
        "meta",
        STREAM,
        source_total=source_signed_total,
        source_keys=tuple(PK),
    )
    books: dict[str | None, Decimal] = defaultdict(Decimal)
    for invoice in truth.values():
        books[invoice["currency"]] += signed_total(invoice) or 0
    assert sums == dict(books)
    assert set(books) == {"USD", "JPY"}


def test_a_lookback_reread_reuses_stored_pdfs_without_a_call(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    cfg = config(graph, tmp_path)
    first = run_tap(cfg, tmp_path / "first")
    assert first.returncode == 0, first.stderr
    pdf_routes = (fake.ROUTE_PDF_CDN, fake.ROUTE_PDF_GRAPH)
    assert sum(graph.emulator.counters[r] for r in pdf_routes) == len(first.records[STREAM])
    before = {r["id"]: r for r in first.records[STREAM]}
    graph.emulator.counters.clear()

    second = run_tap(cfg, tmp_path / "second", state=first.state)
    assert second.returncode == 0, second.stderr
    assert second.records[STREAM], "the look-back re-reads some invoices"
    assert sum(graph.emulator.counters[r] for r in pdf_routes) == 0
    for record in second.records[STREAM]:
        old = before[record["id"]]
        assert (record["pdf_sha256"], record["pdf_uri"]) == (old["pdf_sha256"], old["pdf_uri"])

    # Downloaded again: a file gone from the destination, and an invoice paid since (its
    # PDF may say so; Meta does not document that it does not).
    gone = second.records[STREAM][0]
    Path(gone["pdf_uri"]).unlink()
    unpaid = [r for r in second.records[STREAM] if r["payment_status"] == "UNPAID"]
    assert unpaid and unpaid[0]["id"] != gone["id"]
    graph.mutate({"op": "pay", "id": unpaid[0]["id"]})
    graph.emulator.counters.clear()
    third = run_tap(cfg, tmp_path / "third", state=second.state)
    assert third.returncode == 0, third.stderr
    assert sum(graph.emulator.counters[r] for r in pdf_routes) == 2
    assert Path(gone["pdf_uri"]).read_bytes().startswith(b"%PDF")


def test_second_run_rereads_lookback_and_upserts_payment_status(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    cfg = config(graph, tmp_path, download_pdfs=False)
    first = run_tap(cfg, tmp_path / "first")
    assert first.returncode == 0, first.stderr
    unpaid = [r for r in first.records[STREAM] if r["payment_status"] == "UNPAID"]
    assert unpaid
    target = max(unpaid, key=lambda r: r["issue_date"])
    graph.mutate({"op": "pay", "id": target["id"]})
    graph.invoice_requests.clear()

    second = run_tap(cfg, tmp_path / "second", state=first.state)
    assert second.returncode == 0, second.stderr
    # Only the look-back window was asked for: two months before the bookmark's date.
    bookmarks = first.state["bookmarks"][STREAM]["businesses"]  # type: ignore[index]
    for request in graph.invoice_requests:
        synced = dt.date.fromisoformat(bookmarks[request["business"]]["issued_through"])
        month = synced.year * 12 + synced.month - 1 - 2
        assert request["issue_start_date"] == dt.date(month // 12, month % 12 + 1, 1).isoformat()
    # An upserting target keeps one row per key, the newest.
    table = {tuple(r[k] for k in PK): r for r in first.records[STREAM]}
    table.update({tuple(r[k] for k in PK): r for r in second.records[STREAM]})
    assert len(table) == len(graph.truth()["invoices"])
    paid = table[(target["business_id"], target["id"])]
    assert paid["payment_status"] == "PAID"
    assert paid["amount_due"]["amount"] == 0 and paid["amount_due"]["offsetted_amount"] == 0
    reread = {r["id"] for r in second.records[STREAM]}
    assert target["id"] in reread and len(reread) < len(table)  # not everything again


def test_killed_run_resumes_without_losing_an_invoice(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    cfg = config(graph, tmp_path, download_pdfs=False)
    graph.emulator.knobs["meta_held_businesses"] = [fake.BUSINESS_JPY]
    tap = WatchedTap(
        cfg,
        tmp_path / "killed",
        until=lambda state: (
            fake.BUSINESS_USD in state["bookmarks"].get(STREAM, {}).get("businesses", {})
        ),
    )
    try:
        assert tap.reached.wait(timeout=60), tap.stderr_tail()
        assert graph.held.wait(timeout=60)  # the tap is inside the JPY business now
        assert tap.process.poll() is None
    finally:
        killed = tap.kill()
    assert killed.returncode == -signal.SIGKILL
    assert killed.state is not None
    assert set(killed.state["bookmarks"][STREAM]["businesses"]) == {fake.BUSINESS_USD}

    graph.emulator.knobs["meta_held_businesses"] = []
    graph.release.set()
    graph.invoice_requests.clear()
    resumed = run_tap(cfg, tmp_path / "resumed", state=killed.state)
    assert resumed.returncode == 0, resumed.stderr
    keys = set(killed.keys(STREAM, PK)) | set(resumed.keys(STREAM, PK))
    truth = graph.truth()["invoices"]
    assert keys == {(i["_business"], i["id"]) for i in truth}
    starts = {r["business"]: r["issue_start_date"] for r in graph.invoice_requests}
    assert starts[fake.BUSINESS_JPY] == "2025-01-01"  # never finished: from start_date
    assert starts[fake.BUSINESS_USD] > "2025-01-01"  # finished: only its look-back


def test_one_broken_pdf_fails_that_invoice_alone(graph: fake.MetaEmulator, tmp_path: Path) -> None:
    broken = next(i for i in graph.truth()["invoices"] if i["_business"] == fake.BUSINESS_USD)
    graph.emulator.knobs["meta_broken_pdfs"] = [broken["id"]]
    run = run_tap(config(graph, tmp_path), tmp_path / "run")
    assert run.returncode == 1
    failed = failed_lines(run)
    assert len(failed) == 1, run.stderr
    assert fake.BUSINESS_USD in failed[0] and broken["invoice_id"] in failed[0]
    records = {r["id"]: r for r in run.records[STREAM]}
    assert set(records) == set(truth_by_id(graph))  # the record still goes out
    assert records[broken["id"]].get("pdf_sha256") is None
    assert all(r["pdf_sha256"] for i, r in records.items() if i != broken["id"])
    # Its business keeps no bookmark, so the next run retries the PDF; the other advanced.
    assert run.state is not None
    assert set(run.state["bookmarks"][STREAM]["businesses"]) == {fake.BUSINESS_JPY}


def test_minor_units_that_disagree_fail_the_invoice_never_guess(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    bad = next(i for i in graph.truth()["invoices"] if i["_business"] == fake.BUSINESS_JPY)
    graph.emulator.knobs["meta_bad_minor_units"] = [bad["id"]]
    run = run_tap(config(graph, tmp_path, download_pdfs=False), tmp_path / "run")
    assert run.returncode == 1
    failed = failed_lines(run)
    assert len(failed) == 1, run.stderr
    assert fake.BUSINESS_JPY in failed[0] and bad["invoice_id"] in failed[0]
    assert "amount_in_hundredths" in failed[0]
    ids = {r["id"] for r in run.records[STREAM]}
    assert ids == set(truth_by_id(graph)) - {bad["id"]}
    assert bad["invoice_id"] not in {r["invoice_number"] for r in run.records["invoices"]}


def test_a_business_refused_fails_alone_and_keeps_its_bookmark(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    cfg = config(graph, tmp_path, download_pdfs=False)
    earlier = fake.utc_today() - dt.timedelta(days=40)  # so a later run could advance
    first = run_tap({**cfg, "end_date": earlier.isoformat()}, tmp_path / "first")
    assert first.returncode == 0, first.stderr
    assert first.state is not None
    before = first.state["bookmarks"][STREAM]["businesses"]
    assert before[fake.BUSINESS_USD] == {"issued_through": earlier.isoformat()}
    graph.emulator.knobs["meta_denied_businesses"] = [fake.BUSINESS_USD]
    second = run_tap(cfg, tmp_path / "second", state=first.state)
    assert second.returncode == 1
    failed = failed_lines(second)
    assert len(failed) == 1, second.stderr
    assert f"business {fake.BUSINESS_USD}" in failed[0] and "code 200" in failed[0]
    assert {r["business_id"] for r in second.records[STREAM]} == {fake.BUSINESS_JPY}
    assert second.state is not None
    after = second.state["bookmarks"][STREAM]["businesses"]
    assert after[fake.BUSINESS_USD] == before[fake.BUSINESS_USD]  # held
    assert after[fake.BUSINESS_JPY] == {"issued_through": fake.utc_today().isoformat()}


@pytest.mark.parametrize("status", [400, 401])  # Graph answers code 190 with either
def test_expired_token_fails_the_source_with_one_line(
    graph: fake.MetaEmulator, tmp_path: Path, status: int
) -> None:
    graph.emulator.knobs["meta_token_expired"] = status
    run = run_tap(config(graph, tmp_path), tmp_path / "run")
    assert run.returncode == 1
    # The source fails as a source: one line naming the setting to fix, then the summary.
    lines = failed_lines(run)
    assert len(lines) == 1, run.stderr
    assert "FAILED meta [every item]: AuthorizationExpired" in lines[0]
    assert "meta.access_token" in lines[0] and "code 190" in lines[0]
    assert "1 item(s) failed" in run.stderr
    assert "Traceback" not in run.stderr
    assert STREAM not in run.records
    assert_no_secrets(run)


def test_throttling_waits_the_time_meta_estimates(graph: fake.MetaEmulator, tmp_path: Path) -> None:
    regain_minutes = 0.005  # 0.3 s: the emulator's clock is scaled down, the rule is Meta's
    graph.emulator.knobs["meta_throttle"] = {
        "count": 2,
        "code": 80004,
        "regain_minutes": regain_minutes,
    }
    started = time.monotonic()
    run = run_tap(config(graph, tmp_path, download_pdfs=False), tmp_path / "run")
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert graph.emulator.counters["meta.throttled"] == 2
    assert {r["id"] for r in run.records[STREAM]} == set(truth_by_id(graph))
    waits = re.findall(r"code 80004.*retry \d+ in ([0-9.]+)s", run.stderr)
    assert [float(w) for w in waits] == [regain_minutes * 60] * 2
    assert elapsed >= 2 * regain_minutes * 60


def test_usage_near_the_limit_spaces_calls_out(graph: fake.MetaEmulator) -> None:
    graph.emulator.knobs["meta_usage_percent"] = 95
    slept: list[float] = []
    settings = MetaSettings.from_config(graph.tap_config()["meta"])
    client = MetaGraph(settings, sleep=slept.append)
    client.invoice_campaigns(fake.BUSINESS_USD, graph.truth()["invoices"][0]["id"])
    assert slept == []  # nothing known yet
    client.invoice_campaigns(fake.BUSINESS_USD, graph.truth()["invoices"][1]["id"])
    assert slept == [pytest.approx(MAX_PACE_SECONDS * (95 - SLOW_FROM) / (100 - SLOW_FROM))]
    graph.emulator.knobs["meta_usage_percent"] = 10
    client.invoice_campaigns(fake.BUSINESS_USD, graph.truth()["invoices"][2]["id"])
    client.invoice_campaigns(fake.BUSINESS_USD, graph.truth()["invoices"][3]["id"])
    assert len(slept) == 2  # usage fell: one more paced call (95% seen), then none


def test_business_without_monthly_invoicing_is_one_warning(
    graph: fake.MetaEmulator, tmp_path: Path
) -> None:
    businesses = [*graph.truth()["businesses"], fake.BUSINESS_CARD]
    run = run_tap(
        config(graph, tmp_path, business_ids=businesses, download_pdfs=False), tmp_path / "run"
    )
    assert run.returncode == 0, run.stderr
    warnings = [
        line for line in run.stderr.splitlines() if "WARNING" in line and fake.BUSINESS_CARD in line
    ]
    assert len(warnings) == 1
    assert failed_lines(run) == []
    assert run.state is not None
    assert fake.BUSINESS_CARD not in run.state["bookmarks"][STREAM]["businesses"]


def test_emulator_refuses_what_graph_refuses(graph: fake.MetaEmulator) -> None:
    import requests

    base = f"{graph.graph_url}/v25.0/{fake.BUSINESS_USD}/business_invoices"
    no_token = requests.get(base, timeout=10).json()
    assert no_token["error"]["code"] == 104
    old = requests.get(
        base.replace("v25.0", "v2.0"), params={"access_token": fake.ACCESS_TOKEN}, timeout=10
    )
    assert old.json()["error"]["code"] == 2635
    default = requests.get(base, params={"access_token": fake.ACCESS_TOKEN}, timeout=10).json()
    assert all(set(item) == {"id"} for item in default["data"])  # Graph's default field


def test_config_errors_name_the_setting() -> None:
    base = {"start_date": "2025-01-01"}
    with pytest.raises(ConfigError, match=r"meta\.business_ids"):
        check_config({**base, "meta": {"access_token": "x" * 10, "business_ids": ["act_1"]}})
    with pytest.raises(ConfigError, match=r"meta\.api_version"):
        check_config(
            {**base, "meta": {"access_token": "x" * 10, "business_ids": ["1"], "api_version": "25"}}
        )
    with pytest.raises(ConfigError, match=r"meta\.access_token"):
        check_config({**base, "meta": {"business_ids": ["1"]}})


def selecting(cfg: dict[str, Any], workdir: Path, selected: set[str]) -> dict[str, Any]:
    """The tap's own catalog for `cfg`, with only `selected` streams selected."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "discover.json").write_text(json.dumps(cfg))
    command = [sys.executable, "-m", "tap_ad_invoices", "--config", str(workdir / "discover.json")]
    done = subprocess.run([*command, "--discover"], capture_output=True, text=True, check=True)
    catalog: dict[str, Any] = json.loads(done.stdout)
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in selected
    return catalog


def test_streams_are_declared_incremental(graph: fake.MetaEmulator, tmp_path: Path) -> None:
    """FULL_TABLE would let a target's activate-version soft-delete what a look-back
    re-read did not return again."""
    catalog = selecting(config(graph, tmp_path), tmp_path / "discover", set())
    entries = {e["tap_stream_id"]: e for e in catalog["streams"]}
    for stream in (STREAM, CAMPAIGNS):
        assert entries[stream]["replication_method"] == "INCREMENTAL"
        assert entries[stream]["replication_key"] == "issue_date"


@pytest.mark.parametrize(
    "selected", [{CAMPAIGNS}, {STREAM, "invoices"}], ids=["campaigns only", "no campaigns"]
)
def test_campaign_lines_cost_calls_only_when_selected(
    graph: fake.MetaEmulator, tmp_path: Path, selected: set[str]
) -> None:
    cfg = config(graph, tmp_path, download_pdfs=False)
    catalog = selecting(cfg, tmp_path / "discover", selected)
    run = run_tap(cfg, tmp_path / "run", catalog=catalog)
    assert run.returncode == 0, run.stderr
    assert set(run.records) == selected
    campaign_calls = graph.emulator.counters[fake.ROUTE_CAMPAIGNS]
    assert (campaign_calls > 0) == (CAMPAIGNS in selected)
    if CAMPAIGNS in selected:
        lines = sum(len(v) for v in graph.truth()["campaigns"].values())
        assert len(run.records[CAMPAIGNS]) == lines


def test_usage_header_and_graph_error_codes() -> None:
    header = json.dumps(
        {
            "111": [{"call_count": 12, "total_cputime": 80, "total_time": 40}],
            "222": [{"call_count": 100, "estimated_time_to_regain_access": 3}],
        }
    )
    assert parse_usage(header, "111") == Usage(percent=80.0, regain_seconds=0.0)
    assert parse_usage(header, "222") == Usage(percent=100.0, regain_seconds=180.0)
    assert parse_usage("not json", "111") is None
    body = {"error": {"code": 80004, "error_subcode": 2446079, "message": "too many calls"}}
    assert GraphError.from_body("x", 400, body).throttled
    for code in (4, 17, 32, 613, 80000, 80099):
        assert GraphError("x", 400, code, None, "").throttled
    assert not GraphError("x", 400, 100, None, "").throttled
    assert GraphError("x", 400, 190, 463, "expired").token_invalid


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "$1,234.56"},  # written for people: refused, never guessed
        {"amount": "1e3"},
        {"amount_due": {"amount": "10.00", "amount_in_hundredths": "1000.5"}},
        {"amount_due": {"amount": "10.00", "offsetted_amount": "10"}},  # USD has 2 digits
        {"amount_due": {"amount": "10.00", "currency": "EUR"}},
        {"type": "RECEIPT"},
    ],
)
def test_conversion_refuses_what_it_cannot_read_exactly(change: dict[str, Any]) -> None:
    raw = {"id": "1", "type": "INV", "currency": "USD", "amount": "10.00", **change}
    with pytest.raises(ValueError):
        invoice_record(raw, "111")


def test_jpy_minor_units_use_the_currency_offset() -> None:
    due = {"amount": "512345", "amount_in_hundredths": "51234500", "offsetted_amount": "512345"}
    raw = {"id": "1", "type": "INV", "currency": "JPY", "amount": "512345", "amount_due": due}
    record = invoice_record(raw, "111")
    assert record["amount_due"]["offsetted_amount"] == 512345
    assert record["amount_due"]["amount"] == Decimal("512345")


def test_no_link_in_a_record_keeps_its_query() -> None:
    """A query may carry a token or a signature: records keep the path only."""
    raw = {
        "id": "1",
        "type": "INV",
        "currency": "USD",
        "amount": "10.00",
        "download_uri": "https://graph.example/v24.0/1/invoice_pdf?access_token=SECRET",
        "cdn_download_uri": "https://cdn.example/i/1.pdf?sig=SECRET&exp=1",
    }
    record = invoice_record(raw, "111")
    assert record["download_uri"] == "https://graph.example/v24.0/1/invoice_pdf"
    assert record["cdn_download_uri"] == "https://cdn.example/i/1.pdf"
