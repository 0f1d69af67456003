"""Which statement column feeds which typed field: recognised by meaning, not by name.

Amazon does not publish the global invoicing report's column names, so a header
is read as a set of words (case-folded, punctuation removed) and matched against
the rules below, in order; the first rule that matches decides the header's
field. `amazon_ads.column_map` (header -> field) is applied before any rule.

When two headers claim one field, the winner is decided by a fixed priority,
never by column order: the user's map, then the earlier rule in RULES, then the
header with fewer words (the more specific name), then the alphabetically first
header. The loser stays in `columns` and the choice is logged once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

TEXT_FIELDS = (
    "invoice_number",
    "invoice_status",
    "document_type",
    "country_code",
    "currency",
    "purchase_order",
    "advertiser_name",
    "payment_method",
)
DATE_FIELDS = ("invoice_date", "due_date", "service_start_date", "service_end_date")
AMOUNT_FIELDS = (
    "billable_amount",
    "tax_amount",
    "total_amount",
    "amount_paid",
    "remaining_amount",
)
TYPED_FIELDS = (*TEXT_FIELDS, *DATE_FIELDS, *AMOUNT_FIELDS)

AMOUNT_WORDS = frozenset({"amount", "amt", "sum", "value", "charge", "charges", "cost"})
TAX_WORDS = frozenset({"tax", "taxes", "vat", "gst", "hst", "pst", "qst", "iva", "igst"})
DATE_WORDS = frozenset({"date", "day", "dt", "on"})
# "Billing Period Start", "Service End Date", "From Date": a period's bound, not "Amount to Pay".
PERIOD_WORDS = frozenset({"period", "service", "billing", "date", "day"})
ID_WORDS = frozenset({"number", "no", "nr", "num", "id", "ref", "reference"})


@dataclass(frozen=True)
class Rule:
    """The header's words include one of each of `all_of`, and none of `none_of`."""

    field: str
    all_of: tuple[frozenset[str], ...]
    none_of: frozenset[str] = frozenset()
    exactly: bool = False  # the header is these words and nothing else

    def matches(self, words: frozenset[str]) -> bool:
        if words & self.none_of:
            return False
        if not all(words & group for group in self.all_of):
            return False
        return not self.exactly or words <= frozenset().union(*self.all_of)


def _w(*words: str) -> frozenset[str]:
    return frozenset(words)


# Order matters: dates before amounts ("Payment Due Date" is a date, not an amount),
# tax before total ("Total Tax" is tax), total before remaining ("Total Amount Due"
# is the invoice total; "Amount Due" alone is what is left to pay).
RULES: tuple[Rule, ...] = (
    # dates
    Rule("due_date", (_w("due"), DATE_WORDS)),
    Rule("service_start_date", (_w("start", "from", "begin", "beginning"), PERIOD_WORDS)),
    Rule("service_end_date", (_w("end", "to", "through", "thru", "until"), PERIOD_WORDS)),
    Rule("invoice_date", (_w("invoice", "issue", "issued", "billing", "document"), DATE_WORDS)),
    Rule("invoice_date", (_w("date"),), exactly=True),
    # money
    Rule(
        "tax_amount",
        (TAX_WORDS,),
        none_of=_w("rate", "percent", "code", "registration", "exempt", *ID_WORDS),
    ),
    Rule("total_amount", (_w("total"), AMOUNT_WORDS | _w("due", "invoice", "gross", "billed"))),
    Rule("total_amount", (_w("total"),), exactly=True),
    Rule("total_amount", (_w("gross", "invoice", "invoiced"), AMOUNT_WORDS)),
    Rule("remaining_amount", (_w("remaining", "outstanding", "balance", "unpaid", "open"),)),
    Rule("remaining_amount", (_w("due"), AMOUNT_WORDS)),
    Rule("amount_paid", (_w("paid"),), none_of=_w("un")),
    Rule("amount_paid", (_w("payment"), AMOUNT_WORDS)),
    Rule("billable_amount", (_w("billed", "billable", "net", "subtotal", "pretax"),)),
    Rule("billable_amount", (AMOUNT_WORDS,), exactly=True),
    # text
    Rule("invoice_number", (_w("invoice", "document", "bill"), ID_WORDS)),
    Rule("invoice_number", (_w("invoice"),), exactly=True),
    Rule("invoice_status", (_w("status"),)),
    Rule("document_type", (_w("type", "kind"),), none_of=_w("payment")),
    Rule("currency", (_w("currency", "ccy"),)),
    Rule("country_code", (_w("country", "marketplace"),)),
    Rule("purchase_order", (_w("purchase"), _w("order"))),
    Rule("purchase_order", (_w("po"),)),
    Rule("advertiser_name", (_w("advertiser"),)),
    Rule("advertiser_name", (_w("account"), _w("name"))),
    Rule("payment_method", (_w("payment"), _w("method", "type", "instrument"))),
)


def header_words(header: str) -> frozenset[str]:
    return frozenset(re.findall(r"[0-9a-z]+", header.casefold()))


def normalize_header(header: str) -> str:
    return " ".join(header.casefold().split())


@dataclass
class ColumnMapping:
    """The decision for one statement header."""

    header: list[str]
    positions: dict[str, int] = field(default_factory=dict)
    # field -> (winning header, losing headers): logged once per statement header
    conflicts: dict[str, tuple[str, list[str]]] = field(default_factory=dict)

    @property
    def unmapped_headers(self) -> list[str]:
        used = set(self.positions.values())
        return [h for i, h in enumerate(self.header) if i not in used and h]

    @property
    def empty_amount_fields(self) -> list[str]:
        return [f for f in AMOUNT_FIELDS if f not in self.positions]


def map_columns(header: list[str], column_map: Mapping[str, str] | None = None) -> ColumnMapping:
    """Decide, once per statement header, the column of each typed field."""
    overrides = {normalize_header(h): f for h, f in (column_map or {}).items()}
    claims: dict[str, list[tuple[tuple[int, int, str], int]]] = {}
    for index, name in enumerate(header):
        claim = _claim(name, overrides)
        if claim is not None:
            field_name, rank = claim
            priority = (rank, len(header_words(name)), normalize_header(name))
            claims.setdefault(field_name, []).append((priority, index))
    mapping = ColumnMapping(header=header)
    for field_name, candidates in claims.items():
        candidates.sort()
        mapping.positions[field_name] = candidates[0][1]
        if len(candidates) > 1:
            mapping.conflicts[field_name] = (
                header[candidates[0][1]],
                [header[i] for _, i in candidates[1:]],
            )
    return mapping


def _claim(name: str, overrides: Mapping[str, str]) -> tuple[str, int] | None:
    """(field, rank) for one header; rank -1 is the user's map, then the rule's index."""
    override = overrides.get(normalize_header(name))
    if override is not None:
        return override, -1
    words = header_words(name)
    if not words:
        return None
    for rank, rule in enumerate(RULES):
        if rule.matches(words):
            return rule.field, rank
    return None
