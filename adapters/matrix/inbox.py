"""What the Matrix adapter has taken in, kept in the store directory so a restart
neither drops nor repeats an event (`inbox.db`, SQLite).

- `position`: the sync token up to which every event has been handled.  It is saved
  only after a whole sync response has been handled, so a daemon killed after a sync
  but before handling its events gets them again from the homeserver on restart.
  (nio saves its own token as soon as a response arrives, before we see its events;
  that one is only a fallback for a store written before this file existed.)
- `handled`: the ids of recent events handed to the bridge.  An id is written (and
  committed) *before* its event is delivered: an event re-delivered after such a kill
  is recognised and skipped, so a prompt is never answered twice.  The price is that a
  kill in the instant between the commit and the bridge taking the event loses that
  one event (at-most-once per event; a lost event is never silently repeated).  The
  window is bounded (`KEEP_HANDLED` ids): re-delivery only happens across one unsaved
  position, a few hundred events at most.
- `undecrypted`: encrypted events whose room key had not arrived yet, kept with the
  time they were first seen, so that a restart goes on waiting for their key instead
  of forgetting them once the position has moved past them.

Commits use SQLite's WAL with `synchronous=NORMAL`: a commit survives the process
being killed (the kernel has it), not a power cut.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEEP_HANDLED = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS position (id INTEGER PRIMARY KEY CHECK (id = 1), device TEXT NOT NULL,
                                     since TEXT NOT NULL, saved_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS handled (n INTEGER PRIMARY KEY AUTOINCREMENT,
                                    event_id TEXT NOT NULL UNIQUE, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS undecrypted (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,
                                        source TEXT NOT NULL, since REAL NOT NULL);
"""


class Inbox:
    """`path=None`: in memory (tests and tools that need no restart)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as e:
            if path is None:
                raise
            # A damaged file must not keep the bot off Matrix: set it aside and resume
            # from nio's own sync token (what was handled just before may come again).
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            log.error("Matrix: %s is damaged (%s); moved to %s", path, e, aside.name)
            path.replace(aside)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path) if self.path is not None else ":memory:")
        try:
            if self.path is not None:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.commit()
        except sqlite3.DatabaseError:
            db.close()
            raise
        if self.path is not None:
            self.path.chmod(0o600)  # event ids and encrypted events: the store's business only
        return db

    def close(self) -> None:
        self._db.close()

    # --- the sync position ----------------------------------------------------------

    def position(self, device: str) -> str | None:
        """The saved token, if it was saved by `device` (a new device starts afresh:
        it could not decrypt what the old one left unread)."""
        row = self._db.execute("SELECT device, since FROM position WHERE id = 1").fetchone()
        return str(row[1]) if row and row[0] == device else None

    def save_position(self, device: str, since: str) -> None:
        self._db.execute(
            "INSERT INTO position (id, device, since, saved_at) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET device = excluded.device, since = excluded.since, "
            "saved_at = excluded.saved_at",
            (device, since, time.time()),
        )
        self._db.commit()

    # --- events handed on -----------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM handled WHERE event_id = ?", (event_id,)).fetchone()
        return row is not None

    def claim(self, event_id: str) -> bool:
        """Record `event_id` as handled; False if it already was (skip it)."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO handled (event_id, at) VALUES (?, ?)", (event_id, time.time())
        )
        if cur.rowcount == 0:
            return False
        if cur.lastrowid is not None and cur.lastrowid % 100 == 0:
            self._db.execute("DELETE FROM handled WHERE n <= ?", (cur.lastrowid - KEEP_HANDLED,))
        self._db.commit()
        return True

    # --- events waiting for their room key ----------------------------------------------

    def keep_undecrypted(self, room_id: str, event_id: str, source: dict[str, Any]) -> float:
        """Remember an undecryptable event; returns when it was first seen (wall clock)."""
        self._db.execute(
            "INSERT OR IGNORE INTO undecrypted (event_id, room_id, source, since) "
            "VALUES (?, ?, ?, ?)",
            (event_id, room_id, json.dumps(source), time.time()),
        )
        self._db.commit()
        row = self._db.execute(
            "SELECT since FROM undecrypted WHERE event_id = ?", (event_id,)
        ).fetchone()
        return float(row[0])

    def drop_undecrypted(self, event_id: str) -> None:
        self._db.execute("DELETE FROM undecrypted WHERE event_id = ?", (event_id,))
        self._db.commit()

    def undecrypted(self) -> list[tuple[str, dict[str, Any], float]]:
        """(room id, raw event, first seen) of every event still waiting for a key."""
        out = []
        for room_id, source, since in self._db.execute(
            "SELECT room_id, source, since FROM undecrypted ORDER BY since"
        ):
            try:
                raw = json.loads(source)
            except ValueError:
                continue
            if isinstance(raw, dict):
                out.append((str(room_id), raw, float(since)))
        return out
