"""Markdown (Claude's text, the bridge's notices) → Slack mrkdwn.

Slack's mrkdwn is not Markdown: bold is ``*x*``, italics ``_x_``, strike ``~x~``,
links ``<url|label>``, code ``` `x` ``` and fenced blocks, quotes ``> `` per line, and
no headings, lists or tables.  The shared walker (`adapters.mdtext.Walker`, over
mistune 3's AST) lays those out as text — headings bold lines, lists "• " / "1. "
lines, tables a preformatted grid, images links; this module says how each is
written in mrkdwn.  ``&``, ``<`` and ``>`` are escaped everywhere (Slack's only escapes), so text
can never become a mention (``<!channel>``) or a link by accident; a run of three
backticks outside our own fences is broken with a zero-width space so it cannot open
a code block.  Fences we emit always stand on lines of their own, which is what the
splitter in `adapters.slack.render` relies on.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

from adapters.mdtext import Token, Walker, clean_text, parse_tokens, plain

FENCE: Final = "```"
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


class _Walker(Walker):
    def escape(self, text: str) -> str:
        return escape(text)

    def heading(self, inner: str) -> str:
        return _wrap("*", inner.replace("*", ""))

    def code(self, raw: str, info: str) -> str:
        return code_block(raw)

    def grid(self, grid: str) -> str:
        return code_block(grid)

    def quote(self, inner: str) -> str:
        return "\n".join("> " + line if line.strip() else ">" for line in inner.split("\n"))

    def item(self, marker: str, body: list[str]) -> list[str]:
        if body[0] == FENCE:  # a fence stays alone on its line
            body.insert(0, "")
        rest = ("    " + line if line and line != FENCE else line for line in body[1:])
        return [(marker + body[0]).rstrip(), *rest]

    def span(self, kind: str, inner: str) -> str:
        return _wrap({"emphasis": "_", "strong": "*", "strikethrough": "~"}[kind], inner)

    def codespan(self, raw: str) -> str:
        code = " ".join(raw.split("\n")).replace("`", "ˋ")
        return f"`{escape(code)}`" if code.strip() else escape(code)

    def link(self, url: str, children: list[Token]) -> str:
        return link(url, escape(plain(children)) or escape(url))

    def image(self, url: str, alt: str) -> str:
        return link(url, escape("🖼 " + alt))
