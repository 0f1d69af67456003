"""Exact amounts, or a refusal. Never floats, never a guessed number.

Two grammars:

- `parse_plain_decimal` for amounts an API already wrote for machines (Amazon
  Business `Money.amount` strings, JSON numbers read as Decimal): `-12.34`, `7`.
- `AmountGrammar` for amounts written for people, in a report's locale: the
  locale's own decimal and grouping symbols from CLDR (Babel), grouping in the
  locale's sizes (3 everywhere, 3 then 2 in India), one sign (leading or
  trailing minus, or parentheses), and at most one currency marker (ISO code or
  symbol) that must match the row's currency.

Anything else — exponents, hex, letters, a misplaced separator, two decimal
marks, two signs — raises `AmountError`, and the caller fails the item that
holds it. A wrong number loaded silently is worse than a failed run.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale, UnknownLocaleError
from babel import numbers as cldr

MICROS = Decimal(1_000_000)

# The locales of the Amazon Ads billing API (api-facts.md, "locale"): the ones a
# statement can be requested in, so the ones whose number format we must read.
SUPPORTED_LOCALES: tuple[str, ...] = (
    "ar_AE", "de_DE", "en_AU", "en_CA", "en_GB", "en_IN", "en_SG", "en_US", "es_CO",
    "es_ES", "es_MX", "es_US", "fr_CA", "fr_FR", "hi_IN", "it_IT", "ja_JP", "ko_KR",
    "nl_NL", "pl_PL", "pt_BR", "sv_SE", "ta_IN", "th_TH", "tr_TR", "vi_VN", "zh_CN",
    "zh_TW",
)  # fmt: skip

# Spaces a person (or CLDR) puts between digit groups or around a currency.
_SPACES = " \u00a0\u202f\u2009"
# Direction marks CLDR puts around signs and symbols in right-to-left locales.
_INVISIBLE = dict.fromkeys(map(ord, "\u200e\u200f\u061c\u200b\ufeff"))
_ASCII_MINUS = "-"
_PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


class AmountError(ValueError):
    """Text that is not an amount we can read exactly. The message says why."""


def parse_plain_decimal(value: Any) -> Decimal | None:
    """An amount an API wrote for machines: "-2.99", "7", 7, Decimal("7.10").

    Floats are refused: by the time an amount is a float its cents may be gone
    (JSON bodies must be read with `parse_float=Decimal`).
    """
    if value is None:
        return None
    if isinstance(value, (bool, float)):
        raise AmountError(f"not an exact amount: {value!r} (a {type(value).__name__})")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise AmountError(f"not an amount: {value!r}")
        return value
    text = str(value).strip()
    if not text:
        return None
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise AmountError(f"not a plain decimal amount: {text!r}")
    return Decimal(text)


@dataclass(frozen=True)
class AmountGrammar:
    """How one locale writes amounts for people; `parse` reads exactly that."""

    locale: str
    decimal: str
    groups: frozenset[str]
    minus_signs: frozenset[str]
    plus_signs: frozenset[str]
    primary_group: int
    secondary_group: int
    # A subset of the grammar, checked first because nearly every cell has this form:
    # an optional ASCII minus, digits grouped in threes (or not at all), a fraction.
    common_form: re.Pattern[str]

    @classmethod
    def for_locale(cls, locale: str) -> AmountGrammar:
        return _grammar(locale)

    def parse(self, text: str | None, currency: str | None = None) -> Decimal | None:
        """The exact value of `text`; None for an empty cell; AmountError otherwise."""
        if text is None:
            return None
        common = self.common_form.fullmatch(text)
        if common is not None:  # the usual "-1,234.56": no symbols to peel
            integer, fraction = common["integer"], common["fraction"]
            for group in self.groups:
                integer = integer.replace(group, "")
            value = Decimal(f"{integer}.{fraction}" if fraction else integer)
            return -value if common["minus"] else value
        raw = text.translate(_INVISIBLE).strip(_SPACES)
        if not raw:
            return None
        body, negative = self._strip_sign_and_currency(raw, text, currency)
        integer, fraction = self._split_number(body, text)
        try:
            value = Decimal(f"{integer or '0'}.{fraction}" if fraction else integer)
        except InvalidOperation:  # unreachable after the checks above; never guess
            raise AmountError(f"not an amount: {text!r}") from None
        return -value if negative else value

    # -- the parts ----------------------------------------------------------------
    def _strip_sign_and_currency(
        self, raw: str, text: str, currency: str | None
    ) -> tuple[str, bool]:
        signs: list[str] = []
        markers: list[str] = []
        if raw.startswith("(") and raw.endswith(")"):
            signs.append("()")
            raw = raw[1:-1].strip(_SPACES)
        symbols = _currency_markers(currency, self.locale)
        sign_marks = sorted(self.minus_signs | self.plus_signs, key=len, reverse=True)
        # Peel signs and currency markers off both ends: "-$45.00", "€ -1.234,56",
        # "45,00 €", "45.00-" are all written somewhere.
        for at_start in (True, False):
            while True:
                token = _take(raw, sign_marks, at_start) or _take(raw, symbols, at_start)
                if token is None:
                    token = _foreign_currency(raw, at_start)
                    if token is not None:
                        raise AmountError(
                            f"{text!r}: currency {token!r} does not match the row's currency "
                            f"{currency or '(none)'}"
                        )
                    break
                (signs if token in sign_marks else markers).append(token)
                raw = (raw[len(token) :] if at_start else raw[: -len(token)]).strip(_SPACES)
        if len(signs) > 1:
            raise AmountError(f"{text!r}: more than one sign")
        if len(markers) > 1:
            raise AmountError(f"{text!r}: more than one currency marker")
        negative = bool(signs) and signs[0] not in self.plus_signs
        return raw, negative

    def _split_number(self, body: str, text: str) -> tuple[str, str]:
        if not body:
            raise AmountError(f"{text!r}: no digits")
        integer, decimal_mark, fraction = body.partition(self.decimal)
        if not _all_digits(fraction):
            raise AmountError(f"{text!r}: not an amount in {self.locale}")
        if decimal_mark and not fraction:
            raise AmountError(f"{text!r}: no digits after the decimal mark")
        groups = _split_groups(integer, self.groups)
        if not all(_all_digits(g) and g for g in groups) and not (integer == "" and fraction):
            raise AmountError(f"{text!r}: not an amount in {self.locale}")
        if len(groups) > 1 and not self._well_grouped(groups):
            raise AmountError(f"{text!r}: digit grouping is not {self.locale}'s")
        return "".join(groups), fraction

    def _well_grouped(self, groups: list[str]) -> bool:
        """1,234,567 (3s) everywhere; 12,34,567 (3 then 2s) where the locale says so."""
        if not 1 <= len(groups[0]) <= max(self.primary_group, self.secondary_group):
            return False
        *middle, last = groups[1:]
        if len(last) != self.primary_group:
            return False
        sizes = {len(g) for g in middle}
        first_ok = len(groups[0]) <= (self.secondary_group if middle else self.primary_group)
        uniform = sizes <= {self.primary_group} and len(groups[0]) <= self.primary_group
        locale_way = sizes <= {self.secondary_group} and first_ok
        return uniform or locale_way


@functools.lru_cache(maxsize=64)
def _grammar(locale: str) -> AmountGrammar:
    try:
        parsed = Locale.parse(locale)
    except (UnknownLocaleError, ValueError):
        raise AmountError(f"unknown locale {locale!r}") from None
    group = cldr.get_group_symbol(parsed, numbering_system="latn").translate(_INVISIBLE)
    groups = frozenset(_SPACES) if group in _SPACES else frozenset({group})
    minus = cldr.get_minus_sign_symbol(parsed, numbering_system="latn").translate(_INVISIBLE)
    plus = cldr.get_plus_sign_symbol(parsed, numbering_system="latn").translate(_INVISIBLE)
    pattern = parsed.decimal_formats[None]
    primary, secondary = pattern.grouping
    decimal = cldr.get_decimal_symbol(parsed, numbering_system="latn")
    group_class = "".join(re.escape(g) for g in sorted(groups))
    common_form = re.compile(
        rf"(?P<minus>-)?(?P<integer>[0-9]+|[0-9]{{1,3}}(?:[{group_class}][0-9]{{3}})+)"
        rf"(?:{re.escape(decimal)}(?P<fraction>[0-9]+))?"
    )
    return AmountGrammar(
        locale=locale,
        decimal=decimal,
        common_form=common_form,
        groups=groups,
        minus_signs=frozenset({_ASCII_MINUS, minus, "\u2212"}),
        plus_signs=frozenset({"+", plus}),
        primary_group=primary,
        secondary_group=secondary,
    )


@functools.lru_cache(maxsize=256)
def _currency_markers(currency: str | None, locale: str) -> tuple[str, ...]:
    """How the row's currency may be written next to an amount, longest first."""
    if not currency:
        return ()
    code = currency.strip().upper()
    markers = {code}
    for where in (locale, "en_US"):
        try:
            markers.add(cldr.get_currency_symbol(code, where).translate(_INVISIBLE).strip())
        except (UnknownLocaleError, ValueError):
            continue
    return tuple(sorted((m for m in markers if m), key=len, reverse=True))


_ANY_CURRENCY = re.compile(r"[A-Z]{3}|[^\w\s().,'\u2019+-]+")


def _foreign_currency(raw: str, at_start: bool) -> str | None:
    """A currency-looking token at one end that is not the row's currency."""
    match = re.match(
        rf"(?:{_ANY_CURRENCY.pattern})" if at_start else rf".*?((?:{_ANY_CURRENCY.pattern}))$",
        raw,
    )
    if not match:
        return None
    token = match.group(0) if at_start else match.group(1)
    return token if token and not token.isdigit() else None


def _take(raw: str, tokens: Iterable[str], at_start: bool) -> str | None:
    for token in tokens:
        if token and (raw.startswith(token) if at_start else raw.endswith(token)):
            return token
    return None


def _split_groups(integer: str, separators: frozenset[str]) -> list[str]:
    if not integer:
        return []
    pattern = "|".join(re.escape(s) for s in sorted(separators, key=len, reverse=True))
    return re.split(pattern, integer)


def _all_digits(text: str) -> bool:
    return all("0" <= ch <= "9" for ch in text)


def from_micros(micros: int | None) -> Decimal | None:
    """Google's int64 micros as an exact decimal (1_234_560_000 -> 1234.56)."""
    if micros is None:
        return None
    return Decimal(int(micros)) / MICROS
