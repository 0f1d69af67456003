"""A throwaway PostgreSQL cluster, Meltano invocations and the emulator's control API.

Everything here drives real processes: `initdb`/`pg_ctl` from the Debian
packages, `psql` for every query (so the test environment needs no database
driver), and the `meltano` executable of the project's Meltano venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTRACTOR = "tap-ad-invoices"
ENVIRONMENT = "emulator"  # meltano.yml's default environment
SCHEMA = "ad_invoices"  # target-postgres default_target_schema in meltano.yml
DB_USER = "meltano"
DB_PASSWORD = "warehouse-test-password"
# The variables a developer's shell may carry that would leak into a run.
LEAKY_PREFIXES = ("TAP_AD_INVOICES_", "TARGET_POSTGRES_", "TARGET_CSV_", "MELTANO_", "PG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll `condition` until it returns something truthy; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- PostgreSQL -------------------------------------------------------------------------


def find_postgres_bindir() -> Path | None:
    """The server binaries: $PG_BINDIR, else the newest Debian cluster version, else PATH."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
        )
        candidates += [p / "bin" for p in reversed(versions)]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "psql")):
            return bindir
    return None


def install_postgres() -> Path:
    """apt-get install the Debian packages (CI machines start without them)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if os.geteuid() != 0:
        raise RuntimeError(
            "PostgreSQL is missing and installing it needs root: apt-get install "
            "-y postgresql (or set PG_BINDIR to a directory holding initdb)"
        )
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        env=env,
        check=True,
        capture_output=True,
    )
    bindir = find_postgres_bindir()
    if bindir is None:
        raise RuntimeError("apt-get installed postgresql but initdb/pg_ctl/psql are not found")
    return bindir


class QueryError(RuntimeError):
    pass


@dataclass
class PostgresCluster:
    """A cluster of our own on 127.0.0.1:<free port>, in a temporary directory."""

    bindir: Path
    directory: Path
    port: int
    admin: str = "warehouse_admin"
    admin_password: str = "warehouse-admin-password"
    host: str = "127.0.0.1"
    run_as: str | None = None  # PostgreSQL refuses to run as root
    databases: list[str] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    def _server_command(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def start(self) -> PostgresCluster:
        password_file = self.directory / "admin-password"
        password_file.write_text(self.admin_password + "\n")
        if self.run_as:
            shutil.chown(self.directory, self.run_as)
            shutil.chown(password_file, self.run_as)
        subprocess.run(
            self._server_command(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                self.admin,
                f"--pwfile={password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )
        # Throwaway data: durability settings off, loopback only, socket in our directory.
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses={self.host} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            self._server_command(
                "pg_ctl",
                "-D",
                str(self.datadir),
                "-l",
                str(self.directory / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ),
            check=True,
            capture_output=True,
        )
        self.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'", database="postgres")
        return self

    def stop(self) -> None:
        subprocess.run(
            self._server_command("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop"),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.directory, ignore_errors=True)

    def create_database(self, name: str) -> str:
        self.execute(f"CREATE DATABASE {name} OWNER {DB_USER}", database="postgres")
        self.databases.append(name)
        return name

    def _psql(self, sql: str, *, database: str, user: str, password: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                database,
            ],
            input=sql,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise QueryError(f"psql failed ({done.returncode}): {done.stderr.strip()}\n{sql}")
        return done.stdout

    def execute(self, sql: str, *, database: str) -> str:
        return self._psql(sql, database=database, user=self.admin, password=self.admin_password)

    def query(self, sql: str, *, database: str) -> list[dict[str, Any]]:
        """Rows as dicts, connected as the loader's role; NUMERIC arrives as Decimal, exactly."""
        body = sql.rstrip().rstrip(";")
        wrapped = f"SELECT coalesce(json_agg(q), '[]'::json) FROM (\n{body}\n) q;"
        out = self._psql(wrapped, database=database, user=DB_USER, password=DB_PASSWORD)
        return json.loads(out, parse_float=Decimal)

    def columns(self, table: str, *, database: str) -> dict[str, str]:
        """Column -> SQL type; an array names its element type ("jsonb[]")."""
        rows = self.query(
            "SELECT column_name, data_type, udt_name FROM information_schema.columns "
            f"WHERE table_schema = '{SCHEMA}' AND table_name = '{table}'",
            database=database,
        )
        return {
            row["column_name"]: (
                f"{row['udt_name'].lstrip('_')}[]"
                if row["data_type"] == "ARRAY"
                else row["data_type"]
            )
            for row in rows
        }

    def tables(self, *, database: str) -> set[str]:
        rows = self.query(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{SCHEMA}'",
            database=database,
        )
        return {row["table_name"] for row in rows}


def start_cluster(base: Path) -> PostgresCluster:
    bindir = find_postgres_bindir() or install_postgres()
    run_as = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        run_as = "postgres"
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise RuntimeError(
                "running as root needs the 'postgres' user (the Debian postgresql package "
                "creates it) to start a PostgreSQL cluster"
            ) from None
    cluster = PostgresCluster(bindir=bindir, directory=base, port=free_port(), run_as=run_as)
    try:
        return cluster.start()
    except subprocess.CalledProcessError as exc:
        log = base / "server.log"
        detail = log.read_text() if log.exists() else ""
        cluster.stop()
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr!r}\n{detail}") from exc


# -- Meltano ----------------------------------------------------------------------------


def meltano_bin() -> Path:
    path = Path(os.environ.get("MELTANO_BIN") or REPO_ROOT / ".venv-meltano" / "bin" / "meltano")
    if not path.exists():
        raise RuntimeError(
            f"no meltano at {path}: create the Meltano venv (see the Makefile) or set MELTANO_BIN"
        )
    return path


def base_env(sys_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_PREFIXES)}
    env.update(
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        # Plugin venvs and run files of our own: another checkout's `meltano install` or
        # run cannot replace a venv or delete a config file under a running test.
        MELTANO_SYS_DIR_ROOT=str(sys_dir),
        MELTANO_ENVIRONMENT=ENVIRONMENT,
    )
    return env


def setting_env(prefix: str, config: Mapping[str, Any]) -> dict[str, str]:
    """Meltano's variable for each (nested, dotted) setting: amazon_ads.api_url ->
    TAP_AD_INVOICES_AMAZON_ADS_API_URL. Lists and objects as JSON, numbers as text
    (meltano.yml declares fractional settings `kind: string`: Meltano 4.4.1 cannot
    pass a `decimal` from a variable, and the tap reads numbers given as text)."""
    env: dict[str, str] = {}
    for dotted, value in _flatten(config):
        name = prefix + re.sub(r"[^A-Z0-9]+", "_", dotted.upper())
        if isinstance(value, bool):
            env[name] = "true" if value else "false"
        elif isinstance(value, (list, dict)):
            env[name] = json.dumps(value)
        else:
            env[name] = str(value)
    return env


def _flatten(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@dataclass
class MeltanoRun:
    returncode: int
    log: str


@dataclass
class Meltano:
    """`meltano` in the repository's project, with one test's settings and system database."""

    executable: Path
    env: dict[str, str]
    workdir: Path
    runs: int = 0

    def _log_path(self, label: str) -> Path:
        self.runs += 1
        return self.workdir / f"meltano-{self.runs:02d}-{label}.log"

    def start(self, *args: str, label: str = "run") -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self._log_path(label)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(self.executable), *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return process, log_path

    def invoke(self, *args: str, timeout: float = 180, label: str = "run") -> MeltanoRun:
        process, log_path = self.start(*args, label=label)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)
            process.wait()
            raise
        return MeltanoRun(returncode, log_path.read_text(errors="replace"))

    def run(self, loader: str, *, timeout: float = 180, check: bool = True) -> MeltanoRun:
        result = self.invoke(
            "run", "--no-install", EXTRACTOR, loader, timeout=timeout, label=loader
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"meltano run {loader} failed ({result.returncode}):\n{tail(result.log)}"
            )
        return result

    def state(self, loader: str) -> dict[str, Any]:
        state_id = f"{ENVIRONMENT}:{EXTRACTOR}-to-{loader}"
        result = self.invoke("state", "get", state_id, label="state")
        if result.returncode != 0:
            raise AssertionError(f"meltano state get {state_id} failed:\n{tail(result.log)}")
        # The JSON document is the one line that parses; log lines surround it.
        for line in reversed(result.log.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no state printed for {state_id}:\n{tail(result.log)}")


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# -- processes --------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: parse after the last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def find_tap_process(meltano_pid: int) -> int | None:
    """The extractor Meltano started: a descendant whose argv runs the tap-ad-invoices script."""
    for pid in descendants(meltano_pid):
        if any(Path(arg).name == EXTRACTOR for arg in command_line(pid)[:2]):
            return pid
    return None


def kill_tree(pid: int) -> None:
    for child in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


# -- the emulator's control API ---------------------------------------------------------


@dataclass
class EmulatorControl:
    base_url: str

    def _url(self, path: str) -> str:
        return f"{self.base_url}/_emulator/{path}"

    def counters(self) -> dict[str, int]:
        return requests.get(self._url("counters"), timeout=10).json()

    def reset_counters(self) -> None:
        requests.post(self._url("reset_counters"), timeout=10).raise_for_status()

    def knobs(self, **knobs: Any) -> dict[str, Any]:
        response = requests.post(self._url("knobs"), json=knobs, timeout=10)
        response.raise_for_status()
        return response.json()

    def truth(self, source: str) -> Any:
        response = requests.get(self._url(f"truth/{source}"), timeout=30)
        response.raise_for_status()
        return json.loads(response.text, parse_float=Decimal)

    def mutate(self, source: str, change: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(self._url(f"mutate/{source}"), json=change, timeout=10)
        response.raise_for_status()
        return response.json()
