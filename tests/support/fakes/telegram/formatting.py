"""Entity parsing by `parse_mode` (HTML, MarkdownV2, Markdown or plain text), the
fake's single entry point for what a message shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .entities import Parsed, finish
from .html_mode import parse_html
from .markdown_mode import parse_markdown, parse_markdown_v2


def parse_text(
    text: str,
    parse_mode: str | None,
    entities: Iterable[Mapping[str, Any]] | None = None,
    *,
    strict_ampersand: bool = True,
) -> Parsed:
    """Visible text + entities for `text` sent with `parse_mode` (or explicit `entities`)."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return parse_html(text, strict_ampersand=strict_ampersand)
    if mode == "markdownv2":
        return parse_markdown_v2(text)
    if mode == "markdown":
        return parse_markdown(text)
    if mode:
        raise ValueError(parse_mode)
    return finish(text, [dict(e) for e in entities or ()])
