"""Unified diffs of Claude's file edits, for permission prompts.

An `Edit`, `MultiEdit` or `Write` tool call carries the new text, not a diff; this
module reads the file as it is on disk now, applies the edit in memory and returns a
git-style unified diff (``--- a/path`` / ``+++ b/path``, ``@@`` line numbers of the
whole file; a new file diffs from ``/dev/null``).  Reading the file is the only I/O.
When the text to replace is not in the file (it changed, or it is not readable), the
diff of the edit's own strings is shown instead, with a note saying so.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

PROMPT_DIFF_CHARS: Final = 3000  # longer diffs: first lines in the prompt, whole as a file
MAX_READ_BYTES: Final = 4_000_000  # a larger file is not read; the edit alone is shown
CONTEXT: Final = 3
_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class FileDiff:
    text: str  # the unified diff
    name: str  # base name, for the ".diff" attachment
    path: str  # the path shown (relative to the session directory when inside it)
    note: str = ""  # why the diff is only approximate, if it is


def rel_path(path: str, cwd: str) -> str:
    """`path` relative to `cwd` when it lies inside it, else unchanged."""
    if not path or not cwd or not os.path.isabs(path):
        return path
    p, c = os.path.normpath(path), os.path.normpath(cwd)
    if p == c:
        return "."
    base = c.rstrip(os.sep) + os.sep
    return p[len(base) :] if p.startswith(base) else path


def read_text(path: str) -> str | None:
    """The file's text, or None if it does not exist, is too big or unreadable."""
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_READ_BYTES:
            return None
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return f.read()
    except (OSError, ValueError):
        return None


def _lines(text: str) -> list[str]:
    # Split on "\n" only (str.splitlines also splits on form feeds and U+2028, which
    # would misnumber lines); a missing final newline is ignored for display.
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1] + "\n")
    return lines


def unified(old: str | None, new: str, path: str) -> str:
    """Unified diff of `old` → `new`; `old=None` means a new file (from /dev/null)."""
    a, b = _lines(old or ""), _lines(new)
    # Trim common leading/trailing lines first: difflib is quadratic in the worst
    # case, and an edit touches a few lines of a possibly long file.
    n = min(len(a), len(b))
    prefix = 0
    while prefix < n and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < n - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    head, tail = max(0, prefix - CONTEXT), max(0, suffix - CONTEXT)
    a_mid, b_mid = a[head : len(a) - tail], b[head : len(b) - tail]
    absolute = os.path.isabs(path)
    from_name = "/dev/null" if old is None else (path if absolute else f"a/{path}")
    to_name = path if absolute else f"b/{path}"
    text = "".join(difflib.unified_diff(a_mid, b_mid, from_name, to_name, n=CONTEXT))
    if head:
        text = _HUNK.sub(
            lambda m: f"@@ -{int(m[1]) + head}{m[2] or ''} +{int(m[3]) + head}{m[4] or ''} @@", text
        )
    return text.rstrip("\n")


def _edits(name: str, input: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    raw = input.get("edits") if name == "MultiEdit" else [input]
    edits: list[tuple[str, str, bool]] = []
    for e in raw if isinstance(raw, list) else []:
        if isinstance(e, Mapping):
            old, new = e.get("old_string", ""), e.get("new_string", "")
            edits.append((str(old or ""), str(new or ""), bool(e.get("replace_all"))))
    return edits


def file_diff(name: str, input: Mapping[str, Any], cwd: str) -> FileDiff:
    """The diff an Edit / MultiEdit / Write tool call would make to the file on disk."""
    raw_path = str(input.get("file_path") or input.get("notebook_path") or "")
    full = raw_path if os.path.isabs(raw_path) or not cwd else os.path.join(cwd, raw_path)
    shown = rel_path(full, cwd) or "file"
    base = os.path.basename(shown.rstrip("/")) or "file"
    current = read_text(full) if raw_path else None
    if name == "Write":
        text = unified(current, str(input.get("content") or ""), shown)
        return FileDiff(text or "(no changes)", base, shown)
    edits = _edits(name, input)
    result = _apply(current, edits)
    if result is not None:
        text = unified(current, result, shown)
        return FileDiff(text or "(no changes)", base, shown)
    # The text to replace is not in the file as it is now: show the edit on its own.
    parts = [unified(old, new, shown) for old, new, _ in edits]
    why = (
        "file not found or not readable"
        if current is None
        else "text to replace not found in the file"
    )
    note = f"{why}; line numbers are relative to the edit"
    return FileDiff("\n".join(p for p in parts if p) or "(no changes)", base, shown, note)


def _apply(current: str | None, edits: list[tuple[str, str, bool]]) -> str | None:
    """The file's text after the edits, or None if an edit does not apply."""
    if current is None:
        # Claude Code creates a file with an Edit whose old_string is empty.
        if not edits or any(old for old, _, _ in edits):
            return None
        current = ""
    text = current
    for old, new, replace_all in edits:
        if not old:
            text = new + text if text == "" else text
            continue
        if old not in text:
            return None
        text = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    return text


def shorten_diff(diff: str, max_chars: int) -> tuple[str, int]:
    """The first whole lines of `diff` within `max_chars`, and how many lines were left out."""
    lines = diff.split("\n")
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > max_chars and kept:
            break
        kept.append(line[:max_chars])
        size += len(line) + 1
    return "\n".join(kept), len(lines) - len(kept)
