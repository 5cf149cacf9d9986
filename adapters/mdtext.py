"""What every adapter's markdown converter shares: cleaning Claude's text before it
is parsed, parsing it into mistune 3 tokens, and the plain text of inline tokens.

Each platform's `markdown.py` walks the tokens into its own format (Telegram HTML,
Slack mrkdwn, Matrix HTML); only the parts that are the same everywhere live here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

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
