"""Markdown (Claude's text, the bridge's notices) → Telegram's HTML subset.

Telegram understands only b, i, u, s, code, pre (with a nested code carrying
``class="language-x"``), a href, blockquote (optionally expandable), tg-spoiler and
tg-emoji; everything else has to become plain text.  The shared walker
(`adapters.mdtext.Walker`, over mistune 3's AST) lays that out — headings bold
lines, lists "• " / "1. " lines, tables a preformatted grid, images links, raw HTML
in the source *escaped*, never passed through; this module writes each piece in
Telegram's HTML.  ``<``, ``>`` and ``&`` are escaped everywhere, ``"`` in
attributes too, so the output always parses.  Telegram forbids nesting a blockquote
or a pre inside a blockquote, so inside quotes those render as plain text.
"""

from __future__ import annotations

import re

from adapters.mdtext import Token, Walker, clean_text, parse_tokens

_SAFE_URL = re.compile(r"(?:https?://|tg://|mailto:)\S+", re.IGNORECASE)
_LANGUAGE = re.compile(r"[\w+#.-]{1,32}")


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


class _Walker(Walker):
    aligned = True

    def escape(self, text: str) -> str:
        return escape(text)

    def heading(self, inner: str) -> str:
        return f"<b>{inner}</b>"

    def code(self, raw: str, info: str) -> str:
        return code_html(raw, info)

    def grid(self, grid: str) -> str:
        return f"<pre>{escape(grid)}</pre>"

    def quote(self, inner: str) -> str:
        return f"<blockquote>{inner}</blockquote>"

    def item(self, marker: str, body: list[str]) -> list[str]:
        return [marker + body[0], *("   " + line if line else line for line in body[1:])]

    def span(self, kind: str, inner: str) -> str:
        tag = {"emphasis": "i", "strong": "b", "strikethrough": "s"}[kind]
        return f"<{tag}>{inner}</{tag}>" if inner else ""

    def codespan(self, raw: str) -> str:
        return f"<code>{escape(raw)}</code>"

    def link(self, url: str, children: list[Token]) -> str:
        return _linked(url, self.inline(children))

    def image(self, url: str, alt: str) -> str:
        return _linked(url, escape("🖼 " + alt))


def _linked(url: str, label: str) -> str:
    if _SAFE_URL.fullmatch(url) and label:
        return f'<a href="{escape_attr(url)}">{label}</a>'
    return label  # relative paths and odd schemes: Telegram would reject or misread them
