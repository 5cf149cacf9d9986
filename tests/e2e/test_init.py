"""`threadline init` → `threadline run`, as a new user meets them.

Against the fake Bot API: init asks for (or takes) the platform, the token and the
directory, checks the token live, writes a 0600 config with owners empty, and the
daemon then starts on that file unchanged.  A rejected token and a missing answer
write nothing and are one line each.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from typer.testing import CliRunner

from bridge.cli.main import app
from bridge.config import load_config
from tests.support.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


async def test_init_with_flags_then_run_works(tmp_path: Path) -> None:
    tg = await FakeTelegram().start()
    try:
        config = tmp_path / "conf" / "config.toml"
        code = tmp_path / "code"
        result = await asyncio.to_thread(
            runner.invoke,
            app,
            [
                "init", "--config", str(config), "--platform", "telegram",
                "--set", f"token={tg.token}", "--set", f"base_url={tg.base_url}",
                "--root", str(code), "--create-root",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "ok   Telegram bot @" in result.output
        assert f"threadline pair --config {config}" in result.output
        assert config.stat().st_mode & 0o777 == 0o600
        assert code.is_dir()
        cfg = load_config(config)
        assert cfg.access.owners == [] and cfg.telegram.token == tg.token
        assert cfg.agent.allowed_roots == [str(code.resolve())]
        text = config.read_text()
        assert "# From @BotFather" in text  # the example's comments are kept
        # The file as written is what `run` starts on.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(config),
            cwd=ROOT,
            env={
                **{k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"},
                "HOME": str(tmp_path),  # the config's ~/.local/share/threadline
            },
        )  # fmt: skip
        try:
            await tg.wait_until(lambda: tg.calls["getUpdates"] > 0 or None, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        await tg.stop()


async def test_init_asks_when_run_at_a_terminal(tmp_path: Path) -> None:
    tg = await FakeTelegram().start()
    try:
        config = tmp_path / "config.toml"
        code = tmp_path / "projects"
        answers = f"telegram\n{tg.token}\n{code}\ny\n"
        result = await asyncio.to_thread(
            runner.invoke,
            app,
            ["init", "--config", str(config), "--set", f"base_url={tg.base_url}"],
            input=answers,
            env={"TELEGRAM_BOT_TOKEN": ""},
        )
        assert result.exit_code == 0, result.output
        assert "Bot token (from @BotFather)" in result.output
        assert tg.token not in result.output  # typed hidden, never echoed
        assert f"{code} does not exist. Create it?" in result.output
        assert load_config(config).telegram.token == tg.token
    finally:
        await tg.stop()


async def test_a_rejected_token_writes_nothing(tmp_path: Path) -> None:
    tg = await FakeTelegram().start()
    try:
        config = tmp_path / "config.toml"
        wrong = "999999:WRONGWRONGWRONGWRONGWRONG"
        result = await asyncio.to_thread(
            runner.invoke,
            app,
            [
                "init", "--config", str(config), "--platform", "telegram",
                "--set", f"token={wrong}", "--set", f"base_url={tg.base_url}",
                "--root", str(tmp_path),
            ],
        )  # fmt: skip
        assert result.exit_code == 1
        assert "FAIL Telegram: the bot token was rejected" in result.output
        assert "Nothing written" in result.output
        assert not config.exists()
    finally:
        await tg.stop()


def test_missing_answers_without_a_terminal_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    result = runner.invoke(
        app,
        ["init", "--config", str(config), "--platform", "telegram", "--root", str(tmp_path)],
        input="",
        env={"TELEGRAM_BOT_TOKEN": ""},
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "threadline init: Bot token (from @BotFather): no answer (no terminal to ask on;"
        " pass it as a flag)"
    )
    assert not config.exists()
    missing = runner.invoke(
        app,
        [
            "init", "--config", str(config), "--platform", "telegram",
            "--set", "token=1:x", "--root", str(tmp_path / "nope"), "--no-create-root",
        ],
    )  # fmt: skip
    assert missing.exit_code == 2
    assert "does not exist (create it, or pass --create-root)" in missing.output
    assert not (tmp_path / "nope").exists() and not config.exists()
