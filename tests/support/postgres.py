"""A real PostgreSQL server for the tests: one per test process, a fresh database per test.

Debian's `postgresql` package provides the binaries (`/usr/lib/postgresql/<v>/bin`); the
server refuses to run as root, so as root the data directory belongs to `postgres` and
initdb/pg_ctl run as that user (`runuser`).  It listens on 127.0.0.1 only, on a free
port, with `trust` authentication, and is stopped when the test process ends.  Without
the binaries the PostgreSQL variants are skipped — unless `THREADLINE_REQUIRE_POSTGRES=1`
(CI), where that is a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

USER = "threadline"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def start_postgres() -> tuple[str, Callable[[], None]]:
    """Start a throwaway server outside pytest (the benchmarks use it): its base URL
    (no database) and a function that stops it and removes its data.  Raises
    `RuntimeError` when the PostgreSQL binaries are not installed."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install -y postgresql)")
    data = Path(tempfile.mkdtemp(prefix="threadline-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER]),
        **run,
    )  # type: ignore[call-overload]  # noqa: E501
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
    pg_ctl = str(bin_dir / "pg_ctl")
    subprocess.run(
        _as_server_user(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"]
        ),
        **run,
    )  # type: ignore[call-overload]  # noqa: E501

    def stop() -> None:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )  # noqa: E501
        shutil.rmtree(data, ignore_errors=True)

    return f"postgresql+psycopg://{USER}@127.0.0.1:{port}", stop


def create_database(server: str) -> str:
    """The URL of a new, empty database on `server` (a base URL from `start_postgres`)."""
    import sqlalchemy

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    finally:
        admin.dispose()
    return f"{server}/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The base URL (no database) of a running server for this test process."""
    if _bin_dir() is None:
        if os.environ.get("THREADLINE_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is not installed (apt-get install -y postgresql)")
        pytest.skip("PostgreSQL is not installed")
    pytest.importorskip("psycopg")
    url, stop = start_postgres()
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL of a new, empty database (dropped afterwards)."""
    import sqlalchemy

    url = create_database(postgres_server)
    name = url.rsplit("/", 1)[1]
    admin = sqlalchemy.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
