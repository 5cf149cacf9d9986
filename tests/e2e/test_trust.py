"""Folder trust: a folder's own Claude Code settings run nothing until the owner trusts it.

The inspector (`agent/trust.py`) is tested on its own, hostile files included. The rest
uses the real Claude Code CLI against the fake model, in a folder planted with every
kind of setting that runs a program (`tests/support/trust_folder.py`): `AgentHost` directly, and
the whole daemon on Telegram, where the person sees the Trust this folder prompt.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

from agent import AgentHost, PermissionAsked, PermissionDecision
from agent.trust import claude_trusted, inspect_folder, project_instructions
from bridge.approvals.trust import prompt as trust_prompt_message
from tests.e2e.test_agent import Recorder
from tests.support.fakes.anthropic import FakeAnthropic, Text, ToolUse
from tests.support.fakes.claude_env import claude_env
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import OWNER, STRANGER, Harness, start_harness, stop_harness
from tests.support.trust_folder import (
    ALL_MARKERS,
    CLAUDE_MD_TOKEN,
    add_hook,
    clear,
    plant,
    ran,
    wait_ran,
)

ENV = {"HOME": "/nonexistent-home", "CLAUDE_CONFIG_DIR": "/nonexistent-home/.claude"}

# --- the inspector ------------------------------------------------------------------------


def test_inspector_lists_everything_that_would_run(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    plant(folder, tmp_path / "m")
    settings = json.loads((folder / ".claude" / "settings.json").read_text())
    settings.update(
        apiKeyHelper="/bin/keys",
        statusLine={"type": "command", "command": "status.sh"},
        enabledPlugins={"evil@market": True},
        extraKnownMarketplaces={"market": {"source": {"source": "github", "repo": "x/y"}}},
        model="opus",
    )
    (folder / ".claude" / "settings.json").write_text(json.dumps(settings))
    found = inspect_folder(folder, ENV)
    texts = [i.text for i in found.items]
    m = tmp_path / "m"
    for expected in (
        f"hook SessionStart: touch {m}/session_start",
        f"hook PreToolUse (Bash): touch {m}/pre_tool_use",
        f"hook UserPromptSubmit: touch {m}/local_prompt",
        f"MCP server evil: sh -c touch {m}/mcp; exec cat",
        f"env BASH_ENV={m}/bash_env.sh",
        "allow rule Bash (runs without asking)",
        "default mode bypassPermissions (not applied: Threadline's mode setting decides)",
        "apiKeyHelper: /bin/keys",
        "statusLine: status.sh",
        "plugin evil@market",
        "setting model: opus",
    ):
        assert expected in texts, (expected, texts)
    assert any(t.startswith("plugin marketplace market") for t in texts)
    assert found.needs_trust and not found.unreadable and len(found.fingerprint) == 64
    # the snapshot a trusted session's CLI is given: both files merged, the mode left out
    assert set(found.settings["hooks"]) == {"SessionStart", "PreToolUse", "UserPromptSubmit"}
    assert found.settings["permissions"] == {"allow": ["Bash"]}
    assert list(found.mcp_servers) == ["evil"] and found.settings["apiKeyHelper"] == "/bin/keys"
    assert inspect_folder(folder, ENV).fingerprint == found.fingerprint, "stable"
    add_hook(folder, m, "other")
    assert inspect_folder(folder, ENV).fingerprint != found.fingerprint


def test_inspector_reads_mcp_json_above_the_folder_and_skips_the_users_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    child = home / "code" / "app"
    child.mkdir(parents=True)
    (home / "code" / ".mcp.json").write_text('{"mcpServers": {"up": {"url": "http://x"}}}')
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text('{"hooks": {"Stop": []}}')
    env = {"HOME": str(home)}
    found = inspect_folder(child, env)
    assert [i.text for i in found.items] == ["MCP server up: http://x"]
    assert found.items[0].source == str(home / "code" / ".mcp.json")
    assert not inspect_folder(home / "code", {"HOME": str(tmp_path)}).unreadable
    (child / "CLAUDE.md").write_text("child rules")
    (home / ".claude" / "CLAUDE.md").write_text("the user's own")
    text = project_instructions(child, env)
    assert "child rules" in text and "the user's own" not in text
    assert inspect_folder(tmp_path / "empty-not-there", env).needs_trust is False


def test_the_prompt_never_shortens_what_would_run(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    plant(folder, tmp_path / "m")
    long_command = "echo " + "x" * 5000 + " && touch /tmp/the-end"
    add_hook(folder, tmp_path / "m", "ignored")
    settings = json.loads((folder / ".claude" / "settings.json").read_text())
    settings["hooks"]["Stop"] = [{"hooks": [{"type": "command", "command": long_command}]}]
    (folder / ".claude" / "settings.json").write_text(json.dumps(settings))
    shown = trust_prompt_message("req", inspect_folder(folder, ENV), "telegram")
    assert shown.file is not None and long_command in shown.file.data.decode()
    assert [b.data for b in shown.buttons[0]] == ["t:req:y", "t:req:n"]
    (folder / ".claude" / "settings.local.json").write_text("{oops")
    unreadable = trust_prompt_message("req", inspect_folder(folder, ENV), "telegram")
    assert not unreadable.buttons, "what cannot be read cannot be trusted"


def test_hostile_settings_files_are_findings_not_crashes(tmp_path: Path) -> None:
    cases: dict[str, bytes | None] = {
        "invalid": b"{not json",
        "deep": b"[" * 200_000 + b"]" * 200_000,
        "huge": b'{"a": "' + b"x" * 2_000_000 + b'"}',
        "list": b"[1, 2]",
        "binary": b'{"a": "\xff\xfe"}',
        "fifo": None,
    }
    for name, content in cases.items():
        folder = tmp_path / name
        (folder / ".claude").mkdir(parents=True)
        target = folder / ".claude" / "settings.json"
        if content is None:
            os.mkfifo(target)  # reading it would block forever
        else:
            target.write_bytes(content)
        found = inspect_folder(folder, ENV)
        assert found.needs_trust and found.unreadable, name
        assert found.items[0].text.startswith("unreadable settings"), found.items
    loop = tmp_path / "loop"
    (loop / ".claude").mkdir(parents=True)
    (loop / ".claude" / "settings.json").symlink_to(loop / ".claude" / "settings.json")
    assert inspect_folder(loop, ENV).unreadable
    (tmp_path / "empty" / ".claude").mkdir(parents=True)
    (tmp_path / "empty" / ".claude" / "settings.json").write_text("{}")
    assert not inspect_folder(tmp_path / "empty", ENV).needs_trust


def test_claude_trust_record_is_read_where_the_cli_keeps_it(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.mkdir()
    folder = tmp_path / "home" / "code" / "app"
    folder.mkdir(parents=True)
    env = {"HOME": str(tmp_path / "home"), "CLAUDE_CONFIG_DIR": str(config)}
    assert not claude_trusted(folder, env)
    record = {"projects": {str(folder.parent): {"hasTrustDialogAccepted": True}}}
    (config / ".claude.json").write_text(json.dumps(record))
    assert claude_trusted(folder, env), "a trusted folder above counts, as in the CLI"
    home_only = {"projects": {str(tmp_path / "home"): {"hasTrustDialogAccepted": True}}}
    (config / ".claude.json").write_text(json.dumps(home_only))
    assert not claude_trusted(folder, env), "the home directory's trust is never enough"
    (config / ".claude.json").write_text("[[[")
    assert not claude_trusted(folder, env)


# --- AgentHost with the real CLI --------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


async def test_an_untrusted_folder_runs_none_of_its_settings(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    """The same hostile folder twice, side by side: untrusted, none of its hooks, MCP
    server or BASH_ENV run and its allow rule / bypass mode do not stop the Bash prompt;
    trusted (the control, proving the markers work), they run."""
    sink = Recorder()
    sink.decide = lambda _: PermissionDecision(allow=True)
    fake.on("run the bash thing", ToolUse("Bash", {"command": "touch ran.txt"}), Text("done"))
    host = AgentHost(sink, env=claude_env(tmp_path / "home", fake.base_url))
    folders = {name: tmp_path / name for name in ("untrusted", "trusted")}
    for name, folder in folders.items():
        plant(folder, tmp_path / f"markers-{name}")
    try:
        for name, folder in folders.items():
            project = inspect_folder(folder) if name == "trusted" else None
            session = await host.start_session(name, folder, project=project)
            await session.send("run the bash thing")
        await asyncio.gather(*(sink.turns(name, 1) for name in folders))
        await wait_ran(tmp_path / "markers-trusted", ALL_MARKERS)
    finally:
        await host.close()
    assert ran(tmp_path / "markers-untrusted") == set()
    assert (folders["untrusted"] / "ran.txt").exists(), "the command ran, once allowed"
    assert [a.name for a in sink.of("untrusted", PermissionAsked)] == ["Bash"]
    # CLAUDE.md is not code: the untrusted session still gets it, as its system prompt.
    systems = [json.dumps(r.get("system")) for r in fake.requests]
    assert sum(CLAUDE_MD_TOKEN in s for s in systems) == len(systems) >= 4


async def test_a_trusted_session_runs_what_was_trusted_not_later_changes(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    """Claude Code hot-reloads settings files it reads; a trusted session's CLI gets the
    snapshot instead, so a hook added to the folder mid-session does not run. The
    control is a CLI reading the folder's settings itself (the SDK's default), which
    does pick the change up."""
    env = claude_env(tmp_path / "home", fake.base_url)
    folders = {name: tmp_path / name for name in ("snapshot", "control")}
    for name, folder in folders.items():
        plant(folder, tmp_path / f"markers-{name}")
    sink = Recorder()
    host = AgentHost(sink, env=env)
    control = ClaudeSDKClient(ClaudeAgentOptions(cwd=str(folders["control"]), env=env))
    try:
        session = await host.start_session(
            "snap", folders["snapshot"], project=inspect_folder(folders["snapshot"])
        )
        await session.send("hello")
        await control.connect()
        await _turn(control, "hello")
        await sink.turns("snap", 1)
        for name, folder in folders.items():
            add_hook(folder, tmp_path / f"markers-{name}", "added", event="UserPromptSubmit")
        for _ in range(100):  # until the control CLI has reloaded its settings
            await _turn(control, "hello again")
            if "added" in ran(tmp_path / "markers-control"):
                break
        assert "added" in ran(tmp_path / "markers-control")
        clear(tmp_path / "markers-snapshot")
        await session.send("hello again")
        await sink.turns("snap", 2)
    finally:
        await control.disconnect()
        await host.close()
    assert ran(tmp_path / "markers-snapshot") == {"local_prompt"}, "the trusted hooks only"


async def _turn(client: ClaudeSDKClient, prompt: str) -> None:
    await client.query(prompt)
    async for _ in client.receive_response():
        pass


# --- the daemon on Telegram --------------------------------------------------------------


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


def _labels(m: FakeMessage) -> list[str]:
    return list(getattr(m, "button_labels", []))


async def trust_prompt(h: Harness, topic: int, after: int = 0) -> FakeMessage:
    return await h.wait_msg(
        lambda m: m.message_id > after and any("Trust this folder" in b for b in _labels(m)),
        thread_id=topic,
    )


async def allow_bash(h: Harness, topic: int, after: int = 0) -> FakeMessage:
    prompt = await h.wait_msg(
        lambda m: m.message_id > after and any("Allow" in b for b in _labels(m)),
        thread_id=topic,
    )
    assert "touch" in prompt.visible_text
    h.press(prompt, "Allow")
    return prompt


async def test_trust_prompt_trust_change_and_untrust(h: Harness, tmp_path: Path) -> None:
    repo, markers = h.root / "repo", tmp_path / "markers"
    plant(repo, markers)
    (h.root / "other").mkdir()
    h.model.on("run the bash thing", ToolUse("Bash", {"command": "touch ran.txt"}), Text("b1"))
    h.model.on("just say hi", Text("hi there"))
    topic, sid = await h.new_session(str(repo), "run the bash thing")
    # untrusted: the thread shows what would run; Claude Code runs without it
    prompt = await trust_prompt(h, topic)
    shown = prompt.visible_text
    for needle in (
        f"SessionStart: touch {markers}/session_start",
        f"PreToolUse (Bash): touch {markers}/pre_tool_use",
        f"UserPromptSubmit: touch {markers}/local_prompt",
        f"MCP server evil: sh -c touch {markers}/mcp; exec cat",
        "env BASH_ENV",
        "allow rule Bash",
        "default mode bypassPermissions",
    ):
        assert needle in shown, (needle, shown)
    await allow_bash(h, topic)  # the project's allow rule and bypass mode do not apply
    await h.wait_text("b1", thread_id=topic)
    assert (repo / "ran.txt").exists() and ran(markers) == set()

    # presses that must trust nothing: a stranger's, another thread's, made-up data
    other_topic, _ = await h.new_session(str(h.root / "other"))
    other = await h.wait_text("Ready", thread_id=other_topic)
    data = prompt.callback_data("Trust this folder")
    stranger = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}
    owner = {"id": OWNER, "is_bot": False, "first_name": "Ada"}
    queries = [
        h.tg.press_button(h.chat_id, prompt.message_id, data, stranger),
        h.tg.press_button(h.chat_id, other.message_id, data, owner, strict=False),
        h.tg.press_button(h.chat_id, prompt.message_id, "t:forged:y", owner, strict=False),
    ]
    await h.tg.wait_until(lambda: all(h.tg.callback_answer(q) for q in queries))
    await h.tg.wait_until(
        lambda: sum(1 for r in h.db.audit.recent() if not r.allowed) >= 3, timeout=10
    )
    assert h.db.trust.folder(str(repo)) is None

    # the owner trusts it: from the next message on, its settings run
    h.press(prompt, "Trust this folder")
    await h.wait_msg(
        lambda m: m.message_id == prompt.message_id and "trusted by Ada" in m.visible_text,
        thread_id=topic,
    )
    record = h.db.trust.folder(str(repo))
    assert record is not None and record.source == "chat" and record.trusted_by.endswith("1001")
    h.say("just say hi", thread_id=topic)
    await h.wait_text("hi there", thread_id=topic)
    await wait_ran(markers, {"session_start", "local_prompt", "mcp"})

    # the settings change: asked again, and neither the new hook nor the old ones run
    clear(markers)
    add_hook(repo, markers, "new_hook")
    h.model.on("after the change", Text("changed ok"))
    h.say("after the change", thread_id=topic)
    again = await trust_prompt(h, topic, after=prompt.message_id)
    assert "changed since it was trusted" in again.visible_text
    assert f"touch {markers}/new_hook" in again.visible_text
    await h.wait_text("changed ok", thread_id=topic)
    assert ran(markers) == set()

    # a press after the settings changed once more trusts nothing, and asks again
    add_hook(repo, markers, "newer_hook")
    h.press(again, "Trust this folder")
    third = await trust_prompt(h, topic, after=again.message_id)
    assert f"touch {markers}/newer_hook" in third.visible_text
    assert "nothing was trusted" in h.tg.message(h.chat_id, again.message_id).visible_text
    assert h.db.trust.folder(str(repo)).fingerprint == record.fingerprint  # type: ignore[union-attr]

    # Not now trusts nothing; `trust` asks again
    h.press(third, "Not now")
    await h.wait_msg(
        lambda m: m.message_id == third.message_id and "Not now, Ada" in m.visible_text,
        thread_id=topic,
    )
    h.say("/trust", thread_id=topic)
    fourth = await trust_prompt(h, topic, after=third.message_id)
    h.say("/trust", thread_id=other_topic)
    await h.wait_text("Nothing to trust", thread_id=other_topic)

    # trusted as it is now, then untrusted: nothing runs any more
    h.press(fourth, "Trust this folder")
    await h.wait_msg(
        lambda m: m.message_id == fourth.message_id and "trusted by Ada" in m.visible_text,
        thread_id=topic,
    )
    assert h.db.trust.folder(str(repo)).fingerprint != record.fingerprint  # type: ignore[union-attr]
    h.say("/untrust", thread_id=topic)
    await h.wait_text("no longer trusted", thread_id=topic)
    h.model.on("after untrust", Text("untrusted ok"))
    h.say("after untrust", thread_id=topic)
    await h.wait_text("untrusted ok", thread_id=topic)
    assert ran(markers) == set()
    actions = [(r.action, r.allowed) for r in h.db.audit.recent()]
    assert ("trust", True) in actions and ("untrust", True) in actions
    assert sid


async def test_claude_codes_own_trust_record_is_honoured(h: Harness, tmp_path: Path) -> None:
    repo, markers = h.root / "repo", tmp_path / "markers"
    plant(repo, markers)
    record = {"projects": {str(repo): {"hasTrustDialogAccepted": True}}}
    (h.home / ".claude" / ".claude.json").write_text(json.dumps(record))
    h.model.on("run the bash thing", ToolUse("Bash", {"command": "touch ran.txt"}), Text("b1"))
    topic, _ = await h.new_session(str(repo), "run the bash thing")
    await h.wait_text("trusted in Claude Code itself", thread_id=topic)
    await h.wait_text("b1", thread_id=topic)
    # trusted, so the CLI is given the folder's settings, `allow: ["Bash"]` included
    results = [
        block
        for r in h.model.requests
        for m in r.get("messages", [])
        if isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    prompts = [m.visible_text for m in h.bot_messages(topic)]
    assert (repo / "ran.txt").exists(), (results, prompts)
    await wait_ran(markers, ALL_MARKERS)
    saved = h.db.trust.folder(str(repo))
    assert saved is not None and saved.source == "claude"
    assert not any("Trust this folder" in b for m in h.bot_messages(topic) for b in _labels(m))
