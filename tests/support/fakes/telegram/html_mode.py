"""`parse_mode=HTML`: Telegram's tag subset and entities, with tdlib's error texts."""

from __future__ import annotations

from typing import Any

from .entities import EntityParseError, Parsed, Utf16Writer, byte_offset, finish

_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_HTML_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
}


def _decode_html_entity(text: str, i: int) -> tuple[str, int] | None:
    """tdlib's decode_html_entity: text[i] == '&'. Returns (char, next index) or None."""
    n = len(text)
    j = i + 1
    if j < n and text[j] == "#":
        j += 1
        if j < n and text[j] in "xX":
            j += 1
            start = j
            while j < n and text[j] in "0123456789abcdefABCDEF":
                j += 1
            digits, base = text[start:j], 16
        else:
            start = j
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            digits, base = text[start:j], 10
        if not digits or len(digits) > 8:
            return None
        code = int(digits, base)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        ch = chr(code)
    else:
        start = j
        while j < n and text[j].isascii() and text[j].isalpha():
            j += 1
        name = text[start:j]
        ch = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(name, "")
        if not ch:
            return None
    if j < n and text[j] == ";":
        j += 1
    return ch, j


def parse_html(text: str, *, strict_ampersand: bool = True) -> Parsed:
    """Parse Telegram HTML the way tdlib does; raise EntityParseError on malformed input."""
    out = Utf16Writer()
    stack: list[dict[str, Any]] = []
    entities: list[dict[str, Any]] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            dec = _decode_html_entity(text, i)
            if dec is not None:
                out.add(dec[0])
                i = dec[1]
                continue
            if strict_ampersand:  # fake's wording: tdlib itself keeps a bare '&'
                raise EntityParseError(
                    f'Character "&" at byte offset {byte_offset(text, i)} does not start an HTML '
                    'entity; it must be escaped as "&amp;"'
                )
        if c != "<":
            out.add(c)
            i += 1
            continue
        begin = i
        i += 1
        if i >= n or text[i] != "/":
            # opening tag
            j = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            if i >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {byte_offset(text, begin)}")
            tag = text[j:i].lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(
                    f'Unsupported start tag "{tag}" at byte offset {byte_offset(text, begin)}'
                )
            argument = ""
            expandable = False
            while True:
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {byte_offset(text, begin)}"
                    )
                if text[i] == ">":
                    break
                a = i
                while i < n and not text[i].isspace() and text[i] not in "=>":
                    i += 1
                attr = text[a:i].lower()
                if not attr:
                    raise EntityParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {byte_offset(text, begin)}'
                    )
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {byte_offset(text, begin)}"
                    )
                if text[i] != "=":
                    if tag == "blockquote" and attr == "expandable":
                        expandable = True
                        continue
                    raise EntityParseError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                        f"at byte offset {byte_offset(text, begin)}"
                    )
                i += 1
                while i < n and text[i].isspace():
                    i += 1
                if i >= n:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {byte_offset(text, begin)}"
                    )
                if text[i] not in "'\"":
                    t = i
                    while i < n and ((text[i].isascii() and text[i].isalnum()) or text[i] in ".-"):
                        i += 1
                    value = text[t:i].lower()
                    if i < n and not text[i].isspace() and text[i] != ">":
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {byte_offset(text, t)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    buf: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&":
                            dec = _decode_html_entity(text, i)
                            if dec is not None:
                                buf.append(dec[0])
                                i = dec[1]
                                continue
                        buf.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(buf)
                if i >= n:
                    raise EntityParseError(
                        f"Unclosed start tag at byte offset {byte_offset(text, begin)}"
                    )
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attr == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and attr == "emoji-id":
                    argument = value
                elif tag == "blockquote" and attr == "expandable":
                    expandable = True
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(text, begin)}'
                )
            if tag == "tg-emoji" and not (argument.isdigit() and int(argument) > 0):
                raise EntityParseError("Invalid custom emoji identifier specified")
            stack.append({"tag": tag, "arg": argument, "expandable": expandable, "u16": out.u16})
            i += 1  # '>'
        else:
            # closing tag
            i += 1
            j = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            end_tag = text[j:i].lower()
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != ">":
                raise EntityParseError(f"Unclosed end tag at byte offset {byte_offset(text, begin)}")
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {byte_offset(text, begin)}")
            top = stack[-1]
            if end_tag and end_tag != top["tag"]:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {byte_offset(text, begin)}, expected "
                    f'"</{top["tag"]}>", found "</{end_tag}>"'
                )
            i += 1
            stack.pop()
            _close_html_entity(top, out.u16, entities, out)
    if stack:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1]["tag"]}"'
        )
    return finish(out.text(), entities)


def _close_html_entity(
    top: dict[str, Any], end_u16: int, entities: list[dict[str, Any]], out: Utf16Writer
) -> None:
    offset, length = top["u16"], end_u16 - top["u16"]
    if length <= 0:
        return
    tag, arg = top["tag"], top["arg"]
    ent: dict[str, Any] = {"offset": offset, "length": length}
    if tag == "a":
        if not arg:
            return  # tdlib turns the text itself into a URL if it is one; not modelled
        ent["type"], ent["url"] = "text_url", arg
    elif tag == "tg-emoji":
        ent["type"], ent["custom_emoji_id"] = "custom_emoji", arg
    elif tag == "blockquote":
        ent["type"] = "expandable_blockquote" if top["expandable"] else "blockquote"
    elif tag == "code":
        ent["type"] = "code"
        if arg:
            ent["_language"] = arg  # only kept if this code is the whole content of a <pre>
    elif tag == "pre":
        ent["type"] = "pre"
        if entities:
            last = entities[-1]
            if last["type"] == "code" and last["offset"] == offset and last["length"] == length:
                entities.pop()
                if last.get("_language"):
                    ent["language"] = last["_language"]
    else:
        ent["type"] = _HTML_TYPES[tag]
    entities.append(ent)
