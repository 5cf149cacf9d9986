"""Outbound → Slack messages: Block Kit blocks plus a mrkdwn fallback `text`.

Markdown blocks become mrkdwn (`adapters.slack.markdown`) in section blocks, Code
blocks fenced sections, Folded blocks a context block (Slack's quiet, small print),
button rows actions blocks (Allow primary, Deny danger; `value` carries the bridge's
opaque button data, `action_id` is unique per button).  Slack's limits
(`adapters.slack.limits`) are kept by construction: `split_mrkdwn` cuts long text into
sections of at most 3000 characters on a paragraph, line or word boundary, never
inside an ``&amp;`` escape or a ``<…>`` link, closing a code fence at the cut and
reopening it in the next section (an inline code span too); `render` then packs the
sections into messages of at most 50 blocks and 12,000 characters of block text, the
buttons on the last one.  A file becomes an upload payload after the text.

Payloads: text ``{"text", "blocks"}`` (plus ``"markdown"``, the raw Markdown, on
single-block edits: what native streaming sends); file ``{"file": {"name",
"data_b64", "title", "comment"}}``.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from typing import Any, Final

from adapters.mdtext import clean_text
from adapters.messages import Block, Code, Folded, Markdown, Outbound, Rendered
from adapters.slack import limits
from adapters.slack.markdown import FENCE, code_block, escape, markdown_to_mrkdwn

log = logging.getLogger(__name__)

Piece = tuple[str, bool]  # (text, continues the previous line)
_ELLIPSIS: Final = "…"
_TOKEN = re.compile(r"<[^<>\n]*>|&(?:amp|lt|gt);")
_FENCE_COST: Final = len(FENCE) + 1


# --- splitting -------------------------------------------------------------------

TURN_RUNNING = "turn_running"  # payload key: see `_marked`
TURN_ANSWER = "turn_answer"  # payload key: see `_marked`


def _safe_cut(line: str, at: int) -> int:
    """Move a cut back out of an escape or a ``<…>`` link it would fall into."""
    for m in _TOKEN.finditer(line, max(0, at - 4000), min(len(line), at + 4000)):
        if m.start() < at < m.end():
            return m.start() if m.start() > 0 else at
    return at


def _break_line(line: str, width: int, in_code: bool) -> list[Piece]:
    """A line longer than `width` → pieces: word boundaries where possible, an
    inline code span closed and reopened across a cut."""
    out: list[Piece] = []
    reopen = ""
    while len(reopen) + len(line) > width:
        room = width - len(reopen) - 1  # one for a closing backtick
        at = line.rfind(" ", 0, room + 1)
        cut = max(_safe_cut(line, at + 1 if at >= room // 4 else room), 1)
        head, line = reopen + line[:cut], line[cut:]
        odd = not in_code and head.count("`") % 2 == 1
        out.append((head + ("`" if odd else ""), bool(out)))
        reopen = "`" if odd else ""
    out.append((reopen + line, bool(out)))
    return out


def _pieces(text: str, width: int) -> list[Piece]:
    pieces: list[Piece] = []
    in_code = False
    for line in text.split("\n"):
        if line == FENCE:
            in_code = not in_code
        pieces.extend(_break_line(line, width, in_code) if len(line) > width else [(line, False)])
    return pieces


class _Chunker:
    """Greedy packing of pieces into chunks of at most `limit` characters, each with
    balanced fences (closed at a cut inside a code block, reopened after it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[str] = []
        self.items: list[tuple[str, bool]] = []  # (joined text, in code after it)
        self.reopen = False
        self.in_code = False

    def _size(self, extra: int = 0, ends_in_code: bool | None = None) -> int:
        code = self.in_code if ends_in_code is None else ends_in_code
        body = sum(len(t) for t, _ in self.items) + extra
        return body + (_FENCE_COST if self.reopen else 0) + (_FENCE_COST if code else 0)

    def add(self, piece: Piece) -> None:
        text, cont = piece
        toggles = not cont and text == FENCE
        after = self.in_code != toggles
        while self.items:
            joined = text if cont else "\n" + text
            if self._size(len(joined), after) <= self.limit:
                break
            self._cut()
        if not self.items and self.reopen and toggles:
            self.reopen = self.in_code = False  # the block closed at the cut: no empty reopen
            return
        joined = text if cont or not self.items else "\n" + text
        self.items.append((joined, after))
        self.in_code = after

    def _cut(self) -> None:
        """Flush a chunk: at the last blank line outside code if that keeps it at least
        half full, else everything; what follows the cut starts the next chunk."""
        at = len(self.items)
        filled = 0
        best = None
        for i, (t, code) in enumerate(self.items):
            filled += len(t)
            if i and t == "\n" and not code and filled >= self.limit // 2:
                best = i
        if best is not None:
            at = best
        head, tail = self.items[:at], self.items[at + 1 if best is not None else at :]
        ends_in_code = head[-1][1] if head else self.reopen
        self._flush(head, ends_in_code)
        self.reopen = ends_in_code
        self.items = [(t.lstrip("\n") if i == 0 else t, c) for i, (t, c) in enumerate(tail)]
        self.in_code = self.items[-1][1] if self.items else ends_in_code

    def _flush(self, items: list[tuple[str, bool]], ends_in_code: bool) -> None:
        body = "".join(t for t, _ in items).lstrip("\n")
        if self.reopen:
            body = FENCE + "\n" + body
        if ends_in_code:
            body += "\n" + FENCE
        if body.strip() and body.strip() != f"{FENCE}\n{FENCE}":
            self.chunks.append(body)

    def finish(self) -> list[str]:
        if self.items:
            self._flush(self.items, self.in_code)
            self.items = []
        return self.chunks


def split_mrkdwn(text: str, limit: int = limits.MAX_SECTION_TEXT) -> list[str]:
    """Cut mrkdwn into chunks of at most `limit` characters (see the module doc)."""
    if len(text) <= limit:
        return [text] if text.strip() else []
    chunker = _Chunker(limit)
    for piece in _pieces(text, max(8, limit - 2 * _FENCE_COST - 2)):
        chunker.add(piece)
    return chunker.finish()


# --- blocks ----------------------------------------------------------------------


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def block_text(block: dict[str, Any]) -> int:
    """Characters of text a block carries, as Slack's total-text limit counts them."""
    if block.get("type") == "section":
        return len(block["text"]["text"])
    if block.get("type") == "context":
        return sum(len(e.get("text", "")) for e in block.get("elements", ()))
    if block.get("type") == "actions":
        return sum(len(e["text"]["text"]) for e in block.get("elements", ()))
    return 0


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + _ELLIPSIS


def blocks_for(block: Block) -> list[dict[str, Any]]:
    if isinstance(block, Code):
        return [section(c) for c in split_mrkdwn(code_block(block.text))]
    if isinstance(block, Folded):
        summary = escape(clean_text(block.summary).strip())
        body = escape(clean_text(block.body).strip("\n"))
        text = f"*{summary}*" if summary else ""
        if body:
            room = limits.MAX_CONTEXT_TEXT - len(text) - 2
            body = body if len(body) <= room else _ELLIPSIS + body[-(room - 1) :].lstrip()
            text = f"{text}\n{body}" if text else body
        return [context(text)] if text.strip() else []
    if isinstance(block, Markdown):
        return [section(c) for c in split_mrkdwn(markdown_to_mrkdwn(block.text))]
    return []  # pragma: no cover - closed union


def actions_for(msg: Outbound) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r, row in enumerate(msg.buttons):
        elements: list[dict[str, Any]] = []
        for i, b in enumerate(row[: limits.MAX_ACTIONS_ELEMENTS]):
            if not b.data or len(b.data) > limits.MAX_BUTTON_VALUE:
                log.warning("dropping button %r: its data must be 1-2000 characters", b.label)
                continue
            label = _truncate(" ".join(clean_text(b.label).split()) or "·", limits.MAX_BUTTON_TEXT)
            button: dict[str, Any] = {
                "type": "button",
                "text": {"type": "plain_text", "text": label, "emoji": True},
                "value": b.data,
                "action_id": f"tl-{r}-{i}",
            }
            if b.style in ("primary", "danger"):
                button["style"] = b.style
            elements.append(button)
        if elements:
            out.append({"type": "actions", "elements": elements})
    return out


def content_blocks(msg: Outbound, mention: str = "") -> list[dict[str, Any]]:
    """Every text-bearing block of `msg`, each within its own limits; `mention`
    (``<@U…>``) leads the first one."""
    blocks = [b for block in msg.blocks for b in blocks_for(block)]
    if mention:
        first = blocks[0] if blocks else None
        if (
            first
            and first["type"] == "section"
            and len(first["text"]["text"]) + len(mention) < limits.MAX_SECTION_TEXT
        ):
            body = first["text"]["text"]
            blocks[0] = section(f"{mention}{chr(10) if body.startswith(FENCE) else ' '}{body}")
        else:
            blocks.insert(0, section(mention))
    return blocks


def fallback_text(blocks: list[dict[str, Any]]) -> str:
    """The message's `text`: what notifications and screen readers show."""
    parts: list[str] = []
    for b in blocks:
        if b["type"] == "section":
            parts.append(b["text"]["text"])
        elif b["type"] == "context":
            parts.extend(e.get("text", "") for e in b["elements"])
    text = "\n".join(parts).strip()
    if len(text) <= limits.MAX_FALLBACK_TEXT:
        return text or _ELLIPSIS
    room = limits.MAX_FALLBACK_TEXT - _FENCE_COST - 2
    cut = text.rfind("\n", 0, room)
    cut = cut if cut > room // 2 else _safe_cut(text, room)
    head = text[:cut].rstrip()
    if sum(1 for line in head.split("\n") if line == FENCE) % 2:
        head += "\n" + FENCE
    return head + "\n" + _ELLIPSIS


def pack(
    content: list[dict[str, Any]], actions: list[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Blocks → messages within the block-count and total-text limits, the actions
    blocks at the end of the last message (or alone after it, if they don't fit)."""
    messages: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = 0
    for block in content:
        n = block_text(block)
        if cur and (len(cur) >= limits.MAX_BLOCKS or size + n > limits.MAX_BLOCK_TEXT):
            messages.append(cur)
            cur, size = [], 0
        cur.append(block)
        size += n
    extra = sum(block_text(a) for a in actions)
    if (
        actions
        and cur
        and (len(cur) + len(actions) > limits.MAX_BLOCKS or size + extra > limits.MAX_BLOCK_TEXT)
    ):
        messages.append(cur)
        cur = []
    cur.extend(actions)
    if cur:
        messages.append(cur)
    return messages


def _payload(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"text": fallback_text(blocks), "blocks": blocks}


def _marked(msg: Outbound, payload: dict[str, Any]) -> dict[str, Any]:
    """A running turn's status, and a turn's answer, are marked in their payload
    (never sent to Slack): the adapter starts and ends the turn's assistant status and
    native stream by them."""
    if msg.role == "status":
        payload[TURN_RUNNING] = True
    elif msg.role == "final":
        payload[TURN_ANSWER] = True
    return payload


def render(msg: Outbound, *, mention: str = "") -> list[Rendered]:
    """Outbound → chat.postMessage payloads (split to fit), then a file upload."""
    content = content_blocks(msg, mention if msg.mention else "")
    out = [Rendered(_marked(msg, _payload(blocks))) for blocks in pack(content, actions_for(msg))]
    if msg.file is not None:
        comment = escape(clean_text(msg.file.caption))[: limits.MAX_FALLBACK_TEXT]
        if not out and msg.mention and mention:
            comment = f"{mention} {comment}".strip()
        out.append(
            Rendered(
                {
                    "file": {
                        "name": msg.file.name or "file",
                        "data_b64": base64.b64encode(msg.file.data).decode("ascii"),
                        "title": msg.file.name or "file",
                        "comment": comment,
                    }
                }
            )
        )
    elif not out:
        out.append(Rendered(_payload([section(_ELLIPSIS)])))
    return out


def merge_preview(status: dict[str, Any], preview: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A status message with a stream preview added (where native streaming failed):
    its "working" line gives way to the text, its buttons stay last, and the oldest
    lines go first if the whole would not fit."""
    blocks = status.get("blocks") or []
    actions = [b for b in blocks if b.get("type") == "actions"]
    content = [
        b
        for b in blocks
        if b.get("type") != "actions"
        and not (b.get("type") == "section" and b["text"]["text"].startswith("⏳"))
    ]
    content += list(preview)
    room_text = limits.MAX_BLOCK_TEXT - sum(block_text(a) for a in actions)
    while len(content) > 1 and (
        len(content) + len(actions) > limits.MAX_BLOCKS
        or sum(block_text(b) for b in content) > room_text
    ):
        content.pop(0)
    return _payload(content + actions)


def render_edit(msg: Outbound) -> Rendered:
    """Outbound → exactly one message for chat.update: the head of the content that
    fits, an ellipsis marking a cut, the buttons kept.  A file cannot be added by an
    edit and is ignored."""
    actions = actions_for(msg)
    room_blocks = limits.MAX_BLOCKS - len(actions) - 1
    room_text = limits.MAX_BLOCK_TEXT - sum(block_text(a) for a in actions) - 1
    kept: list[dict[str, Any]] = []
    size = 0
    content = content_blocks(msg)
    for block in content:
        n = block_text(block)
        if len(kept) >= room_blocks or size + n > room_text:
            kept.append(context(_ELLIPSIS))
            break
        kept.append(block)
        size += n
    payload = _marked(msg, _payload((kept or [section(_ELLIPSIS)]) + actions))
    texts = [b.text for b in msg.blocks if isinstance(b, Markdown)]
    if not msg.buttons and texts and len(texts) == len(msg.blocks):
        payload["markdown"] = "\n\n".join(texts)
    return Rendered(payload)
