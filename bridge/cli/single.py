"""One daemon per database and data directory.

Two daemons on one config would both poll the same bot (Telegram answers the second
`getUpdates` with a conflict and the two take turns), both deliver the same outbox rows
and both answer permission prompts.  `threadline run` therefore holds an exclusive
`flock` on `run/daemon.lock` in its data directory — and, for SQLite, on a lock file
next to the database, which another config might share with a different data
directory — for as long as it runs.  The lock file holds the holder's PID, so the
second daemon can say which process to stop.  The kernel releases a `flock` when its
holder dies, even by `kill -9`: a stale file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bridge.config import Config
from bridge.startup import StartupError


def lock_paths(config: Config) -> list[tuple[Path, str]]:
    """The lock files a daemon on `config` holds, each with what it guards (the
    database's only for SQLite)."""
    paths = [(config.data_dir() / "run" / "daemon.lock", "data directory")]
    url = config.storage.url
    if url.startswith("sqlite:///") and url[len("sqlite:///") :] not in ("", ":memory:"):
        database = Path(url[len("sqlite:///") :]).expanduser()
        paths.append((database.with_name(database.name + ".lock"), "database"))
    return paths


@contextlib.contextmanager
def only_daemon(config: Config) -> Iterator[None]:
    """Hold every lock of `lock_paths`, or raise `StartupError` naming the holder."""
    with contextlib.ExitStack() as stack:
        for path, what in lock_paths(config):
            stack.enter_context(_locked(path, what))
        yield


@contextlib.contextmanager
def _locked(path: Path, what: str) -> Iterator[None]:
    _private_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise StartupError(
                f"another threadline daemon (PID {holder}) is running on this {what} "
                f"({path.parent}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _private_dirs(path: Path) -> None:
    """Make `path` and any missing parent 0700 (`mkdir(parents=True)` would give the
    parents the umask's mode: the data directory must not become world-readable)."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
