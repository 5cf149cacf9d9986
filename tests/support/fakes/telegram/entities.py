"""Formatted text, the part every parse mode shares: UTF-16 lengths (the unit of entity
offsets), `Parsed` (visible text and entities), the parse error, and the trimming of
leading/trailing whitespace Telegram applies after parsing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def utf16_len(s: str) -> int:
    """Length of `s` in UTF-16 code units (Telegram's unit for entity offsets)."""
    return len(s.encode("utf-16-le")) // 2


class EntityParseError(ValueError):
    """Malformed formatted text; str() is the part after "can't parse entities: "."""


@dataclass(frozen=True)
class Parsed:
    """Visible text and entities (UTF-16 offsets) after entity parsing and trimming."""

    text: str
    entities: tuple[dict[str, Any], ...] = ()


class Utf16Writer:
    """Collects visible text and tracks its UTF-16 length."""

    __slots__ = ("chunks", "u16")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.u16 = 0

    def add(self, s: str) -> None:
        self.chunks.append(s)
        self.u16 += utf16_len(s)

    def text(self) -> str:
        return "".join(self.chunks)


def byte_offset(text: str, i: int) -> int:
    """The UTF-8 byte offset of character `i` (tdlib reports parse errors in bytes)."""
    return len(text[:i].encode("utf-8"))


def finish(text: str, entities: list[dict[str, Any]]) -> Parsed:
    """Trim leading/trailing whitespace like Telegram, shifting and clipping entities."""
    stripped = text.strip()
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    fixed: list[dict[str, Any]] = []
    for ent in entities:
        ent = {k: v for k, v in ent.items() if not k.startswith("_")}
        start = max(0, ent["offset"] - lead)
        end = min(total, ent["offset"] + ent["length"] - lead)
        if end > start:
            ent["offset"], ent["length"] = start, end - start
            fixed.append(ent)
    fixed.sort(key=lambda e: (e["offset"], -e["length"]))
    return Parsed(stripped, tuple(fixed))
