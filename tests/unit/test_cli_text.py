"""What the `threadline` command prints: plain help, a version, and text shown as written.

Config sections (`[telegram]`), regexes (`[/a-z]`) and owner values reach the terminal
through rich; read as markup they vanished or crashed the command.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bridge.cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_version_and_short_help() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0
    assert version.output.strip() == f"threadline {metadata.version('threadline')}"
    short = runner.invoke(app, ["-h"])
    assert short.exit_code == 0
    assert "init" in short.output and "--version" in short.output
    assert "<bool>" not in short.output


def test_a_config_error_naming_sections_prints_them(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[agent]\nallowed_roots = ["{tmp_path}"]\n')
    result = runner.invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code != 0
    assert "[telegram]" in result.output and "[slack]" in result.output


@pytest.mark.parametrize("owner", ["telegram:[/you]", "telegram:[bold]x"])
def test_owner_values_with_brackets_are_listed_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path}/t.db"\n'
        f'[agent]\nallowed_roots = ["{tmp_path}"]\n'
        f'[access]\nowners = ["{owner}"]\n'
        '[telegram]\nenabled = true\ntoken = "${TELEGRAM_BOT_TOKEN}"\n'
    )
    result = runner.invoke(app, ["pair", "--list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert owner in result.output


def _threadline(*args: str, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The console script's `main()` in a fresh interpreter; `hide` makes modules
    unimportable there (a driver that is not installed)."""
    code = (
        "import sys\n"
        f"for name in {hide!r}: sys.modules[name] = None\n"
        f"sys.argv = ['threadline', *{args!r}]\n"
        "from bridge.cli.main import main\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("url", "hide", "says"),
    [
        (
            "postgresql+psycopg://me@127.0.0.1:1/threadline",
            ("psycopg", "psycopg2"),
            "pip install 'threadline[postgres]'",
        ),
        ("mysteriousdb://x", (), "storage.url: not a database URL this can open"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line(
    tmp_path: Path, url: str, hide: tuple[str, ...], says: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "{url}"\n[agent]\nallowed_roots = ["{tmp_path}"]\n'
        '[telegram]\nenabled = true\ntoken = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ"\n'
    )
    result = _threadline("sessions", "--config", str(config), hide=hide)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert says in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["sessions"], ["audit"], ["pair", "--list"]])
def test_commands_that_read_the_database_need_no_chat_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path}/t.db"\n'
        f'[agent]\nallowed_roots = ["{tmp_path}"]\n'
        '[telegram]\nenabled = true\ntoken = "${TELEGRAM_BOT_TOKEN}"\n'
    )
    result = runner.invoke(app, [*command, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "config error" not in result.output
    # The daemon itself still needs it, and says so in one line.
    run = runner.invoke(app, ["doctor", "--config", str(config)])
    assert run.exit_code == 2
    assert "telegram.token: environment variable TELEGRAM_BOT_TOKEN is not set" in run.output


def test_threadline_claude_runs_the_cli_with_the_sessions_environment(tmp_path: Path) -> None:
    """`threadline claude ARGS` execs the daemon's Claude Code CLI with ARGS as given
    (`-c` is claude's --continue, not the config) and without Threadline's secrets."""
    fake = tmp_path / "claude"
    fake.write_text('#!/bin/sh\necho "ARGS $*"\nenv\n')
    fake.chmod(0o700)
    token = "123456:SECRETSECRETSECRETSECRET"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path}/t.db"\n'
        f'[agent]\nallowed_roots = ["{tmp_path}"]\ncli_path = "{fake}"\n'
        '[telegram]\nenabled = true\ntoken = "${TELEGRAM_BOT_TOKEN}"\n'
    )
    code = (
        "import os, sys\n"
        f"os.environ['TELEGRAM_BOT_TOKEN'] = {token!r}\n"
        f"sys.argv = ['threadline', 'claude', '--config', {str(config)!r}, '-c', '--resume', 'x y']\n"
        "from bridge.cli.main import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "ARGS -c --resume x y"
    assert token not in result.stdout
    assert "TELEGRAM_BOT_TOKEN" not in result.stdout


def test_threadline_hosts_lists_every_host_without_a_chat_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from storage.db import Database

    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path}/t.db"\n'
        f'[agent]\nallowed_roots = ["{tmp_path}"]\n[daemon]\nhost = "laptop"\n'
        '[telegram]\nenabled = true\ntoken = "${TELEGRAM_BOT_TOKEN}"\n'
    )
    empty = runner.invoke(app, ["hosts", "--config", str(config)])
    assert empty.exit_code == 0 and "No host has started" in empty.output
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.migrate()
    now = datetime.now(UTC)
    db.hosts.start(name="laptop", roots=[str(tmp_path)], pid=1, version="x", at=now)
    db.hosts.start(name="box", roots=["/srv/build"], pid=2, version="x", at=now)
    db.hosts.heartbeat(name="box", at=now - timedelta(minutes=10))
    db.gateways.acquire("telegram:42", "laptop", now, 8.0)
    db.gateways.acquire("slack:T1-B1", "box", now - timedelta(minutes=10), 8.0)  # expired
    db.close()
    result = runner.invoke(app, ["hosts", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    laptop = next(line for line in lines if "laptop" in line)
    box = next(line for line in lines if "box" in line)
    assert "(this machine)" in laptop and "online" in laptop and "telegram:42" in laptop
    assert "offline" in box and "10 min ago" in box and "/srv/build" in box
    assert "slack:" not in result.output, "an expired lease is held by nobody"
