"""Exact amounts. Never floats: a cent lost in conversion is a reconciliation ticket."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MICROS = Decimal(1_000_000)

# Locales whose statements write 1.234,56 rather than 1,234.56.
COMMA_DECIMAL_LOCALES = frozenset(
    {
        "de_DE",
        "es_ES",
        "fr_FR",
        "it_IT",
        "nl_NL",
        "pl_PL",
        "pt_BR",
        "sv_SE",
        "tr_TR",
        "es_CO",
        "vi_VN",
        "fr_CA",
    }
)

_NOISE = re.compile(r"[\s\u00a0\u202f'A-Za-z$€£¥₹]")


def parse_amount(text: str | None, *, decimal_comma: bool = False) -> Decimal | None:
    """Parse an amount as written in a report: "1,234.56", "-45.00", "(45.00)", "1.234,56".

    Returns None for empty cells; raises ValueError for text that is not an amount.
    """
    if text is None:
        return None
    raw = text.strip()
    if not raw:
        return None
    negative = raw.startswith("(") and raw.endswith(")")
    if negative:
        raw = raw[1:-1]
    raw = _NOISE.sub("", raw)
    if raw.endswith("-"):  # trailing minus, seen in some ledgers
        negative, raw = True, raw[:-1]
    # Thousands separators go; the decimal separator becomes "."
    raw = raw.replace(".", "").replace(",", ".") if decimal_comma else raw.replace(",", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not an amount: {text!r}")
    return -value if negative else value


def from_micros(micros: int | None) -> Decimal | None:
    """Google's int64 micros as an exact decimal (1_234_560_000 -> 1234.56)."""
    if micros is None:
        return None
    return Decimal(int(micros)) / MICROS
