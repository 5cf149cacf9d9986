"""`parse_mode=MarkdownV2` (reserved characters must be escaped) and legacy `Markdown`."""

from __future__ import annotations

import re
from typing import Any

from .entities import EntityParseError, Parsed, Utf16Writer, byte_offset, finish

_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"

_MD_TYPE_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_url": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def parse_markdown_v2(text: str) -> Parsed:
    """Parse MarkdownV2 the way tdlib does (blockquotes approximated per line)."""
    out = Utf16Writer()
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    quote: dict[str, Any] | None = None
    n = len(text)
    i = 0

    def reserved_error(ch: str) -> EntityParseError:
        return EntityParseError(
            f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
        )

    def close_quote(end_u16: int) -> None:
        nonlocal quote
        if quote is not None and end_u16 > quote["u16"]:
            entities.append(
                {
                    "type": "expandable_blockquote" if quote["expandable"] else "blockquote",
                    "offset": quote["u16"],
                    "length": end_u16 - quote["u16"],
                }
            )
        quote = None

    while i < n:
        if i == 0 or text[i - 1] == "\n":
            if text.startswith("**>", i) and quote is None:
                quote = {"u16": out.u16, "expandable": True}
                i += 3
            elif text[i] == ">":
                if quote is None:
                    quote = {"u16": out.u16, "expandable": False}
                i += 1
            elif quote is not None:
                close_quote(out.u16 - 1 if i > 0 else out.u16)  # without the newline
            if i >= n:
                break
        c = text[i]
        if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        reserved = _MDV2_RESERVED
        if stack and stack[-1]["type"] in ("code", "pre"):
            reserved = "`"
        if c not in reserved:
            out.add(c)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        top = stack[-1]["type"] if stack else None
        if (
            quote is not None
            and quote["expandable"]
            and top != "spoiler"
            and text.startswith("||", i)
            and (i + 2 == n or text[i + 2] == "\n")
        ):
            close_quote(out.u16)
            i += 2
            continue
        is_end = (
            (top == "bold" and c == "*")
            or (top == "italic" and c == "_" and nxt != "_")
            or (top == "code" and c == "`")
            or (top == "pre" and text.startswith("```", i))
            or (top in ("text_url", "custom_emoji") and c == "]")
            or (top == "underline" and text.startswith("__", i))
            or (top == "strikethrough" and c == "~")
            or (top == "spoiler" and text.startswith("||", i))
        )
        if not is_end:
            begin = i
            arg = ""
            if c == "_":
                if nxt == "_":
                    etype = "underline"
                    i += 1
                else:
                    etype = "italic"
            elif c == "*":
                etype = "bold"
            elif c == "~":
                etype = "strikethrough"
            elif c == "|":
                if nxt != "|":
                    raise reserved_error(c)
                etype = "spoiler"
                i += 1
            elif c == "[":
                etype = "text_url"
            elif c == "`":
                if text.startswith("```", i):
                    etype = "pre"
                    i += 3
                    lang_end = i
                    while lang_end < n and not text[lang_end].isspace() and text[lang_end] != "`":
                        lang_end += 1
                    if i != lang_end and lang_end < n and text[lang_end] != "`":
                        arg = text[i:lang_end]
                        i = lang_end
                    if i < n and text[i] in "\r\n":
                        if i + 1 < n and text[i + 1] in "\r\n" and text[i] != text[i + 1]:
                            i += 2
                        else:
                            i += 1
                    i -= 1
                else:
                    etype = "code"
            elif c == "!":
                if nxt != "[":
                    raise reserved_error(c)
                etype = "custom_emoji"
                i += 1
            else:
                raise reserved_error(c)
            stack.append({"type": etype, "u16": out.u16, "byte": byte_offset(text, begin), "arg": arg})
            i += 1
            continue
        ent = stack.pop()
        etype = ent["type"]
        extra: dict[str, Any] = {}
        if etype in ("text_url", "custom_emoji"):
            if nxt != "(":
                url = out.text()[len(_u16_prefix(out.text(), ent["u16"])) :]
            else:
                i += 2
                url_begin = i
                buf: list[str] = []
                while i < n and text[i] != ")":
                    if text[i] == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
                        buf.append(text[i + 1])
                        i += 2
                        continue
                    buf.append(text[i])
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Can't find end of a URL at byte offset {byte_offset(text, url_begin)}"
                    )
                url = "".join(buf)
            if etype == "custom_emoji":
                m = re.fullmatch(r"tg://emoji\?id=(\d+)", url)
                if not m:
                    raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                extra["custom_emoji_id"] = m.group(1)
            else:
                extra["url"] = url
            i += 1
        elif etype == "pre":
            if ent["arg"]:
                extra["language"] = ent["arg"]
            i += 3
        elif etype in ("underline", "spoiler"):
            i += 2
        else:
            i += 1
        length = out.u16 - ent["u16"]
        if length > 0 and (etype != "text_url" or extra.get("url")):
            entities.append({"type": etype, "offset": ent["u16"], "length": length, **extra})
    if stack:
        ent = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MD_TYPE_NAMES[ent['type']]} entity at byte offset {ent['byte']}"
        )
    close_quote(out.u16)
    return finish(out.text(), entities)


def _u16_prefix(s: str, u16: int) -> str:
    """The longest prefix of s whose UTF-16 length is u16."""
    count = 0
    for k, ch in enumerate(s):
        if count >= u16:
            return s[:k]
        count += 2 if ord(ch) > 0xFFFF else 1
    return s


def parse_markdown(text: str) -> Parsed:
    """Parse legacy Markdown (parse_mode="Markdown") the way tdlib does."""
    out = Utf16Writer()
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        if c not in "_*`[":
            out.add(c)
            i += 1
            continue
        begin = i
        end_char = "]" if c == "[" else c
        is_pre = False
        language = ""
        i += 1
        if c == "`" and text.startswith("``", i):
            i += 2
            is_pre = True
            lang_end = i
            while lang_end < n and not text[lang_end].isspace() and text[lang_end] != "`":
                lang_end += 1
            if i != lang_end and lang_end < n and text[lang_end] != "`":
                language = text[i:lang_end]
                i = lang_end
            if i < n and text[i] in "\r\n":
                if i + 1 < n and text[i + 1] in "\r\n" and text[i] != text[i + 1]:
                    i += 2
                else:
                    i += 1
        start_u16 = out.u16
        start_len = len(out.chunks)
        while i < n and (text[i] != end_char or (is_pre and not text.startswith("```", i))):
            out.add(text[i])
            i += 1
        if i >= n:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {byte_offset(text, begin)}"
            )
        inner = "".join(out.chunks[start_len:])
        length = out.u16 - start_u16
        ent: dict[str, Any] | None = None
        if c == "_":
            ent = {"type": "italic"}
        elif c == "*":
            ent = {"type": "bold"}
        elif c == "`":
            ent = {"type": "pre", "language": language} if is_pre else {"type": "code"}
            if is_pre and not language:
                ent.pop("language")
        elif c == "[":
            url = inner
            if i + 1 < n and text[i + 1] == "(":
                i += 2
                buf = []
                while i < n and text[i] != ")":
                    buf.append(text[i])
                    i += 1
                url = "".join(buf)
            ent = {"type": "text_url", "url": url} if url else None
        if ent is not None and length > 0:
            entities.append({**ent, "offset": start_u16, "length": length})
        i += 3 if is_pre else 1
    return finish(out.text(), entities)
