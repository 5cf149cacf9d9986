"""`threadline doctor` on a PostgreSQL `[storage] url`: one warning when the database is
on another machine and the URL (or `PGSSLMODE`) does not require verified TLS; nothing
for SQLite, loopback, a Unix socket or `sslmode=verify-full` / `verify-ca`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli.doctor import _core_checks, storage_tls
from bridge.config import parse_config

TELEGRAM = '[telegram]\nenabled = true\ntoken = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ"\n'
PG = "postgresql+psycopg://laptop:pw@"


@pytest.mark.parametrize(
    "url",
    [
        f"{PG}db.example.com/threadline",
        f"{PG}db.example.com:5432/threadline?sslmode=require",
        f"{PG}10.0.0.7/threadline?sslmode=prefer",
        f"{PG}[2001:db8::1]:5432/threadline",
        f"{PG}127.0.0.1,db.example.com:5433/threadline",
        "postgresql+psycopg:///threadline?host=db.example.com",
    ],
)
def test_a_remote_database_without_verified_tls_is_warned(url: str) -> None:
    result = storage_tls(url, env={})
    assert result is not None and result.status == "warn"
    assert "without verified TLS" in result.what
    assert "sslmode=verify-full" in result.fix and "sslrootcert" in result.fix
    assert "role" in result.fix


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///~/.local/share/threadline/threadline.db",
        f"{PG}localhost/threadline",
        f"{PG}127.0.0.1:5432/threadline",
        f"{PG}[::1]/threadline",
        "postgresql+psycopg:///threadline?host=/var/run/postgresql",
        "postgresql+psycopg://laptop@/threadline",
        f"{PG}db.example.com/threadline?sslmode=verify-full&sslrootcert=/etc/ca.crt",
        f"{PG}db.example.com/threadline?sslmode=verify-ca",
    ],
)
def test_local_or_verified_databases_are_fine(url: str) -> None:
    assert storage_tls(url, env={}) is None


def test_pgsslmode_in_the_environment_counts() -> None:
    url = f"{PG}db.example.com/threadline"
    assert storage_tls(url, env={"PGSSLMODE": "verify-full"}) is None
    assert storage_tls(url, env={"PGSSLMODE": "require"}) is not None


def test_doctor_prints_one_warning_line_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGSSLMODE", raising=False)
    cfg = parse_config(
        '[storage]\nurl = "postgresql+psycopg://laptop@db.invalid:1/threadline"\n'
        f'[agent]\nallowed_roots = ["{tmp_path}"]\n[daemon]\nhost = "laptop"\n' + TELEGRAM
    )
    results = _core_checks(cfg)
    tls = [r for r in results if "TLS" in r.what]
    assert [(r.status, r.what) for r in tls] == [
        (
            "warn",
            "database on db.invalid is reached without verified TLS (sslmode=prefer):"
            " prompts and answers may cross the network readable",
        )
    ]
