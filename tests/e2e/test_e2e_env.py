"""H3 end to end: what the tools Claude Code runs can see of the daemon's environment.

`threadline run` as a real process (as the person starts it: from Threadline's
virtualenv, with the chat tokens exported for the config's `${NAME}`s), the real
python-telegram-bot against the fake Bot API and the real Claude Code CLI against the
fake model.  The model runs `env` in Bash; the owner presses Allow.  The tool result
the model receives — what the CLI's Bash saw — holds neither the Telegram token, nor
the Slack signing secret (under its own name or another), nor the Matrix password
written literally into the config, nor Threadline's virtualenv; what the CLI needs to
reach the model is there."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.e2e.test_e2e_restart import Daemon
from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeTelegram
from tests.support.harness import OWNER, OWNER_NAME, config_text

pytestmark = pytest.mark.e2e
USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}
SIGNING = "8f14e45fceea167a5a36dedd4bea2543"
MATRIX_PASSWORD = "correct-horse-battery-staple"


def tool_results(request: dict[str, object]) -> list[str]:
    out = []
    for message in request.get("messages") or []:  # type: ignore[attr-defined]
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if block.get("type") == "tool_result":
                    out.append(json.dumps(block.get("content")))
    return out


async def test_the_tools_claude_runs_see_no_chat_secret_and_not_threadlines_venv(
    tmp_path: Path,
) -> None:
    model = FakeAnthropic()
    await model.start()
    daemon: Daemon | None = None
    try:
        async with FakeTelegram(has_topics_enabled=True) as tg:
            tg.add_chat(OWNER, "private", first_name=OWNER_NAME)
            root = tmp_path / "code"
            (root / "app").mkdir(parents=True)
            text = config_text(tg=tg, root=root, db_url=f"sqlite:///{tmp_path}/t.db", chat_id=OWNER)
            assert f'token = "{tg.token}"' in text
            text = text.replace(f'token = "{tg.token}"', 'token = "${TELEGRAM_BOT_TOKEN}"')
            text += (
                '[slack]\nsigning_secret = "${SLACK_SIGNING_SECRET}"\n'
                f'[matrix]\npassword = "{MATRIX_PASSWORD}"\n'
                f'[daemon]\nlog_file = "{tmp_path}/daemon.log"\n'
            )
            cfg = tmp_path / "config.toml"
            cfg.write_text(text)
            venv_bin = os.path.join(sys.prefix, "bin")
            assert sys.prefix != sys.base_prefix, "the tests run from a virtualenv"
            env = {
                **os.environ,
                **claude_env(tmp_path / "home", model.base_url),
                "TELEGRAM_BOT_TOKEN": tg.token,
                "SLACK_SIGNING_SECRET": SIGNING,
                "RELEASE_HOOK_KEY": SIGNING,  # the same secret under a name of its own
                "DEPLOY_PASSWORD": MATRIX_PASSWORD,
                "VIRTUAL_ENV": sys.prefix,
                "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
                "PROJECT_SETTING": "kept-as-it-is",
            }
            model.on(
                "show the environment",
                ToolUse("Bash", {"command": "env", "description": "Print the environment"}),
                Text("That is the environment."),
            )
            daemon = Daemon(cfg, env)
            await daemon.start(tg)
            tg.user_message(OWNER, USER, f"/new {root / 'app'} show the environment")
            prompt = await tg.wait_for(
                lambda m: any("Allow" in b for b in m.button_labels), timeout=60
            )
            assert "env" in (prompt.visible_text or "")
            tg.press_button(OWNER, prompt.message_id, prompt.callback_data("Allow"), USER)
            await tg.wait_for(
                lambda m: "That is the environment." in (m.visible_text or ""), timeout=60
            )
            results = [r for req in model.requests for r in tool_results(req)]
            assert results, "the model got the output of env"
            seen = "\n".join(results)
            assert "PROJECT_SETTING=kept-as-it-is" in seen, "env ran and its output came back"
            assert f"ANTHROPIC_BASE_URL={model.base_url}" in seen
            # by Claude Code's design, the model's key is visible to the tools it runs
            assert "ANTHROPIC_API_KEY=test-key" in seen
            assert tg.token not in seen
            assert tg.token.split(":")[1] not in seen
            assert SIGNING not in seen
            assert MATRIX_PASSWORD not in seen
            assert "TELEGRAM_" not in seen and "SLACK_" not in seen
            assert "VIRTUAL_ENV" not in seen
            assert venv_bin not in seen
            assert await daemon.stop() == 0
            daemon = None
            log = (tmp_path / "daemon.log").read_text()
            kept = next(line for line in log.splitlines() if "kept from Claude Code's" in line)
            for name in ("TELEGRAM_BOT_TOKEN", "SLACK_SIGNING_SECRET", "RELEASE_HOOK_KEY",
                         "DEPLOY_PASSWORD", "VIRTUAL_ENV"):  # fmt: skip
                assert name in kept, name
            assert tg.token not in log and SIGNING not in log and MATRIX_PASSWORD not in log
    finally:
        if daemon is not None and daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.kill9()
        await model.stop()
