"""Scripting Claude's plan mode for the fake model: the plan is written to the plan
file the CLI names in its plan-mode prompt, then ExitPlanMode is called (the bundled
CLI 2.1.337 reads the plan from that file and hands it to `can_use_tool` as
``{"plan": …, "planFilePath": …}``; without a plan file the input is ``{}``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tests.support.fakes.anthropic import Computed, ToolUse

_PLAN_FILE = re.compile(r"(/[^\s\"'\\]+/plans/[\w.-]+\.md)")


def plan_file(request: Mapping[str, Any]) -> str:
    """The plan file the CLI told the model to write (from its system prompt)."""
    found = _PLAN_FILE.search(json.dumps(request))
    if found is None:
        raise AssertionError("the CLI named no plan file: is the session in plan mode?")
    return found.group(1)


def write_plan(text: str) -> Computed:
    """The model writes `text` to the plan file."""
    return Computed(lambda req: ToolUse("Write", {"file_path": plan_file(req), "content": text}))


EXIT_PLAN = ToolUse("ExitPlanMode", {})


def tool_results(requests: list[dict[str, Any]]) -> list[str]:
    """Every tool_result text the model was sent, in order."""
    out: list[str] = []
    for req in requests:
        for msg in req.get("messages", []):
            content = msg.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    inner: Any = block.get("content")
                    out.append(inner if isinstance(inner, str) else json.dumps(inner))
    return out
