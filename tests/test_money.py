"""Amounts are exact or refused: the locale grammar, the plain-decimal grammar, and
property tests that random amounts, formatted by CLDR itself, read back exactly."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from babel.numbers import format_currency, format_decimal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_ad_invoices.money import (
    SUPPORTED_LOCALES,
    AmountError,
    AmountGrammar,
    parse_plain_decimal,
)

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "INR", "AUD", "BRL", "SEK")
PROPERTY_SETTINGS = settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def parse(text: str, locale: str = "en_US", currency: str | None = None) -> Decimal | None:
    return AmountGrammar.for_locale(locale).parse(text, currency)


# -- what the issue observed, each loaded silently as another number before ------------
@pytest.mark.parametrize(
    ("locale", "text"),
    [
        ("en_US", "1.234,56"),
        ("en_US", "12,34"),
        ("en_US", "1E5"),
        ("en_US", "1.5e3"),
        ("en_US", "0x1F"),
        ("en_US", "(-45.00)"),
        ("de_DE", "1,234.56"),
        ("en_US", "1.2.3"),
        ("en_US", "12a34"),
        ("en_US", "--5"),
        ("en_US", "-5-"),
        ("en_US", "1,23,456.00"),
        ("en_IN", "123,45,678"),
        ("en_US", "1,2345.00"),
        ("en_US", "Infinity"),
        ("en_US", "NaN"),
        ("en_US", "1."),
        ("en_US", "-"),
        ("en_US", "45%"),
    ],
)
def test_ambiguous_or_malformed_amounts_are_refused(locale, text):
    with pytest.raises(AmountError):
        parse(text, locale)


@pytest.mark.parametrize(
    ("locale", "text", "currency", "expected"),
    [
        ("en_US", "1,234.56", None, "1234.56"),
        ("en_US", "(45.00)", None, "-45.00"),
        ("en_US", "45.00-", None, "-45.00"),
        ("en_US", "$1,234.56", "USD", "1234.56"),
        ("en_US", "-$1,234.56", "USD", "-1234.56"),
        ("en_US", "12.00 USD", "USD", "12.00"),
        ("en_US", "0.10", None, "0.10"),
        ("en_US", "123456789012345678.01", None, "123456789012345678.01"),
        ("de_DE", "1.234,56", None, "1234.56"),
        ("de_DE", "12,34", "EUR", "12.34"),
        ("de_DE", "12,34 €", "EUR", "12.34"),
        ("nl_NL", "€ -1.234,56", "EUR", "-1234.56"),
        ("fr_FR", "12\u202f345,50 €", "EUR", "12345.50"),
        ("fr_FR", "12 345,50", None, "12345.50"),
        ("sv_SE", "\u22121\u00a0234,56", None, "-1234.56"),
        ("en_IN", "12,34,567.89", "INR", "1234567.89"),
        ("en_IN", "1,234,567.89", None, "1234567.89"),
        ("ja_JP", "¥1,234", "JPY", "1234"),
    ],
)
def test_amounts_read_exactly_with_their_scale(locale, text, currency, expected):
    value = parse(text, locale, currency)
    assert isinstance(value, Decimal)
    assert str(value) == expected  # scale kept: 0.10 stays 0.10


def test_a_currency_that_is_not_the_rows_is_refused():
    with pytest.raises(AmountError, match="does not match"):
        parse("$1,234.56", "en_US", "EUR")
    with pytest.raises(AmountError, match="does not match"):
        parse("USD 5.00", "en_US", None)


def test_empty_cells_are_null_not_zero():
    assert parse("") is None
    assert parse("  \u00a0") is None
    assert parse_plain_decimal("") is None
    assert parse_plain_decimal(None) is None


@pytest.mark.parametrize("value", ["12,34", "1E5", "abc", "0x1F", "1,234.56", "NaN", " ", "--1"])
def test_plain_decimals_refuse_anything_but_digits_and_a_point(value):
    if not value.strip():
        assert parse_plain_decimal(value) is None
        return
    with pytest.raises(AmountError):
        parse_plain_decimal(value)


def test_plain_decimals_refuse_floats_and_keep_ints_and_decimals():
    with pytest.raises(AmountError, match="float"):
        parse_plain_decimal(0.1)
    with pytest.raises(AmountError):
        parse_plain_decimal(True)
    assert parse_plain_decimal(7) == Decimal(7)
    assert str(parse_plain_decimal("-2.99")) == "-2.99"
    assert str(parse_plain_decimal(Decimal("1.10"))) == "1.10"


# -- properties ------------------------------------------------------------------------
AMOUNTS = st.decimals(
    min_value=Decimal("-1e13"), max_value=Decimal("1e13"), places=2, allow_nan=False
) | st.decimals(min_value=Decimal(-(10**9)), max_value=Decimal(10**9), places=0)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
@PROPERTY_SETTINGS
@given(value=AMOUNTS, currency=st.sampled_from(CURRENCIES), with_symbol=st.booleans())
def test_cldr_formatted_amounts_read_back_exactly(locale, value, currency, with_symbol):
    if with_symbol:
        text = format_currency(
            value,
            currency,
            locale=locale,
            currency_digits=False,
            decimal_quantization=False,
            numbering_system="latn",
        )
    else:
        text = format_decimal(
            value, locale=locale, decimal_quantization=False, numbering_system="latn"
        )
    assert parse(text, locale, currency) == value


# Strings a report could plausibly hold, right or wrong.
NOISY_TEXT = st.text(alphabet="0123456789.,-+() $€eEx'\u00a0\u202f\u2212", max_size=16)


def _careful_reading(text: str, grammar: AmountGrammar) -> tuple[str, int, bool]:
    """What any reader agrees on: the digits in order, how many follow the decimal
    mark, and whether a minus sign or parentheses are there."""
    digits = re.sub(r"[^0-9]", "", text)
    _, mark, fraction = text.partition(grammar.decimal)
    places = len(re.sub(r"[^0-9]", "", fraction)) if mark else 0
    negative = any(sign in text for sign in grammar.minus_signs) or "(" in text
    return digits, places, negative


@pytest.mark.parametrize("locale", ["en_US", "de_DE", "fr_FR", "en_IN", "sv_SE", "ja_JP"])
@PROPERTY_SETTINGS
@given(text=NOISY_TEXT)
def test_random_text_is_read_as_a_person_would_or_refused(locale, text):
    grammar = AmountGrammar.for_locale(locale)
    try:
        value = grammar.parse(text, "EUR")
    except AmountError:
        return
    if value is None:
        assert not re.sub(r"[\s\u00a0\u202f]", "", text)
        return
    digits, places, negative = _careful_reading(text, grammar)
    sign, value_digits, exponent = value.as_tuple()
    assert "".join(map(str, value_digits)).lstrip("0") == digits.lstrip("0")
    assert -int(exponent) == places
    assert bool(sign) == (negative and value != 0) or value == 0
