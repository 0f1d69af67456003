from __future__ import annotations

from collections.abc import Iterator

import pytest

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.cli import tap_config


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator per test, on a free loopback port."""
    with Emulator(port=0) as running:
        yield running


@pytest.fixture
def emulator_config(emulator: Emulator) -> dict:
    """A complete tap config pointing at the emulator (every source it serves)."""
    return tap_config(emulator)
