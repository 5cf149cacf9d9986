"""Buttons on Matrix: reactions the bot puts under its own message.

Matrix has no buttons, so a message with buttons gets a hint line ("React ✅ Allow ·
♾️ Allow for session · ❌ Deny") and the bot reacts to it with one emoji per button;
the person taps the reaction.  A button whose label starts with an emoji (the
bridge's ✅ ♾️ ❌ ⏹) uses that emoji; other buttons (mode picker, recent
directories) get keycaps 1️⃣ 2️⃣ ….  Keys are compared without variation selectors,
since clients send "⏹" and "⏹️" alike.

A multi-select question's options are toggles: removing one's reaction (a redaction)
unselects the option again (`toggles`; the hint says so).

`ButtonMap` remembers, per event we sent, which key means which button data, so an
owner's reaction on that event becomes a `ButtonPress`; an edit without buttons (a
decided prompt, a finished turn) forgets the event, which makes later reactions on it
stale.  The map is kept in the store directory so buttons survive a restart.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.messages import Button

log = logging.getLogger(__name__)

KEYCAPS = tuple(f"{n}\ufe0f\u20e3" for n in range(1, 10)) + ("\U0001f51f",)
MAX_REMEMBERED = 500
Keyed = tuple[str, str, str]  # (reaction key, label without the emoji, button data)


def normalize(key: str) -> str:
    return key.replace("\ufe0f", "").strip()


def _leading_emoji(label: str) -> tuple[str, str]:
    head, _, rest = label.strip().partition(" ")
    if (
        head
        and any(unicodedata.category(c) == "So" for c in head)
        and all(
            unicodedata.category(c) in ("So", "Sk", "Mn", "Me", "Cf") or c == "\u20e3" for c in head
        )
    ):
        return head, rest.strip()
    return "", label.strip()


def assign_keys(buttons: Sequence[Button], limit: int = len(KEYCAPS)) -> list[Keyed]:
    """One distinct reaction key per button (the label's emoji, else a keycap)."""
    out: list[Keyed] = []
    used: set[str] = set()
    caps = iter(KEYCAPS)
    for b in buttons:
        emoji, label = _leading_emoji(b.label)
        if not emoji or normalize(emoji) in used:
            emoji = next((c for c in caps if normalize(c) not in used), "")
        if not emoji or len(out) >= limit:
            log.warning("dropping button %r: no reaction key left", b.label)
            continue
        used.add(normalize(emoji))
        out.append((emoji, label or b.label, b.data))
    return out


def hint(keyed: Sequence[Keyed]) -> str:
    """The line telling the person what to tap (and, for a permission prompt, type)."""
    choices = " · ".join(f"{key} {label}" for key, label, _ in keyed)
    if keyed and all(data.startswith("p:") for _, _, data in keyed):
        always = any(data.endswith(":s") for _, _, data in keyed)
        words = "allow, always or deny" if always else "allow or deny"
        if any(data.endswith(":p") for _, _, data in keyed):
            words = words.replace(" or deny", ", always project or deny")
        return f"React {choices} — or reply {words} <reason>."
    if keyed and all(data.startswith("q:") for _, _, data in keyed):  # Claude's question
        if any(data.endswith(":d") for _, _, data in keyed):  # several may be chosen
            return (
                f"React {choices} — remove a reaction to unselect it — or reply with the number(s)."
            )
        return f"React {choices} — or reply with the number(s)."
    if keyed and all(data.startswith("l:") for _, _, data in keyed):  # Claude's plan
        return f"React {choices} — or reply approve, auto, or with your feedback."
    return f"React {choices}"


def toggles(entry: Entry, data: str) -> bool:
    """Whether `data` is an option of a multi-select question (`q:<request>:<question>:
    <n>` on a message that also has that question's Done, `…:d`): taking the reaction
    back presses it again, which unselects the option."""
    head, _, option = data.rpartition(":")
    return (
        data.startswith("q:") and option.isdigit() and any(d == f"{head}:d" for _, d in entry.pairs)
    )


@dataclass(frozen=True, slots=True)
class Entry:
    room_id: str
    thread_id: str | None  # the thread the message was posted in
    pairs: tuple[tuple[str, str], ...]  # (reaction key, button data)


class ButtonMap:
    """event id → `Entry` for our messages that carry buttons."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._load()

    def _load(self) -> None:
        if self._path is None or not self._path.exists():
            return
        try:
            for event_id, (room, thread, pairs) in json.loads(self._path.read_text()).items():
                self._entries[str(event_id)] = Entry(
                    str(room), thread and str(thread), tuple((str(k), str(d)) for k, d in pairs)
                )
        except (OSError, ValueError, TypeError) as e:
            log.warning("ignoring unreadable button map %s: %s", self._path, e)

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        raw = {k: [e.room_id, e.thread_id, e.pairs] for k, e in self._entries.items()}
        try:
            tmp.write_text(json.dumps(raw))
            os.replace(tmp, self._path)
        except OSError as e:
            log.warning("could not save the button map: %s", e)

    def set(self, event_id: str, entry: Entry) -> None:
        self._entries[event_id] = entry
        self._entries.move_to_end(event_id)
        while len(self._entries) > MAX_REMEMBERED:
            self._entries.popitem(last=False)
        self._save()

    def get(self, event_id: str) -> Entry | None:
        return self._entries.get(event_id)

    def forget(self, event_id: str) -> None:
        if self._entries.pop(event_id, None) is not None:
            self._save()

    def lookup(self, room_id: str, event_id: str, key: str) -> tuple[Entry, str] | None:
        """The entry and button data that a reaction `key` on `event_id` stands for."""
        entry = self._entries.get(event_id)
        if entry is None or entry.room_id != room_id:
            return None
        wanted = normalize(key)
        data = next((d for k, d in entry.pairs if normalize(k) == wanted), None)
        return (entry, data) if data is not None else None
