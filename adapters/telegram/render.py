"""Outbound → Telegram messages (`Rendered` payloads for sendMessage / sendDocument).

Blocks become Telegram HTML (Markdown via `adapters.telegram.markdown`, Code as
``<pre><code class="language-x">``, Folded as an expandable blockquote), joined with
blank lines, then `split_html` cuts the result into messages of at most 4096 visible
UTF-16 code units: on a paragraph boundary if one is in reach, else a line, else a
word, else anywhere (but not inside a grapheme's combining marks).  Cutting happens on
the *visible* text, never inside a tag or an entity; tags open at a cut are closed at
the end of one chunk and reopened at the start of the next, so a code block split in
two is a code block in both.  Buttons go on the last text chunk, a file after the
text as its own message.

Text payload: ``{"text", "parse_mode": "HTML", "disable_notification",
"link_preview": False, "reply_markup"?}``; document payload: ``{"document": {"name",
"data_b64", "caption"}, "parse_mode": "HTML", "disable_notification",
"reply_markup"?}``.  `reply_markup` is ``{"inline_keyboard": [[{"text",
"callback_data", "style"?}]]}``.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal

from adapters.mdtext import clean_text
from adapters.messages import Block, Code, Folded, Markdown, Outbound, Rendered
from adapters.telegram.limits import MAX_CALLBACK_DATA, MAX_CAPTION, MAX_TEXT, utf16_len
from adapters.telegram.markdown import code_html, escape, markdown_to_html

log = logging.getLogger(__name__)

_TOKEN = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)\b[^<>]*>|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});"
)
_ELLIPSIS = "…"


# --- splitting -------------------------------------------------------------------


@dataclass(slots=True)
class _Doc:
    """HTML as visible text plus tag events at visible positions (always balanced)."""

    text: str = ""
    events: list[tuple[int, str, str]] = field(
        default_factory=list
    )  # (pos, name, raw); raw "" = close


def _parse(markup: str) -> _Doc:
    doc, parts, stack = _Doc(), [], []
    pos, last = 0, 0
    for m in _TOKEN.finditer(markup):
        literal = markup[last : m.start()]
        parts.append(literal)
        pos += len(literal)
        last = m.end()
        if m.group(2) is None:  # an entity: one visible character (or the text as is)
            decoded = html.unescape(m.group(0))
            parts.append(decoded)
            pos += len(decoded)
        elif not m.group(1):
            stack.append(m.group(2).lower())
            doc.events.append((pos, stack[-1], m.group(0)))
        elif m.group(2).lower() in stack:  # a stray close tag is dropped
            while stack:
                name = stack.pop()
                doc.events.append((pos, name, ""))
                if name == m.group(2).lower():
                    break
    tail = markup[last:]
    parts.append(tail)
    pos += len(tail)
    doc.events.extend((pos, name, "") for name in reversed(stack))
    doc.text = "".join(parts)
    return doc


def _cut_points(text: str, limit: int) -> list[int]:
    """Chunk boundaries in `text` so each chunk is at most `limit` UTF-16 units."""
    units = [0, *accumulate(2 if ord(ch) > 0xFFFF else 1 for ch in text)]
    cuts, start = [0], 0
    while units[-1] - units[start] > limit:
        end = bisect_right(units, units[start] + limit) - 1  # furthest end within the limit
        cut = _best_break(text, start, end, limit)
        cuts.append(cut)
        start = cut
    if start < len(text) or len(cuts) == 1:
        cuts.append(len(text))
    return cuts


def _best_break(text: str, start: int, end: int, limit: int) -> int:
    for sep, min_fill in (("\n\n", limit // 2), ("\n", limit // 4), (" ", max(1, limit // 8))):
        at = text.rfind(sep, start, end)
        if at != -1 and at + len(sep) - start >= min_fill:
            return at + len(sep)
    cut = end  # no boundary in reach: cut anywhere, but keep combining marks and ZWJ joins
    while cut - 1 > start and (
        unicodedata.combining(text[cut]) or text[cut] in "\u200d\ufe0f" or text[cut - 1] == "\u200d"
    ):
        cut -= 1
    return cut


def _render_chunks(doc: _Doc, cuts: list[int]) -> list[str]:
    chunks: list[str] = []
    stack: list[tuple[str, str]] = []
    i, events, text = 0, doc.events, doc.text
    for n, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        final = n == len(cuts) - 2
        out = [raw for _, raw in stack]  # reopen what the previous chunk closed
        pos = a
        while i < len(events):
            at, name, raw = events[i]
            # At the cut itself, closing tags still belong here; an opening tag (and
            # everything after it) starts the next chunk.
            if at > b or (at == b and raw and not final):
                break
            out.append(escape(text[pos:at]))
            pos = at
            if raw:
                stack.append((name, raw))
                out.append(raw)
            else:
                stack.pop()
                out.append(f"</{name}>")
            i += 1
        out.append(escape(text[pos:b]))
        out.extend(f"</{name}>" for name, _ in reversed(stack))
        chunks.append("".join(out))
    return chunks


def split_html(markup: str, limit: int) -> list[str]:
    """Split Telegram HTML into chunks of at most `limit` visible UTF-16 code units each,
    every chunk well-formed; the chunks' visible texts concatenate to the input's."""
    doc = _parse(markup)
    if not doc.text and not doc.events:
        return []
    return _render_chunks(doc, _cut_points(doc.text, max(limit, 4)))


def visible_text(markup: str) -> str:
    return _parse(markup).text


# --- blocks and payloads --------------------------------------------------------


def block_html(block: Block) -> str:
    if isinstance(block, Code):
        return code_html(block.text, block.language)
    if isinstance(block, Folded):
        summary = f"<b>{escape(clean_text(block.summary))}</b>"
        body = escape(clean_text(block.body).strip("\n"))
        return f"<blockquote expandable>{summary}\n{body}</blockquote>" if body else summary
    if isinstance(block, Markdown):
        return markdown_to_html(block.text)
    return escape(str(getattr(block, "text", "")))  # pragma: no cover - closed union


def message_html(msg: Outbound) -> str:
    return "\n\n".join(h for h in (block_html(b) for b in msg.blocks) if h)


def reply_markup(msg: Outbound) -> dict[str, Any] | None:
    rows: list[list[dict[str, str]]] = []
    for row in msg.buttons:
        buttons: list[dict[str, str]] = []
        for b in row:
            if not b.data or len(b.data.encode("utf-8", "replace")) > MAX_CALLBACK_DATA:
                log.warning("dropping button %r: callback data must be 1-64 bytes", b.label)
                continue
            button = {"text": clean_text(b.label) or "·", "callback_data": b.data}
            if b.style in ("primary", "danger"):
                button["style"] = b.style  # Bot API 9.4 button colours; older clients ignore it
            buttons.append(button)
        if buttons:
            rows.append(buttons)
    return {"inline_keyboard": rows} if rows else None


def _text_payload(html_text: str, *, silent: bool, markup: dict[str, Any] | None) -> Rendered:
    payload: dict[str, Any] = {
        "text": html_text,
        "parse_mode": "HTML",
        "disable_notification": silent,
        "link_preview": False,
    }
    if markup is not None:
        payload["reply_markup"] = markup
    return Rendered(payload)


def render(msg: Outbound) -> list[Rendered]:
    """Outbound → sendMessage payloads (split to fit) and a sendDocument payload for
    the file, if any.  Only the first message notifies, so a long answer pings once."""
    chunks = [c for c in split_html(message_html(msg), MAX_TEXT) if visible_text(c).strip()]
    markup = reply_markup(msg)
    out = [
        _text_payload(
            c, silent=not msg.notify or i > 0, markup=markup if i == len(chunks) - 1 else None
        )
        for i, c in enumerate(chunks)
    ]
    if msg.file is not None:
        caption = split_html(escape(clean_text(msg.file.caption)), MAX_CAPTION - 1)
        doc: dict[str, Any] = {
            "document": {
                "name": msg.file.name,
                "data_b64": base64.b64encode(msg.file.data).decode("ascii"),
                "caption": caption[0] + (_ELLIPSIS if len(caption) > 1 else "") if caption else "",
            },
            "parse_mode": "HTML",
            "disable_notification": not msg.notify or bool(out),
        }
        if not out and markup is not None:
            doc["reply_markup"] = markup
        out.append(Rendered(doc))
    elif not out:
        out.append(_text_payload(_ELLIPSIS, silent=not msg.notify, markup=markup))
    return out


def render_edit(msg: Outbound, keep: Literal["head", "tail"] = "head") -> Rendered:
    """Outbound → exactly one message for editMessageText: when too long, the start
    (`head`) or the end (`tail`, for a stream preview) is kept and an ellipsis marks
    the cut.  A file cannot be added by an edit and is ignored."""
    markup_html = message_html(msg)
    doc = _parse(markup_html)
    if utf16_len(doc.text) <= MAX_TEXT:
        text = markup_html if doc.text.strip() else _ELLIPSIS
    elif keep == "head":
        cuts = _cut_points(doc.text, MAX_TEXT - 2)
        text = _render_chunks(doc, cuts)[0] + "\n" + _ELLIPSIS
    else:
        reversed_cuts = _cut_points(doc.text[::-1], MAX_TEXT - 2)
        start = len(doc.text) - reversed_cuts[1]
        text = _ELLIPSIS + "\n" + _render_chunks(doc, [0, start, len(doc.text)])[1]
    return _text_payload(text, silent=True, markup=reply_markup(msg))
