"""The `threadline` command line, run as a real subprocess (doctor against the fake
Bot API server)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from bridge.config import example_config
from storage.db import Database
from storage.models import SessionRow, ThreadBinding
from tests.support.fakes.telegram import FakeTelegram

TOKEN = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ"

ROOT = Path(__file__).resolve().parents[2]


async def threadline(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode()


def write_config(
    path: Path, tmp: Path, *, token: str, base_url: str, owners: str = '["telegram:1001"]'
) -> None:
    (tmp / "code").mkdir(exist_ok=True)
    path.write_text(
        f"""
[storage]
url = "sqlite:///{tmp}/t.db"
[agent]
allowed_roots = ["{tmp}/code"]
[access]
owners = {owners}
[telegram]
enabled = true
token = "{token}"
base_url = "{base_url}"
"""
    )


async def test_help_for_every_command() -> None:
    code, out = await threadline("--help")
    assert code == 0
    for name in ("init", "run", "doctor", "sessions", "audit"):
        assert name in out
        sub_code, sub_out = await threadline(name, "--help")
        assert sub_code == 0 and "--config" in sub_out


async def test_init_writes_a_private_config_once(tmp_path: Path) -> None:
    target = tmp_path / "cfg" / "config.toml"
    flags = ["--platform", "telegram", "--set", f"token={TOKEN}", "--root", str(tmp_path)]
    code, out = await threadline("init", "--config", str(target), *flags, "--no-check")
    assert code == 0, out
    assert "[telegram]" in target.read_text()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    code, out = await threadline("init", "--config", str(target), *flags, "--no-check")
    assert code == 1 and "not overwriting" in out


async def test_config_errors_are_one_line_each(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text(example_config().replace('"~/code"', f'"{tmp_path}"'))
    env = {"TELEGRAM_BOT_TOKEN": ""}
    os.environ.pop("TELEGRAM_BOT_TOKEN", None)
    code, out = await threadline(
        "doctor", "--config", str(target), env={k: v for k, v in env.items() if v}
    )
    assert code == 2
    assert "telegram.token: environment variable TELEGRAM_BOT_TOKEN is not set" in out
    assert "Traceback" not in out
    # The other checks still ran: the directory, Claude Code.
    assert f"ok   allowed root {tmp_path}" in out and "Claude Code CLI" in out


def claude_login(tmp: Path, key: str = "sk-ant-test-key") -> dict[str, str]:
    """The environment doctor asks the real CLI in: its own (empty) config directory,
    so the developer's login does not count, and `key` as ANTHROPIC_API_KEY."""
    config = tmp / "claude-home" / ".claude"
    config.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(config.parent),
        "CLAUDE_CONFIG_DIR": str(config),
        "ANTHROPIC_API_KEY": key,
        "CLAUDE_CODE_OAUTH_TOKEN": "",
        "ANTHROPIC_AUTH_TOKEN": "",
    }


async def test_doctor_checks_the_claude_login_without_the_network(tmp_path: Path) -> None:
    """No key and no login: one FAIL line naming both fixes, with the path of the CLI
    Threadline runs and its config directory; a key in the environment: ok."""
    from agent.cli import claude_cli_path

    async with FakeTelegram() as tg:
        cfg = tmp_path / "config.toml"
        write_config(cfg, tmp_path, token=tg.token, base_url=tg.base_url)
        env = claude_login(tmp_path, key="")
        code, out = await threadline("doctor", "--config", str(cfg), env=env)
        assert code == 1, out
        line = next(x for x in out.splitlines() if "not logged in" in x)
        assert line.startswith("FAIL Claude Code is not logged in"), out
        fix = "".join(out.split(line, 1)[1].split())  # rich wraps the long fix line
        cli = claude_cli_path("")
        assert cli and "setANTHROPIC_API_KEYinthedaemon'senvironment" in fix
        assert f"CLAUDE_CONFIG_DIR={env['CLAUDE_CONFIG_DIR']}{cli}authlogin" in fix
        code, out = await threadline("doctor", "--config", str(cfg), env=claude_login(tmp_path))
        assert code == 0, out
        assert "ok   Claude Code credentials: api_key from ANTHROPIC_API_KEY" in out
        oauth = {**claude_login(tmp_path, key=""), "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-x"}
        code, out = await threadline("doctor", "--config", str(cfg), env=oauth)
        assert code == 0 and "Claude Code credentials: oauth_token" in out, out


async def test_doctor_checks_the_bot_and_explains_topic_mode(tmp_path: Path) -> None:
    async with FakeTelegram(has_topics_enabled=False) as tg:
        cfg = tmp_path / "config.toml"
        write_config(cfg, tmp_path, token=tg.token, base_url=tg.base_url)
        code, out = await threadline("doctor", "--config", str(cfg), env=claude_login(tmp_path))
        assert code == 0, out
        assert "Telegram bot @threadline_test_bot" in out
        assert "Threaded Mode" in out, "doctor says how to turn topic mode on"
        assert "Claude Code CLI" in out
        assert tg.token not in out

        tg.has_topics_enabled = True
        code, out = await threadline("doctor", "--config", str(cfg), env=claude_login(tmp_path))
        assert code == 0 and "topic mode is on" in out


async def test_doctor_fails_on_a_rejected_token_without_printing_it(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        cfg = tmp_path / "config.toml"
        wrong = "999999:WRONGWRONGWRONGWRONGWRONG"
        write_config(cfg, tmp_path, token=wrong, base_url=tg.base_url)
        code, out = await threadline("doctor", "--config", str(cfg))
        assert code == 1
        assert "token was rejected" in out
        assert wrong not in out


async def test_doctor_reports_missing_roots(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        cfg = tmp_path / "config.toml"
        write_config(cfg, tmp_path, token=tg.token, base_url=tg.base_url)
        (tmp_path / "code").rmdir()
        code, out = await threadline("doctor", "--config", str(cfg))
        assert code == 1 and "does not exist" in out


async def test_sessions_and_audit_list_the_database(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    write_config(cfg, tmp_path, token="123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ", base_url="")
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.migrate()
    db.sessions.add(
        SessionRow(
            id="abc123", platform="telegram", cwd="/home/me/code/app", title="app: x", cost_usd=0.25
        )
    )
    db.bindings.add(
        ThreadBinding(
            session_id="abc123",
            platform="telegram",
            chat_id="1001",
            thread_id="7",
            thread_key="telegram:1001:7",
        )
    )
    db.audit.log(
        platform="telegram",
        user="telegram:666",
        action="refused",
        detail="message: hi",
        allowed=False,
    )
    db.close()
    code, out = await threadline("sessions", "--config", str(cfg))
    assert code == 0, out
    assert "abc123" in out and "telegram:1001/7" in out and "$0.2500" in out
    code, out = await threadline("audit", "--config", str(cfg))
    assert code == 0 and "telegram:666" in out and "refused" in out


@pytest.mark.parametrize("missing", ["nope.toml"])
async def test_missing_config_file(tmp_path: Path, missing: str) -> None:
    code, out = await threadline("sessions", "--config", str(tmp_path / missing))
    assert code == 2 and "threadline init" in out


async def test_run_serves_a_session_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`threadline run` as a user runs it: a real daemon process, a real Claude Code turn."""
    import signal

    from tests.support.fakes.anthropic import FakeAnthropic, Text
    from tests.support.fakes.claude_env import claude_env

    model = FakeAnthropic()
    await model.start()
    try:
        async with FakeTelegram(has_topics_enabled=True) as tg:
            tg.add_chat(1001, "private", first_name="Ada")
            model.on("hello daemon", Text("Hello from the daemon."))
            cfg = tmp_path / "config.toml"
            write_config(cfg, tmp_path, token=tg.token, base_url=tg.base_url)
            log_file = tmp_path / "daemon.log"
            cfg.write_text(
                cfg.read_text() + f'\n[daemon]\nlog_file = "{log_file}"\nlog_level = "DEBUG"\n'
            )
            env = {**os.environ, **claude_env(tmp_path / "home", model.base_url)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg), cwd=ROOT, env=env
            )
            try:
                await tg.wait_until(lambda: tg.calls["getUpdates"] > 0 or None, timeout=60)
                tg.user_message(
                    1001,
                    {"id": 1001, "is_bot": False, "first_name": "Ada"},
                    f"/new {tmp_path}/code hello daemon",
                )
                final = await tg.wait_for(
                    lambda m: "Hello from the daemon." in (m.visible_text or ""), timeout=60
                )
                assert final.thread_id is not None
            finally:
                proc.send_signal(signal.SIGTERM)
                rc = await asyncio.wait_for(proc.wait(), timeout=30)
            assert rc == 0, "SIGTERM is a clean stop"
            log = log_file.read_text()
            assert "threadline is running" in log and "stopping" in log
            assert tg.token not in log
    finally:
        await model.stop()
