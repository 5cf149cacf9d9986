"""Markdown (Claude's text, the bridge's notices) → Slack mrkdwn.

Slack's mrkdwn is not Markdown: bold is ``*x*``, italics ``_x_``, strike ``~x~``,
links ``<url|label>``, code ``` `x` ``` and fenced blocks, quotes ``> `` per line, and
no headings, lists or tables.  We parse with mistune 3 (its AST, with the
strikethrough, table and task-list plugins) and walk the tree ourselves: headings
become bold lines, lists "• " / "1. " lines, tables a preformatted grid, images
links.  ``&``, ``<`` and ``>`` are escaped everywhere (Slack's only escapes), so text
can never become a mention (``<!channel>``) or a link by accident; a run of three
backticks outside our own fences is broken with a zero-width space so it cannot open
a code block.  Fences we emit always stand on lines of their own, which is what the
splitter in `adapters.slack.render` relies on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from mistune.util import unescape

from adapters.mdtext import Token, clean_text, parse_tokens, plain

FENCE: Final = "```"
RULE: Final = "———"
_ZWSP: Final = "\u200b"
_SAFE_URL = re.compile(r"(?:https?://|mailto:)\S+", re.IGNORECASE)


def escape(text: str) -> str:
    """Slack's three escapes, and no accidental code fence."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    while FENCE in out:
        out = out.replace(FENCE, "``" + _ZWSP + "`")
    return out


def code_block(code: str) -> str:
    """A preformatted block.  Slack ignores a language, so none is given."""
    body = escape(clean_text(code).rstrip("\n")) or " "
    return f"{FENCE}\n{body}\n{FENCE}"


def safe_url(url: str) -> str | None:
    """A URL Slack can link to, with the characters that would break ``<url|label>``
    percent-encoded; None for relative paths and other schemes."""
    url = url.strip()
    if not _SAFE_URL.fullmatch(url):
        return None
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~-._").replace("&", "&amp;")


def link(url: str, label: str) -> str:
    """``<url|label>`` with an escaped label, or just the label when the URL is unsafe."""
    target = safe_url(url)
    if target is None:
        return label
    return f"<{target}|{label}>" if label else f"<{target}>"


def markdown_to_mrkdwn(text: str) -> str:
    """Markdown → mrkdwn; malformed or hostile input degrades to escaped text."""
    text = clean_text(text)
    try:
        tokens = parse_tokens(text)
        assert isinstance(tokens, list)
        return _Walker().blocks(tokens)
    except Exception:  # noqa: BLE001 - mistune on pathological input, deep recursion
        return escape(text)


def _wrap(marker: str, inner: str) -> str:
    """``*x*``: Slack formats only within a line and only when the markers touch
    text, so each line is wrapped on its own and surrounding whitespace moves outside
    the markers; an empty span disappears."""
    out: list[str] = []
    for line in inner.split("\n"):
        stripped = line.strip()
        if not stripped:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        trail = line[len(line.rstrip()) :]
        out.append(f"{lead}{marker}{stripped}{marker}{trail}")
    return "\n".join(out)


class _Walker:
    """Renders mistune's AST; `quoted` is set inside a blockquote."""

    def __init__(self) -> None:
        self.quoted = False

    def blocks(self, tokens: Sequence[Token]) -> str:
        parts = (self.block(t) for t in tokens if t["type"] != "blank_line")
        return "\n\n".join(p for p in parts if p)

    def block(self, t: Token) -> str:
        kind = t["type"]
        children: list[Token] = t.get("children", [])
        if kind in ("paragraph", "block_text"):
            return self.inline(children)
        if kind == "heading":
            return _wrap("*", self.inline(children).replace("*", ""))
        if kind == "block_code":
            raw = str(t.get("raw", ""))
            return escape(raw.rstrip("\n")) if self.quoted else code_block(raw)
        if kind == "block_quote":
            was, self.quoted = self.quoted, True
            try:
                inner = self.blocks(children)
            finally:
                self.quoted = was
            if was or not inner:
                return inner
            return "\n".join("> " + line if line.strip() else ">" for line in inner.split("\n"))
        if kind == "list":
            return self.list(t)
        if kind == "thematic_break":
            return RULE
        if kind == "table":
            return self.table(t)
        if children:
            return self.blocks(children)
        return escape(str(t.get("raw", "")).rstrip("\n"))  # block_html, unknown: as text

    def list(self, t: Token) -> str:
        attrs = t.get("attrs", {})
        start = int(attrs.get("start", 1) or 1)
        bullet = "◦ " if attrs.get("depth", 0) else "• "
        lines: list[str] = []
        for i, item in enumerate(t.get("children", [])):
            marker = f"{start + i}. " if attrs.get("ordered") else bullet
            if item["type"] == "task_list_item":
                marker += "☑ " if item.get("attrs", {}).get("checked") else "☐ "
            parts = [self.block(c) for c in item.get("children", []) if c["type"] != "blank_line"]
            body = "\n".join(p for p in parts if p).split("\n")
            if body[0] == FENCE:  # a fence stays alone on its line
                body.insert(0, "")
            lines.append((marker + body[0]).rstrip())
            lines.extend("    " + line if line and line != FENCE else line for line in body[1:])
        return "\n".join(lines)

    def table(self, t: Token) -> str:
        rows: list[list[str]] = []
        for section in t.get("children", []):
            section_rows = (
                [section] if section["type"] == "table_head" else section.get("children", [])
            )
            for row in section_rows:
                rows.append([plain(c.get("children", [])).strip() for c in row.get("children", [])])
        if not rows:
            return ""
        width = [
            max((len(r[i]) for r in rows if i < len(r)), default=0)
            for i in range(max(map(len, rows)))
        ]
        lines = [" │ ".join(c.ljust(width[i]) for i, c in enumerate(r)).rstrip() for r in rows]
        if len(lines) > 1:
            lines.insert(1, "─┼─".join("─" * w for w in width))
        grid = "\n".join(lines)
        return escape(grid) if self.quoted else code_block(grid)

    def inline(self, tokens: Sequence[Token]) -> str:
        out: list[str] = []
        for t in tokens:
            kind = t["type"]
            children: list[Token] = t.get("children", [])
            if kind == "text":
                out.append(escape(unescape(t.get("raw", ""))))
            elif kind in ("softbreak", "linebreak"):
                out.append("\n")
            elif kind == "codespan":
                code = " ".join(str(t.get("raw", "")).split("\n")).replace("`", "ˋ")
                out.append(f"`{escape(code)}`" if code.strip() else escape(code))
            elif kind in ("emphasis", "strong", "strikethrough"):
                marker = {"emphasis": "_", "strong": "*", "strikethrough": "~"}[kind]
                out.append(_wrap(marker, self.inline(children)))
            elif kind == "link":
                label = escape(plain(children)) or escape(str(t.get("attrs", {}).get("url", "")))
                out.append(link(str(t.get("attrs", {}).get("url", "")), label))
            elif kind == "image":
                url = str(t.get("attrs", {}).get("url", ""))
                out.append(link(url, escape("🖼 " + (plain(children) or url))))
            elif children:
                out.append(self.inline(children))
            else:  # inline_html and anything unknown: shown literally
                out.append(escape(str(t.get("raw", ""))))
        return "".join(out)
