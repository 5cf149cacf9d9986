"""What `new` without a path offers: the directories a session may start in.

The person should not have to guess where sessions may run.  Besides the recent
directories (`n:<session>` buttons, in `sessions.py`), the picker offers each of
`allowed_roots` and the git repositories directly inside them (most recently changed
first) as `nd:<root index>:<name>` buttons, and says how to type a path.  A press is
resolved again under the roots as they are then (`resolve`), so an old button never
reaches outside them.  Only the immediate children of a root are looked at, and at most
`SCAN_LIMIT` of them, so a root holding thousands of folders costs little.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from adapters.messages import Button, Markdown, Outbound
from bridge import render

MAX_BUTTONS = 8  # a Matrix picker is reactions: keycaps run out at 10
SCAN_LIMIT = 200  # entries of one root looked at for git repositories
MAX_DATA = 64  # bytes of button data (Telegram's callback_data limit)


def _shown(path: Path) -> str:
    home = Path.home()
    return (
        f"~/{path.relative_to(home)}" if path.is_relative_to(home) and path != home else str(path)
    )


def _repos(root: Path) -> list[Path]:
    """Git repositories directly inside `root`, most recently changed first."""
    found: list[tuple[float, Path]] = []
    try:
        with os.scandir(root) as entries:
            for n, entry in enumerate(entries):
                if n >= SCAN_LIMIT:
                    break
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                git = Path(entry.path) / ".git"
                if git.exists():
                    found.append((entry.stat().st_mtime, Path(entry.path)))
    except OSError:
        return []
    return [p for _, p in sorted(found, key=lambda t: -t[0])]


def root_buttons(roots: Sequence[str], taken: set[Path], room: int) -> list[Button]:
    """Up to `room` buttons: each existing root, then the git repositories inside them;
    directories in `taken` (resolved; already offered) are skipped."""
    out: list[Button] = []
    real = [Path(os.path.expanduser(r)).resolve() for r in roots]
    candidates: list[tuple[str, Path, str]] = [
        (f"{_shown(root)}/", root, f"nd:{i}:") for i, root in enumerate(real) if root.is_dir()
    ]
    for i, root in enumerate(real):
        candidates += [(p.name, p, f"nd:{i}:{p.name}") for p in _repos(root)]
    for label, path, data in candidates:
        if len(out) >= room:
            break
        if path in taken or len(data.encode()) > MAX_DATA:
            continue
        taken.add(path)
        out.append(Button(label, data))
    return out


def picker(platform: str, roots: Sequence[str], recent: Sequence[tuple[str, Button]]) -> Outbound:
    """The reply to `new` without a path; `recent` is (directory, button) of recent
    sessions' directories."""
    taken = {Path(cwd).resolve() for cwd, _ in recent}
    buttons = [b for _, b in recent][: MAX_BUTTONS // 2]
    buttons += root_buttons(roots, taken, MAX_BUTTONS - len(buttons))
    where = ", ".join(f"`{r}`" for r in roots)
    text = (
        "Start a session in which directory? Tap one, or type "
        f"{render.cmd(platform, 'new PATH [prompt]')} — PATH under {where}"
        f" (a relative PATH is taken from `{roots[0]}`)."
        if roots
        else "No directories are allowed: set `[agent] allowed_roots` in the config."
    )
    return Outbound((Markdown(text),), tuple((b,) for b in buttons))


def resolve(roots: Sequence[str], rest: str) -> str | None:
    """The path an `nd:` button stands for (to be checked under the roots again), or
    None for a malformed or stale one."""
    index, _, name = rest.partition(":")
    if not index.isdigit() or int(index) >= len(roots) or "/" in name or name in (".", ".."):
        return None
    root = os.path.expanduser(roots[int(index)])
    return os.path.join(root, name) if name else root
