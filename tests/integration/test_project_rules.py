"""`.claude/settings.local.json` handled as hostile input, which rule "Allow always
(project)" may write (against the suggestions measured from CLI 2.1.337), and what the
write does to folder trust — on real files and a real database."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from agent.trust import inspect_folder
from bridge.approvals import project_file, project_rules, rules
from bridge.approvals.project_file import SettingsRefused
from storage.db import Database

ENV: dict[str, str] = {"HOME": "/nonexistent-home"}


def suggest(*contents: str, tool: str = "Bash", dest: str = "localSettings") -> list[Any]:
    """The CLI's `addRules` suggestion as `PermissionAsked.suggestions` carries it."""
    return [
        {
            "type": "addRules",
            "destination": dest,
            "rules": [{"toolName": tool, "ruleContent": c} for c in contents],
            "behavior": "allow",
        }
    ]


ACCEPT_EDITS = [{"type": "setMode", "destination": "session", "mode": "acceptEdits"}]


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path}/t.db")
    database.migrate()
    return database


def req(tool: str, input: dict[str, Any], cwd: Path, **kw: str) -> rules.Request:
    return rules.Request(tool, input, str(cwd), **kw)


# --- which rule -------------------------------------------------------------------


def test_the_offer_is_the_narrow_rule_only_where_the_cli_suggests_one(tmp_path: Path) -> None:
    def offer(tool: str, input: dict[str, Any], sug: list[Any], **kw: str) -> str | None:
        rule = project_rules.offer(req(tool, input, tmp_path, **kw), sug)
        return rule.text if rule else None

    # measured: the CLI suggests wider rules; the narrow one is what is offered
    assert offer("Bash", {"command": "touch marker"}, suggest("touch marker *")) == (
        "Bash(touch marker)"
    )
    assert offer("Bash", {"command": "npm test"}, suggest("npm test *")) == "Bash(npm test)"
    assert offer("Bash", {"command": "git add -A"}, suggest("git add *")) == "Bash(git add:*)"
    assert offer(
        "Bash", {"command": "python3 -m json.tool in.json"}, suggest("python3 -m json.tool in.json")
    ) == ("Bash(python3 -m json.tool in.json)")
    url = {"url": "https://example.com/x", "prompt": "p"}
    assert offer("WebFetch", url, suggest("domain:example.com", tool="WebFetch")) == (
        "WebFetch(domain:example.com)"
    )
    # too wide for any rule, a wildcard the CLI would widen, flagged, no suggestion, edits
    assert (
        offer("Bash", {"command": "touch a && touch b"}, suggest("touch a *", "touch b *")) is None
    )
    assert offer("Bash", {"command": "ls x; id"}, suggest("ls x *")) is None
    assert offer("Bash", {"command": "echo *"}, suggest("echo *")) is None
    reason = "Glob patterns are not allowed in write operations."
    assert offer("Bash", {"command": "rm *.o"}, suggest("rm *.o"), decision_reason=reason) is None
    assert offer("Bash", {"command": "touch marker"}, []) is None
    assert (
        offer("Bash", {"command": "touch marker"}, suggest("touch marker", dest="session")) is None
    )
    write = {"file_path": str(tmp_path / "a.py"), "content": "x"}
    assert offer("Write", write, ACCEPT_EDITS) is None
    assert offer("Write", write, suggest(f"/{tmp_path}/**", tool="Edit")) is None


# --- the file ---------------------------------------------------------------------


def test_a_new_file_is_private_and_other_keys_are_kept(tmp_path: Path) -> None:
    assert project_file.add_rule(str(tmp_path), "Bash(make)") is True
    path = tmp_path / ".claude" / "settings.local.json"
    assert json.loads(path.read_text()) == {"permissions": {"allow": ["Bash(make)"]}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    original = {
        "env": {"A": "1"},
        "permissions": {"deny": ["Bash(rm:*)"], "allow": ["Read"]},
        "z": [1],
    }
    path.write_text(json.dumps(original))
    path.chmod(0o640)
    assert project_file.add_rule(str(tmp_path), "Bash(make)") is True
    assert project_file.add_rule(str(tmp_path), "Bash(make)") is False, "never twice"
    data = json.loads(path.read_text())
    assert data == {
        "env": {"A": "1"},
        "permissions": {"deny": ["Bash(rm:*)"], "allow": ["Read", "Bash(make)"]},
        "z": [1],
    }
    assert list(data) == ["env", "permissions", "z"], "key order kept"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640, "the owner's mode kept"
    assert project_file.remove_rule(str(tmp_path), "Bash(make)") is True
    assert json.loads(path.read_text())["permissions"]["allow"] == ["Read"]
    assert project_file.remove_rule(str(tmp_path), "Bash(make)") is False
    assert sorted(os.listdir(path.parent)) == ["settings.local.json"], "no temp file left"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"permissions": {"allow": "Bash"}}', "not a list"),
        (b'{"permissions": []}', "not a list"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'{"a": "' + b"x" * (300 * 1024) + b'"}', "too large"),
    ],
)
def test_a_file_that_does_not_parse_is_never_overwritten(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / ".claude" / "settings.local.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(SettingsRefused, match=why):
        project_file.add_rule(str(tmp_path), "Bash(make)")
    assert path.read_bytes() == content
    assert project_file.allow_rules(str(tmp_path)) == frozenset()


def test_symlinks_are_refused_and_nothing_outside_is_touched(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim.json"
    target.write_text('{"permissions": {"allow": []}}')
    project = tmp_path / "p"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "settings.local.json").symlink_to(target)
    with pytest.raises(SettingsRefused, match="symbolic link"):
        project_file.add_rule(str(project), "Bash(make)")
    assert target.read_text() == '{"permissions": {"allow": []}}'
    assert project_file.allow_rules(str(project)) == frozenset(), "a symlink is never read"
    linked = tmp_path / "q"
    linked.mkdir()
    (linked / ".claude").symlink_to(outside)
    with pytest.raises(SettingsRefused, match="symbolic link or not a directory"):
        project_file.add_rule(str(linked), "Bash(make)")
    assert sorted(os.listdir(outside)) == ["victim.json"]
    fifo = tmp_path / "r" / ".claude"
    fifo.mkdir(parents=True)
    os.mkfifo(fifo / "settings.local.json")
    with pytest.raises(SettingsRefused, match="not a regular file"):
        project_file.add_rule(str(tmp_path / "r"), "Bash(make)")


# --- honouring and trust ------------------------------------------------------------


def test_only_rules_we_wrote_and_that_are_still_in_the_file_are_honoured(
    tmp_path: Path, db: Database
) -> None:
    touch = req("Bash", {"command": "touch marker"}, tmp_path)
    project_file.add_rule(str(tmp_path), "Bash(touch marker)")  # someone else's line
    assert project_rules.honoured(db, touch) is None
    rule = rules.Rule("Bash", "touch marker")
    project_rules.write(db, str(tmp_path), rule, by="u", session_id="s1", env=ENV)
    assert project_rules.honoured(db, touch) == rule
    assert (
        project_rules.honoured(db, req("Bash", {"command": "touch marker; id"}, tmp_path)) is None
    )
    assert (
        project_rules.honoured(db, req("Bash", {"command": "touch marker"}, tmp_path / "sub"))
        is None
    )
    path = tmp_path / ".claude" / "settings.local.json"
    path.write_text('{"permissions": {"allow": []}}')  # deleted at the desk
    assert project_rules.honoured(db, touch) is None


def test_a_trusted_folder_is_refingerprinted_only_when_nothing_else_changed(
    tmp_path: Path, db: Database
) -> None:
    folder = tmp_path / "app"
    (folder / ".claude").mkdir(parents=True)
    (folder / ".claude" / "settings.json").write_text('{"env": {"A": "1"}}')
    trusted = inspect_folder(folder, ENV)
    db.trust.trust(str(trusted.folder), trusted.fingerprint, by="u", source="chat")
    rule = rules.Rule("Bash", "touch marker")
    note = project_rules.write(db, str(folder), rule, by="u", session_id="s1", env=ENV)
    record = db.trust.folder(str(trusted.folder))
    assert note == "the folder stays trusted"
    assert record is not None and record.fingerprint == inspect_folder(folder, ENV).fingerprint
    [row] = db.project_rules.for_dir(str(trusted.folder))
    project_rules.remove(db, row, ENV)
    record = db.trust.folder(str(trusted.folder))
    assert record is not None and record.fingerprint == inspect_folder(folder, ENV).fingerprint
    assert json.loads((folder / ".claude" / "settings.local.json").read_text()) == {
        "permissions": {"allow": []}
    }

    # an attacker's hook added after trust (unshown) never rides along into trust
    (folder / ".claude" / "settings.local.json").write_text(
        '{"hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "id"}]}]}}'
    )
    before = db.trust.folder(str(trusted.folder))
    note = project_rules.write(db, str(folder), rule, by="u", session_id="s1", env=ENV)
    after = db.trust.folder(str(trusted.folder))
    assert note == "" and before is not None and after is not None
    assert after.fingerprint == before.fingerprint != inspect_folder(folder, ENV).fingerprint


def test_a_folder_with_only_our_rules_needs_no_trust(tmp_path: Path, db: Database) -> None:
    rule = rules.Rule("Bash", "touch marker")
    project_rules.write(db, str(tmp_path), rule, by="u", session_id="s1", env=ENV)
    assert project_rules.only_ours(db, inspect_folder(tmp_path, ENV))
    project_file.add_rule(str(tmp_path), "Bash(curl:*)")
    assert not project_rules.only_ours(db, inspect_folder(tmp_path, ENV))
