"""Access control: who may use the bot, and where sessions may run.

Owners come from config `[access] owners` (``platform:id``) and from pairing (signed
rows in the database, checked on each use: `bridge/access/owners.py`).  Anyone else gets at
most one polite refusal per hour and an audit-log row; nothing of theirs reaches
Claude.  `resolve_session_dir` decides whether a directory asked for in `new` is
allowed: under one of `allowed_roots` after resolving symlinks, no `..`, no
`~user`, no NUL bytes, no absurd lengths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path

from adapters.messages import Sender
from storage.db import Database

log = logging.getLogger(__name__)

REFUSAL_INTERVAL = timedelta(hours=1)
MAX_PATH_LEN = 1024


class PathRefused(ValueError):
    """The directory may not be used; the message is shown to the person."""


class AccessControl:
    def __init__(self, db: Database, owners: Iterable[str]) -> None:
        self.db = db
        self._owners = {o.strip() for o in owners}
        self._paired: Callable[[str], bool] = lambda _key: False

    def is_owner(self, sender: Sender) -> bool:
        """A config owner, or a paired one whose signed row is in the database now
        (asked every time, so `threadline unpair` takes effect at once)."""
        return sender.key in self._owners or self._paired(sender.key)

    def use_paired(self, check: Callable[[str], bool]) -> None:
        """Paired owners: `check(key)` (`bridge/access/owners.py`)."""
        self._paired = check

    def refuse(self, sender: Sender, action: str, detail: str = "") -> bool:
        """Record a refused stranger; True if they should be told (once an hour)."""
        notify = self.db.audit.refused_since(sender.key, REFUSAL_INTERVAL) == 0
        self.db.audit.log(
            platform=sender.platform,
            user=sender.key,
            action="refused-notified" if notify else "refused",
            detail=f"{action}: {detail}"[:500],
            allowed=False,
        )
        log.warning("refused %s from %s", action, sender.key)
        return notify


def resolve_existing(candidate: Path, raw: str, refused: type[ValueError]) -> Path:
    """`candidate` with every symlink resolved; `refused` (saying why, in terms of what
    the person typed) if it does not exist or cannot be resolved (a symlink loop)."""
    try:
        return candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise refused(f"{raw} does not exist") from None
    except (OSError, RuntimeError, UnicodeError):  # a loop; a name the OS cannot encode
        raise refused(f"{raw} cannot be resolved") from None


def resolve_session_dir(raw: str, roots: Sequence[str]) -> Path:
    """Return the real directory for `raw`, or raise `PathRefused` saying why."""
    if not raw:
        raise PathRefused("no directory given")
    if "\x00" in raw or any(ord(c) < 32 for c in raw):
        raise PathRefused("the path contains control characters")
    if len(raw) > MAX_PATH_LEN:
        raise PathRefused("the path is too long")
    if raw.startswith("~") and not (raw == "~" or raw.startswith("~/")):
        raise PathRefused("`~user` paths are not allowed; use `~/…` or an absolute path")
    parts = Path(raw).parts
    if ".." in parts:
        raise PathRefused("`..` is not allowed in session paths")
    real_roots = [Path(os.path.expanduser(r)).resolve() for r in roots]
    candidate = Path(os.path.expanduser(raw))
    if not candidate.is_absolute():
        candidate = real_roots[0] / candidate
    real = resolve_existing(candidate, raw, PathRefused)
    if not any(real == root or root in real.parents for root in real_roots):
        shown = ", ".join(str(r) for r in roots)
        raise PathRefused(f"{raw} is outside the allowed directories ({shown})")
    if not real.is_dir():
        raise PathRefused(f"{raw} is not a directory")
    return real
