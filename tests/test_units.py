"""Small pieces: CSV edge cases, amounts, date windows, token bucket, redaction, jobs."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import logging
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tap_ad_invoices.amazon_ads.conversion import StatementColumns, row_to_record
from tap_ad_invoices.csvstream import MalformedCsv, iter_csv_rows
from tap_ad_invoices.jobs import AsyncJobRunner, JobLost, JobStatus, JobUpdate
from tap_ad_invoices.money import from_micros
from tap_ad_invoices.ratelimit import TokenBucket
from tap_ad_invoices.redaction import RedactingFilter, redact, register_secret
from tap_ad_invoices.windows import Window, contiguous_end, plan_windows

D = dt.date


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


CSV = (
    "\ufeffInvoice Number,Amount,Purchase Order,Notes\r\n"
    "\r\n"
    'INV-1,"1,234.56","PO 7, Q3, EMEA","two\r\nlines"\r\n'
    ",,,\r\n"
    "INV-2,-45.00,,Müller 株式会社\r\n"
    "INV-3,7,,\r\n"
).encode()


@pytest.mark.parametrize("wrap", [lambda b: b, lambda b: gzip.compress(b)], ids=["plain", "gzip"])
@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 16])
def test_csv_rows_survive_bom_crlf_quotes_blank_lines_and_any_chunking(wrap, chunk_size):
    rows = list(iter_csv_rows(chunked(wrap(CSV), chunk_size)))
    assert rows[0].header == ["Invoice Number", "Amount", "Purchase Order", "Notes"]
    cells = [r.cells for r in rows]
    assert cells[0] == ["INV-1", "1,234.56", "PO 7, Q3, EMEA", "two\r\nlines"]
    assert cells[1] == ["INV-2", "-45.00", "", "Müller 株式会社"]
    assert cells[2] == ["INV-3", "7", "", ""]
    assert [r.number for r in rows] == [1, 2, 3]  # blank lines are not rows


@pytest.mark.parametrize(
    ("body", "row"),
    [
        (b'a,b\r\n1,2\r\n3,"4\r\n5,6\r\n7,8\r\n', "row 2"),  # unclosed quote swallows the rest
        (b"a,b,c\r\n1,2,3\r\n1234.56\r\n", "row 2"),  # last row cut off mid-file
        (b"a,b\r\n1,2,3\r\n", "row 1"),  # more cells than the header
        (b'a,b\r\n1,"' + b"x" * 200_000 + b'"\r\n', "row 1"),  # past the field limit
    ],
    ids=["unclosed-quote", "short-row", "long-row", "huge-cell"],
)
def test_malformed_csv_is_refused_naming_the_row(body, row):
    with pytest.raises(MalformedCsv, match=row):
        list(iter_csv_rows([body]))


def test_micros_convert_exactly():
    for micros in (1, 999_999, 1_234_560_000, -5_000_000, 10**15 + 1):
        assert from_micros(micros) == Decimal(micros) / 1_000_000
        assert Decimal(micros).scaleb(-6) == from_micros(micros)


def test_recognised_columns_become_typed_fields_and_every_column_is_kept():
    header = [
        "Invoice Number",
        "Invoice Date",
        "Due Date",
        "Billable Amount",
        "Currency",
        "Brand New Column",
    ]
    cells = ["IN-1", "20260201", "03/05/2026", "-1,000.50", "USD", "surprise"]
    columns = StatementColumns(header, "en_US")
    record = row_to_record(
        columns, cells, account_id="a", statement_start=D(2026, 1, 1), statement_end=D(2026, 3, 31)
    )
    assert record["invoice_key"] == "IN-1"
    assert record["invoice_date"] == D(2026, 2, 1)
    assert record["due_date"] == D(2026, 3, 5)
    assert record["billable_amount"] == Decimal("-1000.50")
    assert record["columns"]["Brand New Column"] == "surprise"
    assert columns.mapping.unmapped_headers == ["Brand New Column"]


def test_rows_without_invoice_number_get_a_content_key():
    columns = StatementColumns(["Foo", "Bar"], "en_US")
    first = row_to_record(
        columns,
        ["1", "2"],
        account_id="a",
        statement_start=D(2026, 1, 1),
        statement_end=D(2026, 1, 2),
    )
    again = row_to_record(
        columns,
        ["1", "2"],
        account_id="a",
        statement_start=D(2026, 1, 1),
        statement_end=D(2026, 1, 2),
    )
    other = row_to_record(
        columns,
        ["1", "3"],
        account_id="a",
        statement_start=D(2026, 1, 1),
        statement_end=D(2026, 1, 2),
    )
    assert first["invoice_key"] == again["invoice_key"] != other["invoice_key"]


def test_windows_tile_the_range_without_gaps_or_overlap():
    windows = plan_windows(D(2025, 1, 1), D(2025, 12, 31), 90)
    assert windows[0].start == D(2025, 1, 1) and windows[-1].end == D(2025, 12, 31)
    for before, after in itertools.pairwise(windows):
        assert after.start == before.end + dt.timedelta(days=1)
    assert all((w.end - w.start).days < 90 for w in windows)


def test_windows_reuse_pending_requests_and_fill_around_them():
    pending = Window(D(2025, 3, 1), D(2025, 5, 31))
    windows = plan_windows(D(2025, 1, 1), D(2025, 4, 15), 30, [pending])
    assert pending in windows
    days: set[dt.date] = set()
    for w in windows:
        span = {w.start + dt.timedelta(days=i) for i in range((w.end - w.start).days + 1)}
        assert not days & span
        days |= span
    assert D(2025, 1, 1) in days and D(2025, 4, 15) in days


def test_bookmark_stops_at_the_first_unfinished_window():
    windows = plan_windows(D(2025, 1, 1), D(2025, 3, 31), 31)
    assert contiguous_end(windows, {windows[0], windows[2]}) == windows[0].end
    assert contiguous_end(windows, {windows[1]}) is None


def test_token_bucket_spends_the_burst_then_waits_for_the_rate():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        assert bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.5)
    assert sum(slept) == pytest.approx(0.5)


def test_redaction_masks_registered_secrets_signatures_and_bearer_tokens():
    register_secret("s3cr3t-value")
    text = redact(
        "client_secret s3cr3t-value url https://x/y?X-Amz-Signature=abcdef&a=1 "
        "Authorization: Bearer Atza|tokentoken"
    )
    assert "s3cr3t-value" not in text
    assert "abcdef" not in text
    assert "tokentoken" not in text
    assert "a=1" in text


def test_log_filter_cleans_messages_and_exceptions():
    register_secret("another-secret-1")
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "failed with %s", ("another-secret-1",), None
    )
    RedactingFilter().filter(record)
    assert "another-secret-1" not in record.getMessage()


def _runner(statuses: dict[str, list], **kwargs):
    started: list[str] = []

    def start(spec: str) -> str:
        started.append(spec)
        return f"id-{spec}-{started.count(spec)}"

    def poll(spec: str, job_id: str) -> JobUpdate:
        sequence = statuses[spec]
        status = sequence.pop(0) if len(sequence) > 1 else sequence[0]
        if status == "LOST":
            raise JobLost("gone")
        return JobUpdate(status)

    return AsyncJobRunner(
        start=start, poll=poll, poll_interval=0, sleep=lambda s: None, **kwargs
    ), started


def test_job_runner_resumes_known_ids_and_yields_each_job_once():
    runner, started = _runner(
        {"a": [JobStatus.PENDING, JobStatus.DONE], "b": [JobStatus.FAILED], "c": [JobStatus.DONE]},
        max_outstanding=2,
    )
    jobs = list(runner.run([("a", None), ("b", "old-b"), ("c", None)]))
    assert sorted(j.spec for j in jobs) == ["a", "b", "c"]
    assert "b" not in started  # resumed, not re-created
    assert {j.spec: j.update.status for j in jobs} == {
        "a": JobStatus.DONE,
        "b": JobStatus.FAILED,
        "c": JobStatus.DONE,
    }


def test_job_runner_stops_at_the_deadline_keeping_pending_ids():
    clock = [0.0]
    runner, started = _runner(
        {"a": [JobStatus.PENDING], "b": [JobStatus.PENDING], "c": [JobStatus.PENDING]},
        deadline=0.0,
        clock=lambda: clock[0],
        max_outstanding=2,
    )
    jobs = list(runner.run([("a", "running-a"), ("b", None), ("c", None)]))
    assert sorted((j.spec, j.update.status.value, j.job_id or "") for j in jobs) == [
        ("a", "PENDING", "running-a"),
        ("b", "PENDING", "id-b-1"),
        ("c", "PENDING", ""),
    ]
    assert started == ["b"]  # started up to the limit, then stopped waiting


def test_job_runner_restarts_a_lost_job_once():
    runner, started = _runner({"a": ["LOST", JobStatus.DONE]})
    jobs = list(runner.run([("a", "expired-id")]))
    assert started == ["a"]
    assert jobs[0].update.status is JobStatus.DONE


def test_numbers_given_as_text_are_read_as_numbers():
    """Meltano passes settings from .env as strings; 0.5 must stay exact, 30 an integer."""
    from tap_ad_invoices.tap import TapAdInvoices

    tap = TapAdInvoices(
        config={
            "start_date": "2025-01-01",
            "amazon_ads": {
                "client_id": "c",
                "client_secret": "s" * 8,
                "refresh_token": "r" * 8,
                "poll_interval_seconds": "0.5",
                "lookback_days": "30",
            },
        },
        validate_config=True,
    )
    section = tap.config["amazon_ads"]
    assert section["poll_interval_seconds"] == Decimal("0.5")
    assert section["lookback_days"] == 30 and isinstance(section["lookback_days"], int)


@pytest.mark.parametrize(
    ("lookback", "window", "expected_windows"),
    [(90, 90, 1), (89, 90, 1), (91, 90, 1), (95, 90, 2), (100, 90, 2), (180, 90, 2), (30, 90, 1)],
)
def test_a_lookback_sliver_costs_no_statement_of_its_own(lookback, window, expected_windows):
    from tap_ad_invoices.amazon_ads.streams import skip_lookback_sliver

    bookmark, today = D(2026, 11, 29), D(2026, 11, 30)
    start = bookmark - dt.timedelta(days=lookback)
    trimmed = skip_lookback_sliver(start, today, bookmark, window)
    assert start <= trimmed <= bookmark + dt.timedelta(days=1)  # never skips an unsynced day
    assert trimmed - start <= dt.timedelta(days=max(1, window // 30))
    assert len(plan_windows(trimmed, today, window)) == expected_windows


@given(
    keys=st.lists(
        st.sampled_from(["IN-1", "IN-2", "IN-3", "CN-1", "", "é"]) | st.text(), max_size=60
    )
)
@settings(max_examples=200, deadline=None)
def test_occurrences_count_exactly_in_memory_and_after_spilling_to_disk(keys):
    from collections import Counter

    from tap_ad_invoices.keycount import OccurrenceCounter

    expected: Counter[str] = Counter()
    with OccurrenceCounter(in_memory_limit=3) as counter:
        for key in keys:
            expected[key] += 1
            assert counter.add(key) == expected[key]
        assert counter.on_disk == (len(expected) > 3)


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"errors": [{"code": "InvalidInput", "message": "bad"}]}, ("InvalidInput", "bad")),
        (
            {"errors": [{"errorCode": "UNAUTHORIZED", "errorId": "e-1", "errorMessage": "no"}]},
            ("UNAUTHORIZED", "no (errorId e-1)"),
        ),
        ({"code": "400", "details": "startDate is invalid"}, ("400", "startDate is invalid")),
    ],
)
def test_error_shapes_of_every_api_are_read(body: dict, expected: tuple) -> None:
    import json

    import requests

    from tap_ad_invoices.http import describe_error

    response = requests.Response()
    response.status_code = 400
    response._content = json.dumps(body).encode()
    assert describe_error(response) == expected
