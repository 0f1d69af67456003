"""The failure boundary (errors.py) and the end of a run, without any API."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from singer_sdk import Tap

from tap_ad_invoices.errors import (
    ApiError,
    AuthorizationExpired,
    FailureLedger,
    SourceUnavailable,
    describe,
    item_errors,
)
from tap_ad_invoices.redaction import register_secret
from tap_ad_invoices.tap import TapAdInvoices

LOGGER = logging.getLogger("tests.failure_boundary")


def test_a_unit_records_any_exception_as_one_line(caplog: pytest.LogCaptureFixture) -> None:
    ledger = FailureLedger()
    with caplog.at_level(logging.DEBUG), ledger.unit("stream_a", "window 1", LOGGER) as unit:
        {}["feedDate"]  # the KeyError a transaction without feedDate raises
    assert unit.failed
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "FAILED stream_a [window 1]: KeyError: missing 'feedDate'"
    ]
    assert errors[0].exc_info is None  # no traceback at ERROR ...
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)  # ... at DEBUG
    assert [(f.stream, f.item) for f in ledger.failures] == [("stream_a", "window 1")]


def test_a_unit_that_succeeds_records_nothing() -> None:
    ledger = FailureLedger()
    with ledger.unit("stream_a", "window 1", LOGGER) as unit:
        pass
    assert not unit.failed and ledger.failures == []


def test_source_failures_pass_through_units_to_the_guard(caplog: pytest.LogCaptureFixture) -> None:
    ledger = FailureLedger()

    def records() -> Iterator[int]:
        yield 1
        with ledger.unit("ads", "account 1", LOGGER):
            raise AuthorizationExpired("refused: set amazon_ads.refresh_token")
        yield 2  # pragma: no cover

    assert list(ledger.guard("amazon_ads", "ads", records(), LOGGER)) == [1]
    assert ledger.source_failed("amazon_ads")
    [failure] = ledger.failures
    assert (failure.stream, failure.item) == ("amazon_ads", "every item")
    assert "AuthorizationExpired" in failure.reason and "amazon_ads.refresh_token" in failure.reason

    # The source's next stream is skipped: no second line, no second refused call.
    called = []
    assert list(ledger.guard("amazon_ads", "other", iter(called), LOGGER)) == []
    assert len(ledger.failures) == 1
    assert "skipped" in caplog.text


def test_anything_else_escaping_a_stream_fails_that_stream_only() -> None:
    ledger = FailureLedger()

    def records() -> Iterator[int]:
        yield 1
        raise ValueError("surprise")

    assert list(ledger.guard("google_ads", "google_ads_invoices", records(), LOGGER)) == [1]
    assert not ledger.source_failed("google_ads")
    assert ledger.failures[0].reason == "ValueError: surprise"


def test_item_errors_catch_for_callers_that_report_themselves() -> None:
    with item_errors(LOGGER, "createReport") as caught:
        raise ApiError("HTTP 400 bad request", status=400)
    assert caught.failed and isinstance(caught.error, ApiError)
    assert caught.reason == "ApiError: HTTP 400 bad request"
    with pytest.raises(SourceUnavailable), item_errors(LOGGER, "createReport"):
        raise SourceUnavailable("cannot reach api.example")


def test_failed_lines_are_one_line_and_redacted() -> None:
    register_secret("s3cr3t-value-for-boundary-test")
    reason = describe(RuntimeError("token s3cr3t-value-for-boundary-test\nrefused"))
    assert reason == "RuntimeError: token *** refused"


def test_the_summary_is_printed_even_when_the_run_stops(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tap = TapAdInvoices(
        config={
            "start_date": "2025-01-01",
            "google_ads": {
                "client_id": "x",
                "client_secret": "unused-secret",
                "refresh_token": "unused-token",
                "customer_ids": ["1111111111"],
            },
        },
        validate_config=False,
    )
    tap.failures.record("google_ads_invoices", "customer 1", "ApiError: HTTP 500", LOGGER)

    def crash(self: Tap) -> None:
        raise RuntimeError("an unexpected bug")

    monkeypatch.setattr(Tap, "sync_all", crash)
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as exited:
        tap.sync_all()
    assert exited.value.code == 1
    assert "The run stopped: RuntimeError: an unexpected bug" in caplog.text
    assert "1 item(s) failed" in caplog.text and "customer 1" in caplog.text
    assert "Traceback" not in caplog.text
