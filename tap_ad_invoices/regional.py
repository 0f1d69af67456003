"""Sources with one host per region in one config, written once.

Amazon Ads (`amazon_ads.regions`) and Amazon Business (`amazon_business.stores`)
let one config hold several regional hosts, each with its own refresh token. A
host is one `Part` (an Amazon Ads `Region`, an Amazon Business `Store`): in the
several-host form each is one state partition (`{"region": "EU"}`) of the
source's streams, and a refused token or an unreachable host fails that part
alone, once, while the others sync. The single-host form has no partitions, so
its state stays where it always was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from singer_sdk import Stream

from tap_ad_invoices.errors import ConfigError, describe, fails_source
from tap_ad_invoices.settings import require

if TYPE_CHECKING:
    from tap_ad_invoices.tap import TapAdInvoices


class Part(Protocol):
    down: bool  # its credentials or host failed in this run: the source's streams skip it

    @property
    def region(self) -> str: ...

    @property
    def one_of_several(self) -> bool: ...

    @property
    def noun(self) -> str: ...  # "region", "store": how the config names a part


PartT = TypeVar("PartT", bound=Part)


def part_label(part: Part) -> str:
    """Prefix of failure items, naming the part when there are several."""
    return f"{part.noun} {part.region}: " if part.one_of_several else ""


class PerRegionStream(Stream, Generic[PartT]):
    """A stream of a source with regional hosts: its records, one part at a time."""

    source_key: str  # the source's config section, named in a part's failure line

    def __init__(self, tap: TapAdInvoices, parts: list[PartT]) -> None:
        self.parts = parts
        self._failures = tap.failures
        super().__init__(tap)

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        if not self.parts[0].one_of_several:
            return None
        return [{"region": part.region} for part in self.parts]

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        part = self.part(context)
        if not part.one_of_several:
            yield from self.part_records(part, context)
            return
        if part.down:
            self.logger.warning(
                "%s skipped for %s %s: it failed earlier in this run (see above)",
                self.name,
                part.noun,
                part.region,
            )
            return
        try:
            yield from self.part_records(part, context)
        except Exception as exc:
            if not fails_source(exc):
                raise
            # A refused token or an unreachable host fails this part, not the others.
            part.down = True
            self._failures.record(
                self.source_key, f"{part_label(part)}every item", describe(exc), self.logger
            )

    def part_records(
        self, part: PartT, context: Mapping[str, Any] | None
    ) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def part(self, context: Mapping[str, Any] | None) -> PartT:
        if context is None:
            return self.parts[0]
        return next(p for p in self.parts if p.region == context["region"])


def check_parts(
    section: Mapping[str, Any],
    prefix: str,
    key: str,
    *,
    noun: str,
    shape: str,
    per_part: Iterable[str],
    check: Callable[[Mapping[str, Any], str], None],
) -> None:
    """The several-host form of a section (`regions`, `stores`): a list of objects, each with
    its own `region` (once), checked by `check`; the keys `per_part` live only inside them."""
    entries = section[key]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{prefix}.{key}", f"expected a list of {noun}s {shape}")
    for moved in per_part:
        if section.get(moved) is not None:
            raise ConfigError(f"{prefix}.{moved}", f"set it in each of {prefix}.{key} instead")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = f"{prefix}.{key}[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(name, f"expected an object {shape}")
        require(entry, name, "region")
        if entry["region"] in seen:
            # Their state and failures are kept per region.
            raise ConfigError(f"{name}.region", f"{entry['region']} is already a {noun} above")
        seen.add(entry["region"])
        check(entry, name)
