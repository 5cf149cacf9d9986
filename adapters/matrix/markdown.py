"""Markdown (Claude's text, the bridge's notices) → the HTML subset Matrix clients show.

Matrix messages carry `format: org.matrix.custom.html` with a `formatted_body`
restricted to a safe tag list (spec: "m.room.message msgtypes", m.text): p, br,
strong/b, em/i, del, code, pre (a nested code with ``class="language-x"``), a href,
ul/ol/li, h1–h6, blockquote, hr, table markup, details/summary, span, sub/sup.  We
render with mistune 3's HTML renderer, with raw HTML in the source *escaped* (never
passed through), images turned into links (Matrix `img` only takes `mxc://` URLs),
unsafe link schemes dropped, code-block languages checked, and single newlines kept as
line breaks (as Element does; Claude's and our own line-oriented text relies on it).
`escape` / `code_html` are shared with `render.py` for blocks that are not Markdown.
"""

from __future__ import annotations

import re
from typing import Any, Final

import mistune

from adapters.mdtext import clean_text

_LANGUAGE = re.compile(r"[\w+#.-]{1,32}")
_SAFE_URL = re.compile(r"(?:https?://|mailto:|matrix:|mxc://)\S*", re.IGNORECASE)
_TAG: Final = re.compile(r"<[^>]+>")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attr(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def language_of(info: str) -> str:
    words = info.split()
    return words[0] if words and _LANGUAGE.fullmatch(words[0]) else ""


def code_html(code: str, language: str = "") -> str:
    """A preformatted block, highlighted by Element where the language is given."""
    body = escape(clean_text(code))
    if body and not body.endswith("\n"):
        body += "\n"
    lang = language_of(language)
    if lang:
        return f'<pre><code class="language-{escape_attr(lang)}">{body}</code></pre>'
    return f"<pre><code>{body}</code></pre>"


class _MatrixHTML(mistune.HTMLRenderer):
    """mistune's renderer with Matrix's restrictions."""

    def __init__(self) -> None:
        super().__init__(escape=True)

    def softbreak(self) -> str:
        return "<br />\n"

    def image(self, text: str, url: str, title: str | None = None) -> str:
        return self.link(text or url, url, title)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        if not _SAFE_URL.fullmatch(url):
            return text
        return f'<a href="{escape_attr(url)}">{text}</a>'

    def block_code(self, code: str, info: str | None = None) -> str:
        return code_html(code, info or "") + "\n"

    def block_html(self, html: str) -> str:
        return f"<p>{escape(html)}</p>\n"

    def inline_html(self, html: str) -> str:
        return escape(html)


_markdown: Any = mistune.create_markdown(renderer=_MatrixHTML(), plugins=["strikethrough", "table"])


def markdown_to_html(text: str) -> str:
    """Markdown → Matrix HTML; pathological input degrades to escaped text."""
    text = clean_text(text)
    try:
        out = _markdown(text)
    except Exception:  # noqa: BLE001 - mistune on pathological input, deep recursion
        return escape(text).replace("\n", "<br />\n")
    return str(out).strip("\n")


def html_to_text(html: str) -> str:
    """The visible text of our own HTML, for checks and logs (not a general parser)."""
    text = html.replace("<br />", "\n")
    return (
        _TAG.sub("", text)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&amp;", "&")
    )
