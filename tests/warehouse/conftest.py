"""Fixtures of the warehouse suite: one PostgreSQL cluster and one `meltano install` per
session; per test an emulator, and pipelines (database + Meltano system database +
CSV directory) that share nothing with each other."""

from __future__ import annotations

import itertools
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tap_ad_invoices.emulator import Emulator
from tap_ad_invoices.emulator.cli import tap_config
from tap_ad_invoices.tap import TapAdInvoices
from tests.warehouse.harness import (
    DB_PASSWORD,
    DB_USER,
    EXTRACTOR,
    REPO_ROOT,
    SCHEMA,
    EmulatorControl,
    Meltano,
    MeltanoRun,
    PostgresCluster,
    base_env,
    meltano_bin,
    setting_env,
    start_cluster,
    tail,
)

POSTGRES = "target-postgres"
CSV = "target-csv"
_database_names = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway cluster (never the system one), removed with its files at the end."""
    # Not under pytest's basetemp: its parents are private to us, and the server runs
    # as another user.
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="tap-ad-invoices-pg-")))
    yield cluster
    cluster.stop()


@dataclass(frozen=True)
class MeltanoSetup:
    sys_dir: Path  # MELTANO_SYS_DIR_ROOT: this session's plugin venvs
    catalog: Path  # the tap's catalog for the emulator's full config, discovered once


def _meltano(args: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(
        [str(meltano_bin()), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{tail(done.stdout + done.stderr)}")
    return done.stdout


@pytest.fixture(scope="session")
def meltano_setup(tmp_path_factory: pytest.TempPathFactory) -> MeltanoSetup:
    """`meltano install` once, into plugin venvs of this session's own, and the catalog.

    An editable tap is discovered by Meltano on every run (about 3.5 s here). The full
    load runs that discovery; the other runs reuse its result through the `catalog`
    extra, which Meltano treats as a discovered catalog (selection rules and all).
    """
    sys_dir = tmp_path_factory.mktemp("meltano-sys")
    env = base_env(sys_dir)
    env["MELTANO_DATABASE_URI"] = f"sqlite:///{sys_dir}/setup.db"
    _meltano(["install"], env, "meltano install")
    with Emulator(port=0) as emulator:  # the catalog depends on the sources, not the port
        env.update(setting_env("TAP_AD_INVOICES_", tap_config(emulator)))
        catalog = _meltano(["invoke", "--dump=catalog", EXTRACTOR], env, "catalog discovery")
    path = sys_dir / "catalog.json"
    path.write_text(catalog)
    return MeltanoSetup(sys_dir, path)


@dataclass
class Pipeline:
    """One warehouse (database + CSV directory) and one Meltano system database (state)."""

    name: str
    meltano: Meltano
    cluster: PostgresCluster
    database: str
    csv_dir: Path

    def run(self, loader: str = POSTGRES, **kwargs: Any) -> MeltanoRun:
        return self.meltano.run(loader, **kwargs)

    def query(self, sql: str) -> list[dict[str, Any]]:
        return self.cluster.query(sql, database=self.database)

    def tables(self) -> set[str]:
        return self.cluster.tables(database=self.database)

    def columns(self, table: str) -> dict[str, str]:
        return self.cluster.columns(table, database=self.database)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.query(f'SELECT * FROM {SCHEMA}."{table}"')

    def state(self, loader: str = POSTGRES) -> dict[str, Any]:
        return self.meltano.state(loader)


@dataclass
class Warehouse:
    """A test's emulator and the pipelines pointed at it."""

    emulator: Emulator
    control: EmulatorControl
    tap_config: dict[str, Any]
    streams: dict[str, tuple[str, ...]]  # stream -> primary key, as the tap declares them
    cluster: PostgresCluster
    meltano: MeltanoSetup
    workdir: Path
    pipelines: list[Pipeline] = field(default_factory=list)

    def pipeline(self, name: str = "main", *, discover: bool = False, **settings: str) -> Pipeline:
        """A new pipeline; `settings` are extra Meltano variables (TARGET_CSV_..., etc.).

        `discover`: let Meltano run the tap's discovery, instead of the session's catalog.
        """
        workdir = self.workdir / name
        csv_dir = workdir / "csv"
        csv_dir.mkdir(parents=True)
        database = self.cluster.create_database(f"warehouse_{next(_database_names)}")
        env = base_env(self.meltano.sys_dir)
        env.update(setting_env("TAP_AD_INVOICES_", self.tap_config))
        env.update(
            MELTANO_DATABASE_URI=f"sqlite:///{workdir}/meltano.db",
            TARGET_POSTGRES_HOST=self.cluster.host,
            TARGET_POSTGRES_PORT=str(self.cluster.port),
            TARGET_POSTGRES_USER=DB_USER,
            TARGET_POSTGRES_PASSWORD=DB_PASSWORD,
            TARGET_POSTGRES_DATABASE=database,
            TARGET_CSV_OUTPUT_PATH=str(csv_dir),
            # Stored PDFs go to the test's directory, never to the project's output/; one
            # directory per emulator, so the pipelines' document URIs compare equal.
            TAP_AD_INVOICES_DOCUMENTS_DESTINATION=str(self.workdir / "documents"),
        )
        if not discover:
            env[f"{EXTRACTOR.upper().replace('-', '_')}__CATALOG"] = str(self.meltano.catalog)
        env.update(settings)
        pipeline = Pipeline(
            name, Meltano(meltano_bin(), env, workdir), self.cluster, database, csv_dir
        )
        self.pipelines.append(pipeline)
        return pipeline

    def truth(self, source: str) -> Any:
        return self.control.truth(source)


def configured_streams(config: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """The streams the tap offers for the emulator's complete config, with their keys."""
    tap = TapAdInvoices(config=config, parse_env_config=False, validate_config=True)
    return {name: tuple(stream.primary_keys or ()) for name, stream in tap.streams.items()}


@contextmanager
def open_warehouse(
    postgres: PostgresCluster, meltano: MeltanoSetup, workdir: Path
) -> Iterator[Warehouse]:
    # latency 0: the suite's time goes to Meltano, not to the emulator.
    with Emulator(port=0, knobs={"latency_seconds": 0.0}) as emulator:
        config = tap_config(emulator)
        yield Warehouse(
            emulator=emulator,
            control=EmulatorControl(emulator.base_url),
            tap_config=config,
            streams=configured_streams(config),
            cluster=postgres,
            meltano=meltano,
            workdir=workdir,
        )


@pytest.fixture
def warehouse(
    postgres: PostgresCluster, meltano_setup: MeltanoSetup, tmp_path: Path
) -> Iterator[Warehouse]:
    """A fresh emulator for one test; `warehouse.pipeline()` adds isolated pipelines."""
    with open_warehouse(postgres, meltano_setup, tmp_path) as opened:
        yield opened


@pytest.fixture(scope="session")
def loaded(
    postgres: PostgresCluster, meltano_setup: MeltanoSetup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Warehouse, Pipeline]]:
    """One full `meltano run tap-ad-invoices target-postgres`, for the tests that only read."""
    with open_warehouse(postgres, meltano_setup, tmp_path_factory.mktemp("loaded")) as opened:
        pipeline = opened.pipeline(discover=True)  # this run also proves Meltano's discovery
        opened.control.reset_counters()
        pipeline.run()
        yield opened, pipeline
