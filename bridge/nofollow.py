"""Opening directories inside a folder without ever following a symlink.

Files Threadline writes into a session's folder (the inbox for attachments, a project's
`.claude/settings.local.json`) and files it reads out of it (`get`) are reached from a
descriptor of the folder itself, one path component at a time, with `O_NOFOLLOW`: a
symlink planted by whoever controls the repository cannot point the write elsewhere.
"""

from __future__ import annotations

import errno
import os
from typing import Final

DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NOFOLLOW_DIR: Final = DIR | os.O_NOFOLLOW
# What opening a symlink (or a non-directory) with O_NOFOLLOW | O_DIRECTORY raises.
LINK_ERRORS: Final = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)  # EMLINK: FreeBSD's ELOOP


def subdir(parent: int, name: str) -> int:
    """A descriptor for directory `name` in `parent`, made (0700) if missing; never
    through a symlink: OSError ELOOP/ENOTDIR if `name` is one, or is not a directory."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:
        pass
    return os.open(name, NOFOLLOW_DIR, dir_fd=parent)
