"""What every adapter's markdown converter shares: cleaning Claude's text before it
is parsed, parsing it into mistune 3 tokens, the plain text of inline tokens, and the
token walker (`Walker`) that Slack's and Telegram's converters subclass.

The walker knows mistune's AST and the layout every chat format without Markdown
needs (headings as lines, lists as "• " / "1. " lines, tables as a preformatted
grid, no quote or code block inside a quote); a subclass says how each piece is
written in its format (Telegram HTML, Slack mrkdwn).  Matrix speaks HTML and uses
mistune's own renderer instead.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Final

import mistune
from mistune.util import unescape

Token = dict[str, Any]

# An AST parser (no renderer): the adapters walk the tokens themselves.
parse_tokens = mistune.create_markdown(
    renderer=None, plugins=["strikethrough", "table", "task_lists"]
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Drop what chat platforms refuse or mangle: C0 control characters other than tab
    and newline, and lone UTF-16 surrogates (not encodable as UTF-8, so they would make
    the whole message unsendable); normalise line endings."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def plain(tokens: Sequence[Token]) -> str:
    """The text content of inline tokens, unformatted (table cells, labels, alt text)."""
    out: list[str] = []
    for t in tokens:
        if "children" in t:
            out.append(plain(t["children"]))
        elif t["type"] in ("softbreak", "linebreak"):
            out.append(" ")
        else:
            out.append(unescape(t.get("raw", "")) if t["type"] == "text" else t.get("raw", ""))
    return "".join(out)


RULE: Final = "———"  # a thematic break


class Walker(ABC):
    """Renders mistune's AST into one chat format.  `quoted` is set inside a
    blockquote, where neither a nested quote nor a code block can be shown: their
    content is rendered as escaped text there."""

    def __init__(self) -> None:
        self.quoted = False

    # --- the format ------------------------------------------------------------------

    @abstractmethod
    def escape(self, text: str) -> str:
        """Text that must show literally."""

    @abstractmethod
    def heading(self, inner: str) -> str:
        """A heading line from its rendered content."""

    @abstractmethod
    def code(self, raw: str, info: str) -> str:
        """A fenced or indented code block outside a quote (`info`: its language)."""

    @abstractmethod
    def grid(self, grid: str) -> str:
        """A table, laid out as text, outside a quote."""

    @abstractmethod
    def quote(self, inner: str) -> str:
        """An outermost blockquote around its (non-empty) rendered content."""

    @abstractmethod
    def item(self, marker: str, body: list[str]) -> list[str]:
        """A list item's lines: `marker` ("• ", "1. ", with a task box) and its content
        lines, continuation lines indented."""

    @abstractmethod
    def span(self, kind: str, inner: str) -> str:
        """``emphasis``, ``strong`` or ``strikethrough`` around rendered content."""

    @abstractmethod
    def codespan(self, raw: str) -> str:
        """Inline code."""

    @abstractmethod
    def link(self, url: str, children: list[Token]) -> str:
        """A link with its label's tokens."""

    @abstractmethod
    def image(self, url: str, alt: str) -> str:
        """An image, shown as a link labelled with its alt text (or URL)."""

    aligned = False  # whether table cells follow the column's alignment

    # --- the walk --------------------------------------------------------------------

    def blocks(self, tokens: Sequence[Token]) -> str:
        parts = (self.block(t) for t in tokens if t["type"] != "blank_line")
        return "\n\n".join(p for p in parts if p)

    def block(self, t: Token) -> str:
        kind = t["type"]
        children: list[Token] = t.get("children", [])
        if kind in ("paragraph", "block_text"):
            return self.inline(children)
        if kind == "heading":
            return self.heading(self.inline(children))
        if kind == "block_code":
            raw = str(t.get("raw", ""))
            if self.quoted:
                return self.escape(raw.rstrip("\n"))
            return self.code(raw, str(t.get("attrs", {}).get("info") or ""))
        if kind == "block_quote":
            was, self.quoted = self.quoted, True
            try:
                inner = self.blocks(children)
            finally:
                self.quoted = was
            return inner if was or not inner else self.quote(inner)
        if kind == "list":
            return self.list(t)
        if kind == "thematic_break":
            return RULE
        if kind == "table":
            return self.table(t)
        if children:
            return self.blocks(children)
        return self.escape(str(t.get("raw", "")).rstrip("\n"))  # block_html, unknown: as text

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
            lines.extend(self.item(marker, "\n".join(p for p in parts if p).split("\n")))
        return "\n".join(lines)

    def table(self, t: Token) -> str:
        rows: list[list[tuple[str, str]]] = []  # (text, align) per cell
        for section in t.get("children", []):
            section_rows = (
                [section] if section["type"] == "table_head" else section.get("children", [])
            )
            for row in section_rows:
                rows.append(
                    [
                        (
                            plain(c.get("children", [])).strip(),
                            (c.get("attrs", {}).get("align") or "") if self.aligned else "",
                        )
                        for c in row.get("children", [])
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
        grid = "\n".join(lines)
        return self.escape(grid) if self.quoted else self.grid(grid)

    def inline(self, tokens: Sequence[Token]) -> str:
        out: list[str] = []
        for t in tokens:
            kind = t["type"]
            children: list[Token] = t.get("children", [])
            if kind == "text":
                out.append(self.escape(unescape(t.get("raw", ""))))
            elif kind in ("softbreak", "linebreak"):
                out.append("\n")
            elif kind == "codespan":
                out.append(self.codespan(str(t.get("raw", ""))))
            elif kind in ("emphasis", "strong", "strikethrough"):
                out.append(self.span(kind, self.inline(children)))
            elif kind == "link":
                out.append(self.link(str(t.get("attrs", {}).get("url", "")), children))
            elif kind == "image":
                url = str(t.get("attrs", {}).get("url", ""))
                out.append(self.image(url, plain(children) or url))
            elif children:
                out.append(self.inline(children))
            else:  # inline_html and anything unknown: shown literally
                out.append(self.escape(str(t.get("raw", ""))))
        return "".join(out)
