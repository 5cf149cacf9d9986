"""What a permission prompt says beyond the tool call itself.

The model names a path; what gets written is where that path *resolves* to.  These
lines show the real target when it differs (a symlink, `..`), warn when it leaves the
session directory or lies where tools run code from (`.claude/`, `.git/` …), and pass
on what Claude Code said about the request: its title, its reason for asking (unless it
is the generic "This command requires approval") and the path it blocked.  They also
say, before the press, which rule "Allow for session" would store — and, once the
prompt is decided, what it says then (`decided_prompt`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adapters.messages import Outbound
from agent.events import PermissionAsked
from bridge import render
from bridge.approvals import project_file, project_rules, rules
from bridge.render import md_escape
from storage.models import PermissionRequestRow

_PATH_KEYS = ("file_path", "notebook_path", "path")
_NOTE_CHARS = 500


def _code(text: str) -> str:
    return f"`{rules.tick(text[:_NOTE_CHARS])}`"


def target_notes(tool: str, input: Mapping[str, Any], cwd: str) -> list[str]:
    """Where the tool's path really points, and whether that is a place to worry about."""
    given = next((v for k in _PATH_KEYS if isinstance(v := input.get(k), str) and v), "")
    if not given or not cwd:
        return []
    root = Path(os.path.realpath(cwd))
    target = rules.resolve(given, cwd)
    lexical = Path(os.path.normpath(Path(cwd) / os.path.expanduser(given)))
    notes: list[str] = []
    if target != lexical:
        notes.append(f"↪️ Really {_code(str(target))} (the path goes through a symlink)")
    if target != root and not target.is_relative_to(root):
        notes.append(f"⚠️ **Outside the session directory** {_code(str(root))}")
    elif tool in rules.EDIT_TOOLS and not rules.editable(given, cwd):
        notes.append(
            "⚠️ **A place from which tools run code** (or a hard link to another file): "
            "allow only if you meant it"
        )
    return notes


def prompt_notes(event: PermissionAsked, cwd: str) -> list[str]:
    """Markdown lines for the prompt of `event` (empty when there is nothing to add)."""
    notes = target_notes(event.name, event.input, cwd)
    if event.title.strip():
        notes.append(f"_{md_escape(' '.join(event.title.split())[:_NOTE_CHARS])}_")
    reason = " ".join(event.decision_reason.split())
    if reason and reason not in rules.GENERIC_REASONS:
        notes.append(f"Claude Code: _{md_escape(reason[:_NOTE_CHARS])}_")
    if event.blocked_path:
        notes.append(f"🚧 Blocked path: {_code(event.blocked_path)}")
    return notes


def offer_line(offer: rules.Rule | None) -> str:
    """The prompt's line about "Allow for session", or "" when it is not offered."""
    if offer is None:
        return ""
    return f"♾️ _Allow for session_ stores `{rules.tick(offer.shown)}`: {offer.describe()}."


def project_line(rule: rules.Rule | None, cwd: str) -> str:
    """The prompt's line about "Allow always (project)", or "" when it is not offered."""
    if rule is None:
        return ""
    where = os.path.join(os.path.realpath(cwd), ".claude", "settings.local.json")
    return (
        f"📌 _Always (project)_ writes `{rules.tick(rule.shown)}` to `{rules.tick(where)}` "
        "(here and for the terminal `claude`)."
    )


def decided_prompt(
    row: PermissionRequestRow, cwd: str, state: render.Decision, by: str, *, timeout_s: float
) -> Outbound:
    """The prompt of `row` once decided: who decided what, and for a rule which one
    and where it was written."""
    ruled = state in ("allowed_session", "allowed_project")
    rule = rules.parse_rule(row.reason) if ruled else None
    where = str(project_file.path_of(cwd)) if state == "allowed_project" else ""
    try:
        shown = json.loads(row.input_json)
    except ValueError:  # stored cut at 100 000 characters
        shown = {"input": row.input_json[:2000] + "…"}
    if rule and where:
        note = project_rules.decided_note(rule, where)
    elif rule:
        note = f"{rule.describe()} (rule `{rules.tick(rule.shown)}`)"
    else:
        note = ""
    return render.permission_decided(
        row.tool_name,
        shown,
        cwd,
        state,
        by,
        "" if rule else row.reason,
        timeout_s=timeout_s,
        rule_note=note,
    )
