"""Files in and out of a session: chat attachments to Claude, and `get PATH` back.

In: attachments arrive undownloaded (`Attachment.fetch`); they are fetched here, so
only after the bridge has let the sender in — nothing a stranger sends is ever
downloaded.  Each download streams and stops at `[agent] max_file_mb` (20 MB by
default, Telegram's own getFile limit) and at `FETCH_TIMEOUT_S`; a file left out is
told to the person in the thread and nothing of it is kept.  A photo reaches Claude
as an image block (its media type sniffed from the bytes, not trusted from the
platform); any other file is saved into the session directory's `.threadline/inbox/`
under a sanitised, non-clobbering name and named in the prompt so Claude can read
it.  The inbox gets a `.gitignore` of its own so attachments never show up in
`git diff`.

Out: `get PATH` sends a file back as an attachment, only from inside the session
directory: the path is resolved (symlinks too) before the check, and only regular
files within the size cap are read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bridge import render
from bridge.access import resolve_existing
from bridge.commands import Command
from bridge.messages import (
    Attachment,
    AttachmentTooLarge,
    AttachmentUnavailable,
    FileOut,
    Outbound,
    ThreadRef,
    UserMessage,
)
from storage.models import SessionRow

if TYPE_CHECKING:
    from bridge.app import Bridge

log = logging.getLogger(__name__)

INBOX: Final = Path(".threadline") / "inbox"
MAX_NAME: Final = 120
IMAGE_PROMPT: Final = "(See the attached image.)"
# One download may take this long; the thread's later messages wait behind it (button
# presses do not: they never wait for a thread's messages).
FETCH_TIMEOUT_S: Final = 180.0
_UNSAFE = re.compile(r"[^\w.\- ()+,@=]+")


class FileRefused(ValueError):
    """The file may not be sent; the message is shown to the person."""


@dataclass(slots=True)
class PreparedPrompt:
    text: str
    images: list[tuple[str, bytes]] = field(default_factory=list)
    saved: list[Path] = field(default_factory=list)


def sniff_image(data: bytes) -> str | None:
    """The media type of a PNG, JPEG, GIF or WebP image, from its first bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def sanitise_name(name: str) -> str:
    """A safe file name: no directories, no control or shell-special characters, no
    leading dots (hidden files, `..`), at most `MAX_NAME` characters, never empty."""
    base = unicodedata.normalize("NFC", name.replace("\\", "/").rsplit("/", 1)[-1])
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C")
    base = _UNSAFE.sub("_", base).strip(" .")
    base = base.lstrip(".-")
    if len(base) > MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        base = base[: MAX_NAME - len(keep) - 1].rstrip(" .") + ("." + keep if keep else "")
    return base or "file"


def save_to_inbox(cwd: Path, name: str, data: bytes) -> Path:
    """Write `data` to the session's inbox under a fresh name; returns the path."""
    inbox = cwd / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    ignore = inbox.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    safe = sanitise_name(name)
    stem, dot, ext = safe.rpartition(".")
    if not dot or not stem:
        stem, ext = safe, ""
    for n in range(1000):
        candidate = inbox / (safe if n == 0 else f"{stem}-{n}{'.' + ext if ext else ''}")
        try:
            # O_EXCL: never overwrite a file, never follow a planted symlink.
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return candidate
    raise FileRefused(f"too many files named {safe} in the inbox")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 2**20:
        return f"{n / 1024:.1f} KB"
    return f"{n / 2**20:.1f} MB"


def prepare_prompt(
    text: str,
    files: Sequence[tuple[Attachment, bytes]],
    cwd: Path,
    *,
    max_bytes: int,
    notes: Sequence[str] = (),
) -> PreparedPrompt:
    """The prompt for a message with fetched attachments: images as image blocks,
    other files saved to the inbox and named at the end of the text (after `notes`
    about files that were left out)."""
    out = PreparedPrompt(text)
    notes = list(notes)
    for a, data in files:
        mime = sniff_image(data) if a.kind == "image" or a.mime.startswith("image/") else None
        if mime is not None:
            out.images.append((mime, data))
            continue
        if len(data) > max_bytes:
            notes.append(f"[{sanitise_name(a.name)} not saved: over {_size(max_bytes)}]")
            continue
        try:
            path = save_to_inbox(cwd, a.name, data)
        except (OSError, FileRefused) as e:
            log.warning("saving attachment %r failed: %s", a.name[:100], e)
            notes.append(f"[{sanitise_name(a.name)} could not be saved]")
            continue
        out.saved.append(path)
        rel = path.relative_to(cwd)
        notes.append(f"[Attached file saved to {rel} ({_size(len(data))}, {a.mime})]")
    if notes:
        out.text = "\n\n".join(p for p in (text.strip(), "\n".join(notes)) if p)
    elif out.images and not text.strip():
        out.text = IMAGE_PROMPT
    return out


def resolve_inside(cwd: str, raw: str, *, max_bytes: int) -> tuple[Path, Path]:
    """The regular file `raw` names, relative to `cwd`, if it really is inside `cwd`
    (after resolving symlinks) and within `max_bytes`, and its path relative to the
    session directory; else `FileRefused`."""
    if not raw or "\x00" in raw:
        raise FileRefused("which file? `get PATH`, relative to the session directory")
    root = Path(cwd).resolve()
    candidate = Path(os.path.expanduser(raw)) if raw.startswith("~/") else Path(raw)
    if not candidate.is_absolute():
        candidate = root / candidate
    real = resolve_existing(candidate, raw, FileRefused)
    if root not in real.parents:
        raise FileRefused(f"{raw} is outside the session directory")
    if not real.is_file():
        raise FileRefused(f"{raw} is not a regular file")
    size = real.stat().st_size
    if size > max_bytes:
        raise FileRefused(f"{raw} is {_size(size)}; the limit is {_size(max_bytes)}")
    return real, real.relative_to(root)


async def cmd_get(b: Bridge, cmd: Command, msg: UserMessage, session: SessionRow | None) -> None:
    """`get PATH`: the file as an attachment in the session's thread."""
    assert session is not None
    raw = (cmd.path or "").strip()
    thread = b.thread_of(session.id) or msg.thread
    try:
        path, rel = await asyncio.to_thread(
            resolve_inside, session.cwd, raw, max_bytes=max_bytes(b)
        )
        data = await asyncio.to_thread(path.read_bytes)
    except FileRefused as e:
        b.db.audit.log(
            platform=msg.sender.platform,
            user=msg.sender.key,
            action="get",
            detail=f"refused {raw[:200]}: {e}",
            allowed=False,
        )
        b.reply(thread, render.notice(f"🚫 {render.md_escape(str(e))}"))
        return
    except OSError as e:
        b.reply(thread, render.notice(f"Could not read {render.md_escape(raw)}: {e.strerror}"))
        return
    b.db.audit.log(platform=msg.sender.platform, user=msg.sender.key, action="get", detail=str(rel))
    b.reply(
        thread, Outbound(file=FileOut(path.name, data, caption=str(rel))), session_id=session.id
    )


async def fetch_attachments(
    attachments: Sequence[Attachment], limit: int
) -> tuple[list[tuple[Attachment, bytes]], list[tuple[str, str]]]:
    """Download a message's attachments, each capped at `limit` bytes; returns the
    fetched ones and, for each one left out, its name and why."""
    got: list[tuple[Attachment, bytes]] = []
    left_out: list[tuple[str, str]] = []
    for a in attachments:
        name = sanitise_name(a.name)
        try:
            data = await asyncio.wait_for(a.fetch(limit), FETCH_TIMEOUT_S)
        except AttachmentTooLarge as e:
            size = f"{_size(e.size)}, " if e.size is not None else ""
            left_out.append((name, f"{size}over the {_size(e.limit)} limit"))
            continue
        except (AttachmentUnavailable, TimeoutError) as e:
            log.warning("fetching attachment %r failed: %s", name, str(e) or type(e).__name__)
            left_out.append((name, "it could not be downloaded"))
            continue
        if len(data) > limit:  # an adapter that did not stop at the cap
            left_out.append((name, f"{_size(len(data))}, over the {_size(limit)} limit"))
            continue
        got.append((a, data))
    return got, left_out


async def prompt_parts(
    b: Bridge, session: SessionRow, msg: UserMessage, thread: ThreadRef
) -> tuple[str, list[tuple[str, bytes]] | None] | None:
    """A chat message's prompt text and images (documents saved to the inbox), or
    None when nothing is left to send (its only file was left out; `thread` is told)."""
    if not msg.attachments:
        return msg.text, None
    limit = max_bytes(b)
    got, left_out = await fetch_attachments(msg.attachments, limit)
    if left_out:
        listed = "; ".join(f"{render.md_escape(n)} ({why})" for n, why in left_out)
        b.reply(thread, render.notice(f"📎 Not attached: {listed}."), session_id=session.id)
    if not got and not msg.text.strip():
        return None
    notes = [f"[{n} was sent but not attached: {why}]" for n, why in left_out]
    prepared = await asyncio.to_thread(
        prepare_prompt, msg.text, got, Path(session.cwd), max_bytes=limit, notes=notes
    )
    return prepared.text, prepared.images


def max_bytes(b: Bridge) -> int:
    return int(b.config.agent.max_file_mb * 2**20)


__all__ = [
    "FileRefused",
    "PreparedPrompt",
    "cmd_get",
    "fetch_attachments",
    "prepare_prompt",
    "resolve_inside",
    "sanitise_name",
    "save_to_inbox",
    "sniff_image",
]
