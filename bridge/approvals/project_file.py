"""Reading and changing `permissions.allow` of a folder's `.claude/settings.local.json`.

This is the file Claude Code itself writes "always allow" rules to (the CLI suggests
them with destination `localSettings`, measured with CLI 2.1.337), so the terminal
`claude` in that folder reads what Threadline writes here.  The file belongs to the
person and may hold anything, so it is handled as hostile input:

- every step goes through directory descriptors with `O_NOFOLLOW` from the resolved
  session directory: a `.claude` that is a symlink, or a settings file that is one,
  is refused (nothing is written, nothing outside the folder is touched);
- a file that is not a regular, UTF-8, JSON object of at most `MAX_BYTES` — or whose
  `permissions` / `permissions.allow` have another shape — is refused with a line
  saying why, and never overwritten;
- every other key is kept as it was (order too); the new text goes to a fresh
  0600 file in the same directory that then replaces the old one atomically, keeping
  the old file's mode; `.claude/` is created 0700 when missing.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from bridge import nofollow

DIR: Final = ".claude"
NAME: Final = "settings.local.json"
SHOWN: Final = f"{DIR}/{NAME}"
MAX_BYTES: Final = 256 * 1024
_LOCK = threading.Lock()  # one read-modify-write at a time in this daemon


class SettingsRefused(ValueError):
    """The file cannot be used; the message is shown to the person."""


def _open_dir(cwd: str, *, create: bool) -> tuple[int, int | None]:
    """(folder fd, `.claude` fd or None when it is absent and not `create`)."""
    root = os.open(os.path.realpath(cwd), nofollow.DIR)
    try:
        if not create:
            try:
                sub = os.open(DIR, nofollow.DIR | os.O_NOFOLLOW, dir_fd=root)
            except FileNotFoundError:
                return root, None
        else:
            sub = nofollow.subdir(root, DIR)
    except OSError as e:
        os.close(root)
        if e.errno in nofollow.LINK_ERRORS:
            raise SettingsRefused(
                f"`{DIR}` in the folder is a symbolic link or not a directory: nothing is "
                "written through it"
            ) from None
        raise SettingsRefused(f"`{DIR}` cannot be opened ({e.strerror})") from None
    return root, sub


def _read(claude: int) -> tuple[dict[str, Any], int | None]:
    """(settings, mode) of the file in directory `claude`; ({}, None) when absent."""
    try:
        fd = os.open(
            NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=claude
        )
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        if e.errno in nofollow.LINK_ERRORS:
            raise SettingsRefused(f"`{SHOWN}` is a symbolic link: it is left alone") from None
        raise SettingsRefused(f"`{SHOWN}` cannot be opened ({e.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SettingsRefused(f"`{SHOWN}` is not a regular file: it is left alone")
        if info.st_size > MAX_BYTES:
            raise SettingsRefused(
                f"`{SHOWN}` is too large ({info.st_size} bytes): it is left alone"
            )
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        raise SettingsRefused(f"`{SHOWN}` is too large: it is left alone")
    return _parse(raw), stat.S_IMODE(info.st_mode)


def _parse(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SettingsRefused(
            f"`{SHOWN}` is not valid JSON: it is left alone (fix it, then try again)"
        ) from None
    if not isinstance(data, dict):
        raise SettingsRefused(f"`{SHOWN}` is not a JSON object: it is left alone")
    perms = data.get("permissions", {})
    if not isinstance(perms, dict) or not isinstance(perms.get("allow", []), list):
        raise SettingsRefused(f"`{SHOWN}` has a `permissions.allow` that is not a list")
    return data


def _write(claude: int, data: dict[str, Any], mode: int | None) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    tmp = f".{NAME}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=claude)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode & 0o777)
            os.fsync(fh.fileno())
        os.replace(tmp, NAME, src_dir_fd=claude, dst_dir_fd=claude)  # the link, never its target
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=claude)
        except OSError:
            pass
        raise
    os.fsync(claude)


def _change(cwd: str, edit: Callable[[list[Any]], bool], *, create: bool) -> bool:
    with _LOCK:
        root, claude = _open_dir(cwd, create=create)
        try:
            if claude is None:
                return False
            data, mode = _read(claude)
            perms = data.setdefault("permissions", {})
            allow = perms.setdefault("allow", [])
            if not edit(allow):
                return False
            _write(claude, data, mode)
            return True
        finally:
            if claude is not None:
                os.close(claude)
            os.close(root)


def add_rule(cwd: str, rule: str) -> bool:
    """Append `rule` to `permissions.allow` (False: it was there already).
    `SettingsRefused` when the file or `.claude` may not be used."""

    def add(allow: list[Any]) -> bool:
        if rule in allow:
            return False
        allow.append(rule)
        return True

    return _change(cwd, add, create=True)


def remove_rule(cwd: str, rule: str) -> bool:
    """Take every `rule` line out of `permissions.allow` (False: none was there)."""

    def drop(allow: list[Any]) -> bool:
        kept = [r for r in allow if r != rule]
        changed = len(kept) != len(allow)
        allow[:] = kept
        return changed

    return _change(cwd, drop, create=False)


def allow_rules(cwd: str) -> frozenset[str]:
    """The `permissions.allow` strings of the file as it is now; empty when it is
    absent or cannot be used (then nothing written there is honoured)."""
    try:
        root, claude = _open_dir(cwd, create=False)
    except (SettingsRefused, OSError):
        return frozenset()
    try:
        if claude is None:
            return frozenset()
        data, _ = _read(claude)
    except (SettingsRefused, OSError):
        return frozenset()
    finally:
        if claude is not None:
            os.close(claude)
        os.close(root)
    allow = data.get("permissions", {}).get("allow", [])
    return frozenset(r for r in allow if isinstance(r, str))


def path_of(cwd: str) -> Path:
    return Path(os.path.realpath(cwd)) / DIR / NAME
