"""Slack's formatting rules as the fake checks and reads them: mrkdwn escaping and its
plain reading, the text of blocks, and Block Kit validation with Slack's limits."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_plain(text: str) -> str:
    """What a person reads: fences dropped, links as their labels, escapes decoded
    (formatting marks like ``*`` are kept)."""
    text = "\n".join(line for line in text.split("\n") if line.strip() != "```")

    def link(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if label:
            return label
        if target.startswith(("@", "#")):
            return target
        if target.startswith("!"):
            return "@" + target[1:]
        return target

    text = re.sub(r"<([^<>]*)>", link, text)
    return (
        text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("\u200b", "")
    )


def block_texts(blocks: Iterable[Mapping[str, Any]]) -> str:
    parts: list[str] = []
    for b in blocks:
        if b.get("type") in ("section", "header", "markdown"):
            t = b.get("text")
            parts.append(t.get("text", "") if isinstance(t, Mapping) else str(t or ""))
        elif b.get("type") == "context":
            parts.extend(e.get("text", "") for e in b.get("elements", ()) if "text" in e)
    return "\n".join(parts)


def _text_obj(obj: Any, where: str, limit: int, errors: list[str], plain: bool = False) -> int:
    if not isinstance(obj, Mapping) or obj.get("type") not in ("mrkdwn", "plain_text"):
        errors.append(f"{where}: must be a text object")
        return 0
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"{where}.text: must be a non-empty string")
        return 0
    if plain and obj["type"] != "plain_text":
        errors.append(f"{where}: must be plain_text")
    if obj["type"] == "mrkdwn" and "emoji" in obj:
        errors.append(f"{where}: emoji is only allowed in plain_text")
    if len(text) > limit:
        errors.append(f"{where}.text: must be less than {limit + 1} characters")
    return len(text)


def _button(e: Any, where: str, action_ids: set[str], errors: list[str]) -> int:
    if not isinstance(e, Mapping) or e.get("type") != "button":
        errors.append(f"{where}: unsupported element")
        return 0
    n = _text_obj(e.get("text"), f"{where}.text", 75, errors, plain=True)
    action_id = e.get("action_id")
    if action_id is not None:
        if not isinstance(action_id, str) or len(action_id) > 255:
            errors.append(f"{where}.action_id: must be less than 256 characters")
        elif action_id in action_ids:
            errors.append(f"{where}.action_id: duplicate action_id {action_id!r}")
        else:
            action_ids.add(action_id)
    value = e.get("value")
    if value is not None and (not isinstance(value, str) or len(value) > 2000):
        errors.append(f"{where}.value: must be less than 2001 characters")
    if e.get("style") not in (None, "primary", "danger"):
        errors.append(f"{where}.style: must be primary or danger")
    return n


def check_blocks(blocks: Any) -> tuple[list[str], int]:
    """(errors, total text characters) of a `blocks` array."""
    errors: list[str] = []
    if not isinstance(blocks, list):
        return ["blocks: must be an array"], 0
    if len(blocks) > 50:
        errors.append("blocks: no more than 50 items allowed")
    total = 0
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, b in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(b, Mapping):
            errors.append(f"{where}: must be an object")
            continue
        bid = b.get("block_id")
        if bid is not None:
            if not isinstance(bid, str) or len(bid) > 255 or bid in block_ids:
                errors.append(f"{where}.block_id: invalid or duplicate")
            block_ids.add(str(bid))
        kind = b.get("type")
        if kind == "section":
            if "text" in b or "fields" not in b:
                total += _text_obj(b.get("text"), f"{where}.text", 3000, errors)
            for j, f in enumerate(b.get("fields") or ()):
                total += _text_obj(f, f"{where}.fields[{j}]", 2000, errors)
            if "accessory" in b and b["accessory"].get("type") == "button":
                total += _button(b["accessory"], f"{where}.accessory", action_ids, errors)
        elif kind == "context":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"{where}.elements: must have 1-10 items")
                continue
            for j, e in enumerate(elements):
                if isinstance(e, Mapping) and e.get("type") == "image":
                    continue
                total += _text_obj(e, f"{where}.elements[{j}]", 3000, errors)
        elif kind == "actions":
            elements = b.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                errors.append(f"{where}.elements: must have 1-25 items")
                continue
            for j, e in enumerate(elements):
                total += _button(e, f"{where}.elements[{j}]", action_ids, errors)
        elif kind == "header":
            total += _text_obj(b.get("text"), f"{where}.text", 150, errors, plain=True)
        elif kind == "markdown":
            text = b.get("text")
            if not isinstance(text, str) or not text or len(text) > 12_000:
                errors.append(f"{where}.text: must be 1-12000 characters")
            else:
                total += len(text)
        elif kind not in ("divider", "rich_text", "image"):
            errors.append(f"{where}.type: unsupported type {kind!r}")
    return errors, total
