""" "Allow always (project)" end to end: the real Claude Code CLI against the fake model, the
real Telegram adapter against the fake Bot API, the whole bridge between.

The rule lands in the folder's `.claude/settings.local.json` as exactly the narrow rule
the prompt showed (the CLI suggests `Bash(touch marker *)`), a FRESH session in that
folder runs the command without asking, and it asks again once the rule is removed with
`rules` or the line is deleted by hand.  A request too wide for a rule has no such button
and a forged press is refused; a symlinked settings file is never written; a trusted
folder stays trusted after Threadline's own write.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.trust import inspect_folder
from tests.support.fakes.anthropic import Text, ToolUse
from tests.support.fakes.telegram import FakeMessage
from tests.support.harness import OWNER, OWNER_NAME, Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e
OWNER_USER = {"id": OWNER, "is_bot": False, "first_name": OWNER_NAME}
ALWAYS = "📌 Always (project)"


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


def is_prompt(m: FakeMessage, needle: str = "") -> bool:
    labels = getattr(m, "button_labels", [])
    return any("Deny" in b for b in labels) and needle in (m.visible_text or "")


def prompts(h: Harness, topic: int) -> list[FakeMessage]:
    return [m for m in h.bot_messages(topic) if "🔐" in (m.visible_text or "")]


async def allow_always(
    h: Harness, app: Path, prompt: str, done: str, *, by_text: bool = False
) -> tuple[int, FakeMessage, str]:
    """A session in `app` whose `touch marker` is answered with Always (project); the
    topic, the prompt and what the prompt said before the press."""
    h.model.on(prompt, ToolUse("Bash", {"command": "touch marker"}), Text(done))
    topic, _ = await h.new_session(str(app), prompt)
    first = await h.wait_msg(lambda m: is_prompt(m, "touch marker"), thread_id=topic)
    assert first.button_labels == ["✅ Allow", "♾️ Allow for session", ALWAYS, "❌ Deny"]
    offered = first.visible_text
    if by_text:  # the text answer for it (SPEC: `always` alone is Allow for session)
        h.say("Always  Project.", thread_id=topic, reply_to=first.message_id)
    else:
        h.press(first, "Always (project)")
    await h.wait_text(done, thread_id=topic)
    return topic, first, offered


async def test_always_writes_the_narrow_rule_and_a_fresh_session_honours_it(h: Harness) -> None:
    app = h.root / "app"
    settings = app / ".claude" / "settings.local.json"
    topic, first, offered = await allow_always(h, app, "touch it", "touched")
    # exactly the rule shown, not the CLI's wider suggestion `Bash(touch marker *)`
    assert json.loads(settings.read_text()) == {"permissions": {"allow": ["Bash(touch marker)"]}}
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.parent.stat().st_mode) == 0o700
    where = str(settings.resolve())
    assert f"writes Bash(touch marker) to {where}" in offered
    decided = h.tg.message(h.chat_id, first.message_id)
    assert "Allowed always in this project by Ada" in decided.visible_text
    assert f"wrote Bash(touch marker) to {where}" in decided.visible_text
    assert decided.button_labels == []

    # a FRESH session in the same folder: runs it without asking, and no trust prompt
    h.model.on("fresh", ToolUse("Bash", {"command": "touch marker"}), Text("fresh touched"))
    topic2, _ = await h.new_session(str(app), "fresh")
    await h.wait_text("fresh touched", thread_id=topic2)
    assert prompts(h, topic2) == []
    assert not any("🛡" in (m.visible_text or "") for m in h.bot_messages(topic2))
    # … but a different command still asks
    h.model.on("other", ToolUse("Bash", {"command": "touch other"}), Text("other over"))
    h.say("other", thread_id=topic2)
    other = await h.wait_msg(lambda m: is_prompt(m, "touch other"), thread_id=topic2)
    h.press(other, "Deny")
    await h.wait_text("other over", thread_id=topic2)

    # removed with `rules`: the line leaves the file, and the next request asks again
    h.say("/rules", thread_id=topic2)
    listing = await h.wait_msg(
        lambda m: "Allowed always in this folder" in (m.visible_text or ""), thread_id=topic2
    )
    assert "Bash(touch marker)" in listing.visible_text
    assert listing.button_labels == ["Remove 1"]
    assert "This folder's own rules" not in listing.visible_text, "ours is listed once"
    h.press(listing, "Remove 1")
    await h.wait_text("Removed Bash(touch marker) from", thread_id=topic2)
    assert json.loads(settings.read_text()) == {"permissions": {"allow": []}}
    assert h.db.project_rules.for_dir(str(app.resolve())) == []
    assert any(
        a.action == "rule-remove" and a.allowed and "project" in a.detail
        for a in h.db.audit.recent(20)
    )
    h.model.on("again", ToolUse("Bash", {"command": "touch marker"}), Text("again over"))
    h.say("again", thread_id=topic2)
    again = await h.wait_msg(lambda m: is_prompt(m, "touch marker"), thread_id=topic2)
    h.press(again, "Deny")
    await h.wait_text("again over", thread_id=topic2)


async def test_a_hand_deleted_line_asks_again_and_a_foreign_rule_is_not_honoured(
    h: Harness,
) -> None:
    app = h.root / "app"
    settings = app / ".claude" / "settings.local.json"
    topic, _, _ = await allow_always(h, app, "touch it", "touched", by_text=True)
    assert json.loads(settings.read_text()) == {"permissions": {"allow": ["Bash(touch marker)"]}}
    # someone edits the file at the desk: our line goes, another appears
    settings.write_text(json.dumps({"permissions": {"allow": ["Bash(touch other)"]}}))
    h.model.on(
        "both",
        ToolUse("Bash", {"command": "touch marker"}),
        ToolUse("Bash", {"command": "touch other"}),
        Text("both over"),
    )
    h.say("both", thread_id=topic)
    mine = await h.wait_msg(lambda m: is_prompt(m, "touch marker"), thread_id=topic)
    h.press(mine, "Deny")
    theirs = await h.wait_msg(lambda m: is_prompt(m, "touch other"), thread_id=topic)
    h.press(theirs, "Deny")
    await h.wait_text("both over", thread_id=topic)


async def test_a_too_wide_request_offers_no_always_and_a_forged_press_is_refused(
    h: Harness,
) -> None:
    app = h.root / "app"
    settings = app / ".claude" / "settings.local.json"
    h.model.on(
        "chain",
        ToolUse("Bash", {"command": "touch a && touch b"}),
        ToolUse("Write", {"file_path": str(app / ".claude" / "settings.json"), "content": "{}"}),
        ToolUse("Write", {"file_path": str(app / "src.py"), "content": "a = 1\n"}),
        Text("chain over"),
    )
    topic, _ = await h.new_session(str(app), "chain")
    chained = await h.wait_msg(lambda m: is_prompt(m, "touch a"), thread_id=topic)
    assert chained.button_labels == ["✅ Allow", "❌ Deny"], "the CLI suggested rules; none fit"
    forged = chained.callback_data("Allow")[:-1] + "p"
    h.tg.press_button(h.chat_id, chained.message_id, forged, OWNER_USER, strict=False)
    await h.tg.wait_until(
        lambda: any("no project rule offered" in a.detail for a in h.db.audit.recent(20)), 30
    )
    assert not settings.exists()
    h.say("always project", thread_id=topic)  # the text answer is refused the same way
    await h.wait_text("cannot be allowed always", thread_id=topic)
    h.press(chained, "Deny")
    planted = await h.wait_msg(lambda m: is_prompt(m, "settings.json"), thread_id=topic)
    assert planted.button_labels == ["✅ Allow", "❌ Deny"]
    h.press(planted, "Deny")
    write = await h.wait_msg(lambda m: is_prompt(m, "src.py"), thread_id=topic)
    assert ALWAYS not in write.button_labels, "an edit rule is never written (see project_rules)"
    h.press(write, "Deny")
    await h.wait_text("chain over", thread_id=topic)
    assert not settings.exists() and not (app / ".claude" / "settings.json").exists()


async def test_a_symlinked_settings_file_is_refused_and_not_written(
    h: Harness, tmp_path: Path
) -> None:
    app = h.root / "app"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"keep": true}')
    (app / ".claude").mkdir()
    settings = app / ".claude" / "settings.local.json"
    settings.symlink_to(elsewhere)
    h.model.on("touch it", ToolUse("Bash", {"command": "touch marker"}), Text("touched"))
    topic, _ = await h.new_session(str(app), "touch it")
    first = await h.wait_msg(lambda m: is_prompt(m, "touch marker"), thread_id=topic)
    h.press(first, "Always (project)")
    await h.wait_text("Nothing was written", thread_id=topic)
    assert (
        "symbolic link" in (await h.wait_text("Nothing was written", thread_id=topic)).visible_text
    )
    assert elsewhere.read_text() == '{"keep": true}' and settings.is_symlink()
    assert h.db.project_rules.for_dir(str(app.resolve())) == []
    h.say("always project", thread_id=topic, reply_to=first.message_id)  # refused the same way
    await h.tg.wait_until(
        lambda: sum("project rule not written" in a.detail for a in h.db.audit.recent(20)) >= 2, 30
    )
    h.press(first, "Allow")  # the prompt is still open: answer it once
    await h.wait_text("touched", thread_id=topic)
    assert elsewhere.read_text() == '{"keep": true}' and (app / "marker").exists()


async def test_a_trusted_folder_stays_trusted_after_our_write(h: Harness) -> None:
    app = h.root / "app"
    (app / ".claude").mkdir()
    (app / ".claude" / "settings.json").write_text(
        json.dumps({"permissions": {"allow": ["Bash(make:*)"]}, "env": {"TL_MARK": "1"}})
    )
    folder = inspect_folder(app, h.env)
    h.db.trust.trust(str(folder.folder), folder.fingerprint, by=f"telegram:{OWNER}", source="chat")
    topic, _, _ = await allow_always(h, app, "touch it", "touched")
    after = inspect_folder(app, h.env)
    record = h.db.trust.folder(str(folder.folder))
    assert record is not None and record.fingerprint == after.fingerprint != folder.fingerprint
    assert json.loads((app / ".claude" / "settings.local.json").read_text()) == {
        "permissions": {"allow": ["Bash(touch marker)"]}
    }
    os.remove(app / "marker")
    h.model.on("fresh", ToolUse("Bash", {"command": "touch marker"}), Text("fresh touched"))
    topic2, _ = await h.new_session(str(app), "fresh")
    await h.wait_text("fresh touched", thread_id=topic2)
    assert prompts(h, topic2) == [] and (app / "marker").exists()
    texts = [m.visible_text or "" for m in h.bot_messages(topic2)]
    assert not any("changed since it was trusted" in t for t in texts), texts


async def test_the_cli_itself_honours_the_rules_in_the_form_we_write(h: Harness) -> None:
    """What the terminal `claude` does with the file: a trusted folder's CLI is given its
    settings, and rules in exactly the form Threadline writes (exact, `:*` prefix,
    `domain:`) let the CLI run the tool without asking at all — no rule of ours is
    recorded here, so nothing in Threadline allowed them."""
    app = h.root / "app"
    (app / ".claude").mkdir()
    written = ["Bash(touch marker)", "Bash(git add:*)", "WebFetch(domain:example.com)"]
    (app / ".claude" / "settings.local.json").write_text(
        json.dumps({"permissions": {"allow": written}})
    )
    folder = inspect_folder(app, h.env)
    h.db.trust.trust(str(folder.folder), folder.fingerprint, by=f"telegram:{OWNER}", source="chat")
    h.model.on(
        "go",
        ToolUse("Bash", {"command": "touch marker"}),
        ToolUse("Bash", {"command": "git add -A"}),
        ToolUse("Bash", {"command": "touch other"}),
        Text("go over"),
    )
    topic, _ = await h.new_session(str(app), "go")
    other = await h.wait_msg(lambda m: is_prompt(m, "touch other"), thread_id=topic)
    assert (app / "marker").exists(), "the exact rule: run by the CLI unasked"
    h.press(other, "Deny")
    await h.wait_text("go over", thread_id=topic)
    assert [p.message_id for p in prompts(h, topic)] == [other.message_id], "git add: unasked"
    assert h.db.project_rules.for_dir(str(folder.folder)) == []
