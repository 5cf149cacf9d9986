"""`kill -9` while the task list's latest edit is undelivered, then `threadline run`
again: the daemon is a real process (as in test_e2e_restart.py), the CLI real, the
Bot API and the model fakes that outlive it.  No TurnEnded ever reaches the dead
daemon, so the checklist's last word is the stream update still in the outbox:
recovery drops the status message's stream updates, but must deliver this one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.test_e2e_restart import USER, Daemon
from tests.e2e.test_e2e_todos import FIRST, MIDDLE, MODEL, ThreeWrites
from tests.support.fakes.anthropic import FakeAnthropic
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME, config_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_kill9_with_the_checklist_edit_pending_then_restart(tmp_path: Path) -> None:
    model = FakeAnthropic()
    await model.start()
    daemon: Daemon | None = None
    turn = ThreeWrites(model, "release it")
    try:
        async with FakeTelegram(has_topics_enabled=True) as tg:
            tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
            root = tmp_path / "code"
            (root / "app").mkdir(parents=True)
            cfg = tmp_path / "config.toml"
            text = config_text(
                tg=tg, root=root, db_url=f"sqlite:///{tmp_path}/threadline.db", chat_id=OWNER
            )
            cfg.write_text(text.replace("[agent]\n", f'[agent]\nmodel = "{MODEL}"\n', 1))
            env = {
                **os.environ,
                **claude_env(tmp_path / "home", model.base_url),
                "CLAUDE_CODE_ENABLE_TASKS": "false",  # TodoWrite
            }
            daemon = Daemon(cfg, env)
            await daemon.start(tg)
            tg.user_message(OWNER, USER, f"/new {root / 'app'} release it")
            first = await tg.wait_for(lambda m: m.visible_text == FIRST, timeout=60)
            down = tg.fail_next(
                "editMessageText", 502, times=None, match=lambda p: "Tasks" in str(p.get("text"))
            )
            turn.gates[0].set()
            await tg.wait_until(lambda: down.served >= 1 or None, timeout=30)
            await daemon.kill9()
            tg.clear_faults()

            await daemon.start(tg)
            await tg.wait_for(
                lambda m: m.thread_id == first.thread_id and "Interrupted:" in m.visible_text,
                timeout=30,
            )
            await tg.wait_until(
                lambda: tg.message(OWNER, first.message_id).visible_text == MIDDLE or None,
                timeout=30,
            )
            checklists = [
                m for m in tg.messages(OWNER, first.thread_id) if m.visible_text.startswith("📋")
            ]
            assert [m.message_id for m in checklists] == [first.message_id]
            assert await daemon.stop() == 0
            daemon = None
    finally:
        turn.gates[1].set()
        if daemon is not None and daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.kill9()
        await model.stop()
