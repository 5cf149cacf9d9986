"""`threadline run` when the chat platform is not reachable yet, or refuses the token.

The daemon runs as a real process against the fake Bot API.  Started while nothing
answers (a boot before the network is up), it says so in one log line per attempt and
connects once the API is back; a signal while it waits stops it cleanly.  A token the
API rejects ends it at once with one line naming the platform and exit status 1 — no
traceback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import config_text

ROOT = Path(__file__).resolve().parents[2]


async def _daemon(
    tmp_path: Path, tg: FakeTelegram, token: str | None = None
) -> asyncio.subprocess.Process:
    (tmp_path / "code").mkdir(exist_ok=True)
    text = config_text(
        tg=tg, root=tmp_path / "code", db_url=f"sqlite:///{tmp_path}/t.db", chat_id=0
    )
    if token is not None:
        text = text.replace(tg.token, token)
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg),
        cwd=ROOT, env={**os.environ, "THREADLINE_CONFIG": ""},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _line_with(proc: asyncio.subprocess.Process, needle: str, seen: list[str]) -> str:
    assert proc.stderr is not None
    while True:
        raw = await asyncio.wait_for(proc.stderr.readline(), timeout=60)
        if not raw:
            raise AssertionError(f"the daemon ended without saying {needle!r}: {seen[-5:]}")
        line = raw.decode(errors="replace").rstrip()
        seen.append(line)
        if needle in line:
            return line


async def test_a_daemon_started_before_the_network_waits_and_then_connects(tmp_path: Path) -> None:
    tg = await FakeTelegram().start()
    try:
        await tg.set_outage("refused")
        proc = await _daemon(tmp_path, tg)
        seen: list[str] = []
        first = await _line_with(proc, "cannot reach the platform", seen)
        assert "telegram" in first and "attempt 1" in first
        await _line_with(proc, "attempt 2 failed", seen)
        polls = tg.calls["getUpdates"]
        await tg.set_outage(None)
        await _line_with(proc, "connected after", seen)
        await tg.wait_until(lambda: tg.calls["getUpdates"] > polls or None, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        assert not any("Traceback" in line for line in seen)
    finally:
        await tg.stop()


async def test_a_signal_while_waiting_for_the_network_stops_the_daemon(tmp_path: Path) -> None:
    tg = await FakeTelegram().start()
    try:
        await tg.set_outage("refused")
        proc = await _daemon(tmp_path, tg)
        seen: list[str] = []
        await _line_with(proc, "cannot reach the platform", seen)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        assert proc.stderr is not None
        rest = (await proc.stderr.read()).decode(errors="replace")
        assert "Traceback" not in rest
    finally:
        await tg.stop()


@pytest.mark.parametrize("token", ["999999:WRONGTOKENWRONGTOKENWRONG"])
async def test_a_rejected_token_is_one_line_and_exit_status_1(tmp_path: Path, token: str) -> None:
    tg = await FakeTelegram().start()
    try:
        proc = await _daemon(tmp_path, tg, token=token)
        assert proc.stderr is not None
        output = (await asyncio.wait_for(proc.stderr.read(), timeout=60)).decode(errors="replace")
        assert await proc.wait() == 1
        assert "Traceback" not in output
        last = output.strip().splitlines()[-1]
        assert last.startswith("threadline: telegram:"), output[-2000:]
        assert "token" in last.lower()
        assert token not in output  # the token never reaches the terminal or a log
    finally:
        await tg.stop()


async def test_a_second_daemon_on_the_same_config_refuses_naming_the_first(
    tmp_path: Path,
) -> None:
    tg = await FakeTelegram().start()
    first = await _daemon(tmp_path, tg)
    try:
        await tg.wait_until(lambda: tg.calls["getUpdates"] > 0 or None, timeout=60)
        second = await _daemon(tmp_path, tg)
        assert second.stderr is not None
        output = (await asyncio.wait_for(second.stderr.read(), timeout=60)).decode()
        assert await second.wait() == 1
        last = output.strip().splitlines()[-1]
        assert f"another threadline daemon (PID {first.pid})" in last, output[-2000:]
        assert "Traceback" not in output
        assert first.returncode is None  # the first one runs on, untouched
        first.kill()  # kill -9 releases the lock: the next start is not blocked
        await first.wait()
        again = await _daemon(tmp_path, tg)
        polls = tg.calls["getUpdates"]
        await tg.wait_until(lambda: tg.calls["getUpdates"] > polls or None, timeout=60)
        again.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(again.wait(), timeout=30) == 0
    finally:
        if first.returncode is None:
            first.kill()
        await tg.stop()


async def test_a_rejected_slack_token_is_one_line_too(tmp_path: Path) -> None:
    from tests.support.fakes.slack import FakeSlack

    fake = await FakeSlack().start()
    try:
        (tmp_path / "code").mkdir()
        cfg = tmp_path / "config.toml"
        cfg.write_text(
            f'[storage]\nurl = "sqlite:///{tmp_path}/t.db"\n'
            f'[agent]\nallowed_roots = ["{tmp_path / "code"}"]\n'
            f'[slack]\nenabled = true\nbot_token = "xoxb-not-the-one"\n'
            f'app_token = "{fake.app_token}"\nbase_url = "{fake.base_url}"\nchannel = "C1"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg),
            cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        output = (await asyncio.wait_for(proc.stderr.read(), timeout=60)).decode()
        assert await proc.wait() == 1
        assert output.strip().splitlines()[-1] == (
            "threadline: slack: Slack refused the token (invalid_auth): check [slack] bot_token"
        )
        assert "Traceback" not in output
    finally:
        await fake.stop()
