"""The "Allow for session" rules: which request may make one, what it stores, what it matches.

Rules are written in Claude Code's own permission-rule language, so they read the way
the person knows them from ``/permissions`` and ``settings.json``:

- ``Bash(<exact command>)`` — that command, character for character, and nothing else.
- ``Bash(<program subcommand>:*)`` — only for the few prefixes in ``SAFE_PREFIXES``,
  whose further arguments cannot run other code, write arbitrary files or reach the
  network.  Everything else (interpreters, shells, wrappers, runners, ``git`` with
  leading options, ``rm``, ``curl`` …) only ever gets an exact rule.
- ``Edit(//<session dir>/**)`` — Write/Edit/MultiEdit/NotebookEdit on a file whose
  *resolved* path (symlinks followed) is inside the session directory and not in a
  place from which tools run code by themselves (``PROTECTED``).
- ``WebFetch(domain:<host>)`` — fetches from exactly that host.

No other tool gets a session rule (the prompt has no "Allow for session" button).  A
command that is empty, does not parse, or contains shell metacharacters (chaining,
pipes, redirection, substitution, variables, newlines) never makes a rule and never
matches one.  A request the CLI flags — a ``blocked_path``, or a ``decision_reason``
other than its generic "This command requires approval" — is never allowed by a rule.
(A ``blocked_path`` inside the session directory, which the CLI also sends for plain
writes there, does not count — see `flagged`.)

Why Threadline matches its own rules instead of answering ``can_use_tool`` with the
CLI's ``suggestions`` as ``updated_permissions`` (measured with the bundled CLI
2.1.337 against the fake model): the suggestions are too broad or in the wrong place —
``npm test`` is suggested as ``Bash(npm test *)`` (``npm test --script-shell=./x``
then runs any program), a Write inside the directory gets only ``setMode acceptEdits``
(every later edit in the session), and Bash rules go to ``localSettings``, i.e. into
the repository's own ``.claude/settings.local.json`` (``touch marker`` came as
``Bash(touch marker *)``, which also touches any other file).  ``python -m pytest``,
``git -C d status`` and ``pytest -q`` came as exact rules.  (``git status``, ``ls; id``
and an empty command never reach ``can_use_tool``: the CLI runs what it judges
read-only by itself.)  A rule applied through
``updated_permissions`` with destination ``session`` holds only while that CLI process
lives: after a restart with ``resume=`` the same command was asked again.  Threadline
restarts CLIs (idle, crash, daemon restart), and its rules must be listable and
revocable (the ``rules`` command), so they are rows in its database, matched here.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

# Program + subcommand prefixes whose rule may cover later arguments.  Each was checked
# for options that execute code, write chosen files or talk to chosen hosts:
#   git status — options only select what is shown (-s, -b, -u, --ignored, pathspecs).
#   git add    — options only select what is staged (-A, -u, -p is interactive and
#                fails without a tty, --chmod); it writes only the index.
# Left out on purpose: npm test (npm config flags like --script-shell pick the program
# that runs), pytest (-p loads any module, --basetemp is deleted recursively), go test
# (-exec), cargo test (--config), git diff/log/show (--output writes any file,
# --ext-diff), git fetch/pull (--upload-pack runs a program), ls/cat/head (read any
# file outside the directory and hand it to the model).
SAFE_PREFIXES: Final[frozenset[tuple[str, str]]] = frozenset({("git", "status"), ("git", "add")})

EDIT_TOOLS: Final = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})

# Path components an edit rule never covers: places from which Claude Code, git, an
# editor, direnv, a hook manager or CI run commands without anyone asking — writing
# there plants code that runs later.  Compared case-insensitively (macOS, Windows).
PROTECTED: Final = frozenset(
    {
        ".claude",  # Claude Code settings: hooks, MCP servers, env, permissions
        ".mcp.json",  # project MCP servers: commands the CLI starts
        ".git",  # hooks, config (core.fsmonitor, core.pager, filters)
        ".gitmodules",  # submodule URLs fetched by git
        ".envrc",  # direnv runs it on cd
        ".vscode",  # tasks.json, settings (terminal env, interpreter paths)
        ".idea",  # run configurations, startup tasks
        ".devcontainer",  # postCreateCommand and friends
        ".github",  # workflows run with the repository's CI secrets
        ".gitlab-ci.yml",
        ".circleci",
        ".husky",  # git hooks via husky
        ".pre-commit-config.yaml",  # git hooks via pre-commit
        "lefthook.yml",
        ".lefthook.yml",
    }
)

# The reason the CLI gives for every ordinary Bash request (measured, CLI 2.1.337).
# Any other reason (a protected path, a hook's "ask", a sandbox) disables rules.
GENERIC_REASONS: Final = frozenset({"This command requires approval"})

SHOWN_CHARS: Final = 200  # a rule longer than this is named, not repeated, in chat
_META = re.compile(r"[;&|<>`$(){}\\\n\r\x00-\x08\x0b-\x1f\x7f]")
_RULE = re.compile(r"(?P<tool>[A-Za-z][A-Za-z0-9_]*)\((?P<content>.*)\)", re.DOTALL)
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: ``tool`` and ``content`` as in ``Tool(content)``."""

    tool: str
    content: str

    @property
    def text(self) -> str:
        return f"{self.tool}({self.content})"

    @property
    def shown(self) -> str:
        """`text` for a chat line: a long exact command is named, not repeated (the
        prompt shows or attaches it whole)."""
        if len(self.content) <= SHOWN_CHARS:
            return self.text
        return f"{self.tool}(<this exact {len(self.content)}-character command>)"

    def describe(self) -> str:
        """What the rule lets through, in a sentence for the decided prompt (Markdown)."""
        if self.tool == "Bash" and self.content.endswith(":*"):
            return f"later `{tick(self.content[:-2])} …` runs without asking"
        if self.tool == "Bash" and len(self.content) > SHOWN_CHARS:
            return "later exactly this command, character for character, runs without asking"
        if self.tool == "Bash":
            return f"later exactly `{tick(self.content)}` runs without asking"
        if self.tool == "Edit":
            where = self.content.removeprefix("/").removesuffix("/**")
            return (
                f"later edits to files inside `{tick(where)}` (not `.claude/`, `.git/` or "
                "other places that run code) go ahead without asking"
            )
        if self.tool == "WebFetch":
            return f"later fetches from `{tick(self.content.removeprefix('domain:'))}` go ahead without asking"
        return "nothing else"


@dataclass(frozen=True, slots=True)
class Request:
    """What a rule is checked against: the tool call and what the CLI said about it."""

    tool: str
    input: Mapping[str, Any]
    cwd: str
    blocked_path: str = ""
    decision_reason: str = ""


def tick(text: str) -> str:
    return text.replace("`", "ˋ")


def parse_rule(text: str) -> Rule | None:
    """``Tool(content)`` → Rule; None if it is not one."""
    m = _RULE.fullmatch(text.strip())
    return Rule(m["tool"], m["content"]) if m else None


def flagged(req: Request) -> bool:
    """The CLI itself marked the request as special: never allowed by a rule.

    A `blocked_path` counts unless it resolves inside the session directory to no
    protected place: the CLI sets one for plain writes there too (measured: `touch
    marker` and `rm -rf build/` in the directory came with it), and those may still
    have an exact rule.  Any reason but the generic one counts."""
    reason = req.decision_reason.strip()
    if reason and reason not in GENERIC_REASONS:
        return True
    return bool(req.blocked_path) and not editable(req.blocked_path, req.cwd)


def _words(command: str) -> list[str] | None:
    """The command's words, or None if it is empty, unparsable or not a simple command."""
    if not command.strip() or _META.search(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    return words or None


def resolve(path: str, cwd: str) -> Path:
    """Where a tool's path really points: relative to `cwd`, symlinks followed (the
    part that does not exist yet is taken as written)."""
    raw = Path(os.path.expanduser(path))
    return Path(os.path.realpath(raw if raw.is_absolute() else Path(cwd) / raw))


def edit_target(tool: str, input: Mapping[str, Any]) -> str:
    key = "notebook_path" if tool == "NotebookEdit" else "file_path"
    value = input.get(key)
    return value if isinstance(value, str) else ""


def editable(path: str, session_dir: str) -> bool:
    """`path` (as the model gave it) resolves inside `session_dir`, to no protected
    place, and is not a hard link to a file elsewhere."""
    if not path or not session_dir:
        return False
    root = Path(os.path.realpath(session_dir))
    target = resolve(path, str(root))
    if target == root or not target.is_relative_to(root):
        return False
    if any(part.lower() in PROTECTED for part in target.relative_to(root).parts):
        return False
    try:
        st = os.lstat(target)
    except OSError:
        return True  # a new file
    return not (st.st_nlink > 1 and not os.path.isdir(target))


def _host(url: object) -> str:
    if not isinstance(url, str):
        return ""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return ""
    return host


def rule_for(req: Request) -> Rule | None:
    """The rule "Allow for session" would store for this request; None when the
    request must not make one (then the prompt offers only Allow and Deny)."""
    if flagged(req):
        return None
    if req.tool == "Bash":
        command = req.input.get("command")
        words = _words(command) if isinstance(command, str) else None
        if words is None or not isinstance(command, str):
            return None
        if len(words) >= 2 and (words[0], words[1]) in SAFE_PREFIXES:
            return Rule("Bash", f"{words[0]} {words[1]}:*")
        return Rule("Bash", command.strip())
    if req.tool in EDIT_TOOLS:
        if not editable(edit_target(req.tool, req.input), req.cwd):
            return None
        return Rule("Edit", "/" + os.path.realpath(req.cwd) + "/**")
    if req.tool == "WebFetch":
        host = _host(req.input.get("url"))
        return Rule("WebFetch", f"domain:{host}") if host else None
    return None


def matches(rule: Rule, req: Request) -> bool:
    """Does `rule` let `req` run without asking?  Strict: anything unexpected is no."""
    if flagged(req) or not rule.content:
        return False
    if rule.tool == "Bash" and req.tool == "Bash":
        command = req.input.get("command")
        words = _words(command) if isinstance(command, str) else None
        if words is None or not isinstance(command, str):
            return False
        if rule.content.endswith(":*"):
            prefix = tuple(rule.content[:-2].split(" "))
            return prefix in SAFE_PREFIXES and tuple(words[:2]) == prefix
        return command.strip() == rule.content
    if rule.tool == "Edit" and req.tool in EDIT_TOOLS:
        if not (rule.content.startswith("//") and rule.content.endswith("/**")):
            return False
        root = rule.content[1:-3]
        if os.path.realpath(req.cwd) != root:
            return False
        return editable(edit_target(req.tool, req.input), root)
    if rule.tool == "WebFetch" and req.tool == "WebFetch":
        host = _host(req.input.get("url"))
        return bool(host) and rule.content == f"domain:{host}"
    return False
