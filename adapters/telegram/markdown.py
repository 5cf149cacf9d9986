"""Markdown (Claude's text, the bridge's notices) → Telegram's HTML subset.

Telegram understands only b, i, u, s, code, pre (with a nested code carrying
``class="language-x"``), a href, blockquote (optionally expandable), tg-spoiler and
tg-emoji; everything else has to become plain text.  We parse with mistune 3 (its AST,
with the strikethrough, table and task-list plugins) and walk the tree ourselves:
headings become bold lines, lists become "• " / "1. " lines, tables become a
preformatted grid, images become links, and raw HTML in the source is *escaped*,
never passed through.  ``<``, ``>`` and ``&`` are escaped everywhere, ``"`` in
attributes too, so the output always parses.  Telegram forbids nesting a blockquote
or a pre inside a blockquote, so inside quotes those render as plain text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from mistune.util import unescape

from adapters.mdtext import Token, clean_text, parse_tokens, plain

_SAFE_URL = re.compile(r"(?:https?://|tg://|mailto:)\S+", re.IGNORECASE)
_LANGUAGE = re.compile(r"[\w+#.-]{1,32}")
RULE: Final = "———"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def code_html(code: str, language: str = "") -> str:
    """A preformatted block; the language only when Telegram would accept it."""
    body = escape(clean_text(code).rstrip("\n"))
    lang = language.split()[0] if language.split() else ""
    if lang and _LANGUAGE.fullmatch(lang):
        return f'<pre><code class="language-{escape_attr(lang)}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


def markdown_to_html(text: str) -> str:
    """Markdown → Telegram HTML; malformed or hostile input degrades to escaped text."""
    text = clean_text(text)
    try:
        tokens = parse_tokens(text)
        assert isinstance(tokens, list)
        return _Walker().blocks(tokens)
    except Exception:  # noqa: BLE001 - mistune on pathological input, deep recursion
        return escape(text)


class _Walker:
    """Renders mistune's AST.  `quoted` is set inside a blockquote (no nested quote/pre)."""

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
            return f"<b>{self.inline(children)}</b>"
        if kind == "block_code":
            raw = str(t.get("raw", ""))
            if self.quoted:
                return escape(raw.rstrip("\n"))
            return code_html(raw, str(t.get("attrs", {}).get("info") or ""))
        if kind == "block_quote":
            if self.quoted:
                return self.blocks(children)
            self.quoted = True
            try:
                inner = self.blocks(children)
            finally:
                self.quoted = False
            return f"<blockquote>{inner}</blockquote>" if inner else ""
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
            lines.append(marker + body[0])
            lines.extend("   " + line if line else line for line in body[1:])
        return "\n".join(lines)

    def table(self, t: Token) -> str:
        rows: list[list[tuple[str, str]]] = []  # (text, align) per cell
        for section in t.get("children", []):
            section_rows = (
                [section] if section["type"] == "table_head" else section.get("children", [])
            )
            for row in section_rows:
                cells = row.get("children", [])
                rows.append(
                    [
                        (
                            plain(c.get("children", [])).strip(),
                            c.get("attrs", {}).get("align") or "",
                        )
                        for c in cells
                    ]
                )
        if not rows:
            return ""
        width = [
            max((len(r[i][0]) for r in rows if i < len(r)), default=0)
            for i in range(max(map(len, rows)))
        ]
        pad = {"right": str.rjust, "center": str.center}
        lines = [
            " │ ".join(pad.get(a, str.ljust)(c, width[i]) for i, (c, a) in enumerate(r)).rstrip()
            for r in rows
        ]
        if len(lines) > 1:
            lines.insert(1, "─┼─".join("─" * w for w in width))
        grid = escape("\n".join(lines))
        return grid if self.quoted else f"<pre>{grid}</pre>"

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
                out.append(f"<code>{escape(t.get('raw', ''))}</code>")
            elif kind in ("emphasis", "strong", "strikethrough"):
                tag = {"emphasis": "i", "strong": "b", "strikethrough": "s"}[kind]
                inner = self.inline(children)
                out.append(f"<{tag}>{inner}</{tag}>" if inner else "")
            elif kind in ("link", "image"):
                url = str(t.get("attrs", {}).get("url", ""))
                label = (
                    self.inline(children)
                    if kind == "link"
                    else escape("🖼 " + (plain(children) or url))
                )
                if _SAFE_URL.fullmatch(url) and label:
                    out.append(f'<a href="{escape_attr(url)}">{label}</a>')
                else:  # relative paths and odd schemes: Telegram would reject or misread them
                    out.append(label)
            elif children:
                out.append(self.inline(children))
            else:  # inline_html and anything unknown: shown literally
                out.append(escape(str(t.get("raw", ""))))
        return "".join(out)
