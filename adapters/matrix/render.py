"""Outbound → Matrix `m.room.message` contents (`Rendered` payloads for the outbox).

Every message has a plain `body` (the Markdown source, as Element writes it) and
`format: org.matrix.custom.html` with a `formatted_body` (`adapters.matrix.markdown`):
code and diffs as ``<pre><code class="language-…">``, folded tool output as
``<details><summary>``.  `notify=False` messages are `m.notice` (the default push
rules do not notify for notices), notifying ones `m.text`; a mention adds
`m.mentions` with the owners and a pill line.  Buttons become a hint line plus
reaction keys (`adapters.matrix.buttons`), on the first message of a split so that the
edit that decides a prompt (which targets the first message) also retires them.

Size: a message's content JSON stays within `MAX_CONTENT_BYTES`.  A message that fits
is rendered whole; a longer one is cut into segments — between paragraphs, lines,
words, never inside a fenced code block without closing it and reopening it in the
next part — and the segments are packed greedily into as few messages as fit.

Payload: ``{"content": {msgtype, body, format, formatted_body, m.mentions?},
"txn": <random id, reused on retries so the homeserver sends each message once>,
"buttons"?: [[key, data], …]}``; a file: ``{"file": {name, mime, data_b64},
"txn", "notify"}``.  Thread relations are added when sending, not stored here.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from adapters.matrix.buttons import assign_keys, hint
from adapters.matrix.limits import MAX_CONTENT_BYTES, MAX_EDIT_CONTENT_BYTES
from adapters.matrix.markdown import code_html, escape, escape_attr, markdown_to_html
from adapters.mdtext import clean_text
from adapters.messages import Block, Code, FileOut, Folded, Outbound, Rendered

HTML_FORMAT = "org.matrix.custom.html"
OVERHEAD = 400  # msgtype, format, keys, mentions: what a content adds around its texts
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_ELLIPSIS = "…"
Make = Callable[[str], "Segment"]


@dataclass(frozen=True, slots=True)
class Segment:
    plain: str
    html: str

    @property
    def cost(self) -> int:
        return json_size(self.plain) + json_size(self.html) + 4


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def txn() -> str:
    return secrets.token_hex(12)


# --- blocks → segments ----------------------------------------------------------


def _markdown_segment(text: str) -> Segment:
    return Segment(text, markdown_to_html(text))


def _code_segment(code: str, language: str) -> Segment:
    fence = "````" if "```" in code else "```"
    return Segment(f"{fence}{language}\n{code.rstrip(chr(10))}\n{fence}", code_html(code, language))


def _folded_segment(summary: str, body: str) -> Segment:
    body = clean_text(body).strip("\n")
    html = f"<details><summary>{escape(clean_text(summary))}</summary>"
    if body:
        html += f"<pre><code>{escape(body)}\n</code></pre>"
    return Segment(f"{summary}\n{body}".strip(), html + "</details>")


def _halves(text: str) -> tuple[str, str]:
    """Cut near the middle: at a line break if there is one, else a space, else
    anywhere."""
    mid = len(text) // 2
    for sep in ("\n", " "):
        before, after = text.rfind(sep, 0, mid + 1), text.find(sep, mid)
        best = [p for p in (before, after) if 0 < p < len(text) - len(sep)]
        if best:
            at = min(best, key=lambda p: abs(p - mid))
            return text[:at], text[at + len(sep) :]
    return text[:mid], text[mid:]


def _fit(text: str, make: Make, limit: int) -> list[Segment]:
    """`make(text)`, halved until every part fits (a last resort: parts are small)."""
    seg = make(text)
    if seg.cost <= limit or len(text) < 2:
        return [seg]
    left, right = _halves(text)
    return [*_fit(left, make, limit), *_fit(right, make, limit)]


def _by_lines(text: str, make: Make, limit: int) -> list[Segment]:
    """Consecutive lines packed greedily into segments of at most `limit`."""
    out: list[Segment] = []
    lines: list[str] = []
    size = 0
    for line in text.split("\n"):
        cost = 2 * json_size(line) + 8  # the line in the body and (escaped) in the HTML
        if lines and size + cost > limit:
            out += _fit("\n".join(lines), make, limit)
            lines, size = [], 0
        lines.append(line)
        size += cost
    if lines:
        out += _fit("\n".join(lines), make, limit)
    return out


def _markdown_units(text: str) -> list[tuple[str, str]]:
    """Markdown as paragraphs ("md", text) and fenced code blocks (info, code)."""
    units: list[tuple[str, str]] = []
    lines: list[str] = []
    fence: tuple[str, str] | None = None  # (marker, info) while inside a fence

    def flush_paragraphs() -> None:
        units.extend(("md", p) for p in "\n".join(lines).split("\n\n") if p.strip())

    for line in text.split("\n"):
        m = _FENCE.match(line)
        if fence is None and m is not None and not (m.group(1)[0] == "`" and "`" in m.group(2)):
            flush_paragraphs()
            lines, fence = [], (m.group(1), m.group(2).strip())
        elif (
            fence is not None
            and m is not None
            and m.group(1)[0] == fence[0][0]
            and len(m.group(1)) >= len(fence[0])
            and not m.group(2).strip()
        ):
            units.append((f"code:{fence[1]}", "\n".join(lines)))
            lines, fence = [], None
        else:
            lines.append(line)
    if fence is not None:
        units.append((f"code:{fence[1]}", "\n".join(lines)))
    else:
        flush_paragraphs()
    return units


def block_segments(block: Block, limit: int) -> list[Segment]:
    """One segment for a block that fits, else the pieces it splits into."""
    if isinstance(block, Code):
        return _by_lines(block.text, partial(_code_segment, language=block.language), limit)
    if isinstance(block, Folded):
        seg = _folded_segment(block.summary, block.body)
        body = block.body
        while seg.cost > limit and body:
            body = body[: len(body) * 2 // 3]
            seg = _folded_segment(block.summary, body + _ELLIPSIS)
        return [seg]
    text = clean_text(block.text)
    whole = _markdown_segment(text)
    if whole.cost <= limit:
        return [whole]
    out: list[Segment] = []
    for kind, unit in _markdown_units(text):
        if kind.startswith("code:"):
            out += _by_lines(unit, partial(_code_segment, language=kind[5:]), limit)
        else:
            seg = _markdown_segment(unit)
            out += [seg] if seg.cost <= limit else _by_lines(unit, _markdown_segment, limit)
    return out


# --- segments → contents --------------------------------------------------------


def _pack(segments: Sequence[Segment], limit: int) -> list[list[Segment]]:
    groups: list[list[Segment]] = []
    size = limit + 1
    for seg in segments:
        if size + seg.cost > limit and (not groups or groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(seg)
        size += seg.cost
    return groups


def content_of(segments: Sequence[Segment], *, notify: bool) -> dict[str, Any]:
    return {
        "msgtype": "m.text" if notify else "m.notice",
        "body": "\n\n".join(s.plain for s in segments),
        "format": HTML_FORMAT,
        "formatted_body": "\n".join(s.html for s in segments),
    }


def mention_segment(user_ids: Sequence[str]) -> Segment:
    pills = [f'<a href="https://matrix.to/#/{escape_attr(u)}">{escape(u)}</a>' for u in user_ids]
    return Segment(" ".join(user_ids), " ".join(pills))


def _extras(msg: Outbound, mentions: Sequence[str]) -> tuple[list[Segment], list[Segment], Any]:
    """(segments before the text, after the text, keyed buttons) of the first message."""
    keyed = assign_keys([b for row in msg.buttons for b in row])
    head = [mention_segment(mentions)] if msg.mention and mentions else []
    tail = [Segment(hint(keyed), f"<p><em>{escape(hint(keyed))}</em></p>")] if keyed else []
    return head, tail, keyed


def _payload(
    content: dict[str, Any], msg: Outbound, mentions: Sequence[str], keyed: Any
) -> Rendered:
    if msg.mention and mentions:
        content["m.mentions"] = {"user_ids": list(mentions)}
    payload: dict[str, Any] = {"content": content, "txn": txn()}
    if keyed:
        payload["buttons"] = [[key, data] for key, _, data in keyed]
    return Rendered(payload)


def file_payload(file: FileOut, *, notify: bool) -> Rendered:
    mime = "text/x-diff" if file.name.endswith((".diff", ".patch")) else None
    mime = mime or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    data = {"name": file.name or "file", "mime": mime, "caption": clean_text(file.caption)}
    data["data_b64"] = base64.b64encode(file.data).decode("ascii")
    return Rendered({"file": data, "txn": txn(), "notify": notify})


def render(msg: Outbound, mentions: Sequence[str] = ()) -> list[Rendered]:
    """Outbound → message contents (split to fit), then the file, if any.  Only the
    first message notifies, so a long answer pings once."""
    head, tail, keyed = _extras(msg, mentions)
    reserve = sum(s.cost for s in head + tail) + OVERHEAD
    limit = MAX_CONTENT_BYTES - reserve
    segments = [s for b in msg.blocks for s in block_segments(b, limit) if s.plain.strip()]
    groups = _pack(segments, limit) if segments else ([[]] if head or tail else [])
    out: list[Rendered] = []
    for i, group in enumerate(groups):
        segs = [*head, *group, *tail] if i == 0 else group
        content = content_of(segs, notify=msg.notify and i == 0)
        out.append(
            _payload(content, msg, mentions, keyed)
            if i == 0
            else _payload(content, Outbound(), (), ())
        )
    if msg.file is not None:
        out.append(file_payload(msg.file, notify=msg.notify and not out))
    elif not out:
        out.append(
            _payload(
                content_of([Segment(_ELLIPSIS, _ELLIPSIS)], notify=msg.notify), msg, mentions, ()
            )
        )
    return out


def render_edit(msg: Outbound, mentions: Sequence[str] = ()) -> Rendered:
    """Outbound → exactly one content for an `m.replace` edit: when too long, the
    start is kept and an ellipsis marks the cut.  A file cannot be added by an edit."""
    head, tail, keyed = _extras(msg, mentions)
    cut = Segment(_ELLIPSIS, f"<p>{_ELLIPSIS}</p>")
    limit = MAX_EDIT_CONTENT_BYTES - sum(s.cost for s in head + tail) - OVERHEAD - cut.cost
    segments = [s for b in msg.blocks for s in block_segments(b, limit) if s.plain.strip()]
    kept, size = [], 0
    for seg in segments:
        if size + seg.cost > limit:
            kept.append(cut)
            break
        kept.append(seg)
        size += seg.cost
    body = [*head, *(kept or [Segment(_ELLIPSIS, _ELLIPSIS)]), *tail]
    return _payload(content_of(body, notify=False), msg, mentions, keyed)
