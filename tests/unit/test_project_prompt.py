"""The permission prompt's "Always (project)" button and decided line as each platform
renders them, and how `threadline audit` names the decision."""

from __future__ import annotations

from adapters.matrix import buttons
from adapters.matrix.render import render as matrix_render
from adapters.slack.render import render as slack_render
from bridge import render
from bridge.approvals import project_rules, rules
from bridge.approvals.audit_words import audit_result
from bridge.approvals.permission_notes import project_line
from tests.support.fakes.slack import check_blocks

RULE = rules.Rule("Bash", "touch marker")


def prompt(request_id: str = "r" * 16) -> render.Outbound:
    return render.permission_prompt(
        request_id,
        "Bash",
        {"command": "touch marker"},
        "/w",
        session_rule="♾️ stores a rule",
        project_rule=project_line(RULE, "/w"),
    )


def test_the_button_says_what_it_writes_where_and_fits_every_platform() -> None:
    msg = prompt("r" * 24)  # the longest request id the broker mints
    [row] = msg.buttons
    assert [(b.label, b.data) for b in row][2] == ("📌 Always (project)", "p:" + "r" * 24 + ":p")
    assert all(len(b.data.encode()) <= 64 for b in row), "Telegram's callback_data limit"
    text = "\n".join(getattr(b, "text", "") for b in msg.blocks)
    assert "writes `Bash(touch marker)` to `/w/.claude/settings.local.json`" in text
    no_project = render.permission_prompt("r", "Bash", {"command": "ls"}, "/w", session_rule="x")
    assert [b.label for b in no_project.buttons[0]] == [
        "✅ Allow",
        "♾️ Allow for session",
        "❌ Deny",
    ]

    for part in slack_render(msg):
        if "blocks" in part.payload:
            errors, _ = check_blocks(part.payload["blocks"])
            assert not errors, errors
    [m] = matrix_render(msg, ["@ada:example.org"])
    assert ["📌", "p:" + "r" * 24 + ":p"] in m.payload["buttons"]
    body = m.payload["content"]["body"]
    assert (
        "📌 Always (project)" in body and "or reply allow, always, always project or deny" in body
    )
    keyed = buttons.assign_keys(row)
    assert "always project" not in buttons.hint(keyed[:2] + keyed[3:])


def test_the_decided_prompt_names_the_rule_and_the_file() -> None:
    note = project_rules.decided_note(RULE, "/w/.claude/settings.local.json")
    decided = render.permission_decided(
        "Bash", {"command": "touch marker"}, "/w", "allowed_project", "Ada", rule_note=note
    )
    text = "\n".join(getattr(b, "text", "") for b in decided.blocks)
    assert "📌 Allowed always in this project by Ada — wrote `Bash(touch marker)` to" in text
    assert "`/w/.claude/settings.local.json`" in text and "terminal `claude`" in text
    assert decided.buttons == ()


def test_audit_names_the_project_decision() -> None:
    assert audit_result("permission", "allowed_project: Bash Bash(x)", True) == (
        "allowed always (project)"
    )
    assert audit_result("permission", "refused r: project rule not written", False) == "refused"


def test_audit_names_what_was_done_with_plans_and_questions() -> None:
    assert audit_result("plan", "approved: mode acceptEdits (r1)", True) == "approved"
    assert audit_result("plan", "sent back: add tests (r1)", True) == "sent back"
    assert audit_result("question", "answered r1 #1: SQLite", True) == "answered"
    assert audit_result("plan", "refused r1: from another thread", False) == "refused"
