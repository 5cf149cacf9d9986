"""The `rules` command's pieces that need no chat: reading a folder's own Claude Code
allow rules (as data, safely), and dropping the old catch-all session rules."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from bridge.approvals.rules_cmd import MAX_SETTINGS_BYTES, project_rules
from storage import db as db_module
from storage.db import MIGRATIONS, Database
from storage.models import SessionRule


def test_project_rules_are_read_from_both_settings_files(tmp_path: Path) -> None:
    claude = tmp_path / ".claude"
    claude.mkdir()
    (claude / "settings.json").write_text(
        json.dumps({"permissions": {"allow": ["Bash(npm test:*)", 7, ""], "deny": ["Read"]}})
    )
    (claude / "settings.local.json").write_text('{"permissions": {"allow": ["WebFetch"]}}')
    assert project_rules(str(tmp_path)) == [
        (".claude/settings.json", "Bash(npm test:*)"),
        (".claude/settings.local.json", "WebFetch"),
    ]


def test_project_rules_ignore_bad_files(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"permissions": {"allow": ["Bash(secret:*)"]}}')
    root = tmp_path / "app"
    (root / ".claude").mkdir(parents=True)
    (root / ".claude" / "settings.json").symlink_to(outside)  # planted: points outside
    (root / ".claude" / "settings.local.json").write_text("{not json")
    assert project_rules(str(root)) == []
    (root / ".claude" / "settings.local.json").write_text(
        '{"permissions": {"allow": ["Bash(x)"]}, "pad": "' + "x" * MAX_SETTINGS_BYTES + '"}'
    )
    assert project_rules(str(root)) == [], "too large to read"
    assert project_rules(str(tmp_path / "missing")) == []


def test_old_catch_all_rules_are_dropped_by_the_migration(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.migrate()
    db.permissions.add_rule(SessionRule(session_id="s", tool_name="Write", pattern=""))
    db.permissions.add_rule(SessionRule(session_id="s", tool_name="Bash", pattern="npm test"))
    with db.engine.begin() as conn:  # as if the database predated the migration
        before = MIGRATIONS.index(db_module._migration_8)  # the version just before it
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": before})
    db.migrate()
    assert [(r.tool_name, r.pattern) for r in db.permissions.rules("s")] == [("Bash", "npm test")]
    db.close()
