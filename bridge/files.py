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
`git diff`.  A repository decides what is in its directory, so `.threadline` and
`inbox` are opened (or made) one at a time without following symlinks: a planted
`.threadline -> ~/.ssh` makes the upload fail with a clear note instead of landing
outside the session directory.

Out: `get PATH` sends a file back as an attachment, only from inside the session
directory.  The path is walked from the session directory one component at a time
with `O_NOFOLLOW` (a symlink anywhere in it is refused, so swapping a file for a
link between a check and the read achieves nothing), the file is opened once
(non-blocking, so a FIFO cannot hang us), and the checks are made on what was
opened: a regular file, within the size cap, with no other hard link (a second
name could be a file outside the directory, linked in by whoever wrote the repo).
The bytes sent are read from that same descriptor.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from adapters.messages import (
    Attachment,
    AttachmentTooLarge,
    AttachmentUnavailable,
    FileOut,
    Outbound,
    ThreadRef,
    UserMessage,
)
from bridge import render
from bridge.commands.context import CommandContext
from bridge.commands.registry import Section, command
from bridge.config import AgentConfig
from bridge.nofollow import DIR, LINK_ERRORS, NOFOLLOW_DIR, subdir
from bridge.threads import Threads
from storage.models import SessionRow

if TYPE_CHECKING:
    pass

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
    """Write `data` to the session's inbox under a fresh name; returns the path.
    `FileRefused` if `.threadline` or `.threadline/inbox` is a symlink or a file."""
    fds: list[int] = []
    try:
        fds.append(os.open(cwd, DIR))  # the session directory itself, as the owner chose it
        try:
            fds.append(subdir(fds[-1], INBOX.parts[0]))
            fds.append(subdir(fds[-1], INBOX.parts[1]))
        except OSError as e:
            if e.errno not in LINK_ERRORS:
                raise
            raise FileRefused(
                f"{INBOX} in the session directory is a symbolic link or not a directory; "
                "attachments are not saved through it"
            ) from None
        top, inbox = fds[1], fds[2]
        try:
            # O_EXCL: never overwrite a file, never follow a planted symlink.
            fd = os.open(".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=top)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("*\n")
        except FileExistsError:
            pass
        safe = sanitise_name(name)
        stem, dot, ext = safe.rpartition(".")
        if not dot or not stem:
            stem, ext = safe, ""
        for n in range(1000):
            candidate = safe if n == 0 else f"{stem}-{n}{'.' + ext if ext else ''}"
            try:
                fd = os.open(
                    candidate,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=inbox,
                )
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return cwd / INBOX / candidate
        raise FileRefused(f"too many files named {safe} in the inbox")
    finally:
        for fd in fds:
            os.close(fd)


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
        except FileRefused as e:  # a planted symlink: say so, the person can fix it
            log.warning("saving attachment %r refused: %s", a.name[:100], e)
            notes.append(f"[{sanitise_name(a.name)} could not be saved: {e}]")
            continue
        except OSError as e:
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


def _parts_inside(cwd: str, raw: str) -> list[str]:
    """The path components of `raw` below the session directory, `..` applied to the
    text (nothing on disk is followed); `FileRefused` if it leaves the directory."""
    if not raw or "\x00" in raw:
        raise FileRefused("which file? `get PATH`, relative to the session directory")
    candidate = Path(os.path.expanduser(raw)) if raw.startswith("~/") else Path(raw)
    if candidate.is_absolute():
        for root in (Path(cwd), Path(cwd).resolve()):
            if candidate.is_relative_to(root):
                candidate = candidate.relative_to(root)
                break
        else:
            raise FileRefused(f"{raw} is outside the session directory")
    parts: list[str] = []
    for part in candidate.parts:
        if part == "..":
            if not parts:
                raise FileRefused(f"{raw} is outside the session directory")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    if not parts:
        raise FileRefused(f"{raw} is not a regular file")
    return parts


def _refusal(e: OSError, raw: str, name: str, parent: int) -> FileRefused | None:
    """What to tell the person when opening `name` in `parent` failed, if it is their
    path's fault rather than the machine's."""
    if e.errno in (errno.ENOENT, errno.ENAMETOOLONG):
        return FileRefused(f"{raw} does not exist")
    if e.errno in LINK_ERRORS:
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        if link:
            return FileRefused(
                f"{raw} goes through a symbolic link ({name}); `get` follows no links, "
                "so nothing outside the session directory is sent"
            )
        return FileRefused(f"{raw} does not exist")
    if e.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
        return FileRefused(f"{raw} is not a regular file")
    return None


def read_inside(cwd: str, raw: str, *, max_bytes: int) -> tuple[bytes, Path]:
    """The bytes of the regular file `raw` names, relative to `cwd`, and its path
    relative to the session directory — if it is really inside (no symlink on the
    way), has no other hard link and is within `max_bytes`; else `FileRefused`."""
    parts = _parts_inside(cwd, raw)
    fd = os.open(cwd, DIR)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            flags = (os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                     if last else NOFOLLOW_DIR)  # fmt: skip
            try:
                nxt = os.open(name, flags, dir_fd=fd)
            except UnicodeEncodeError:  # a name no file on this system can have
                raise FileRefused(f"{raw} does not exist") from None
            except OSError as e:
                refused = _refusal(e, raw, name, fd)
                if refused is None:
                    raise
                raise refused from None
            os.close(fd)
            fd = nxt
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"{raw} is not a regular file")
        if st.st_nlink != 1:
            raise FileRefused(
                f"{raw} has {st.st_nlink} hard links; `get` sends only files with one name, "
                "since another name could be a file outside the session directory"
            )
        if st.st_size > max_bytes:
            raise FileRefused(f"{raw} is {_size(st.st_size)}; the limit is {_size(max_bytes)}")
        chunks: list[bytes] = []
        total = 0
        while total <= max_bytes and (chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:  # it grew since fstat
            raise FileRefused(f"{raw} is over the limit of {_size(max_bytes)}")
        return b"".join(chunks), Path(*parts)
    finally:
        os.close(fd)


@command(
    "get",
    usage="PATH",
    help="send a file from the session directory",
    section=Section.FILES,
    in_session=True,
)
async def cmd_get(ctx: CommandContext) -> None:
    """`get PATH`: the file as an attachment in the session's thread."""
    session, b, sender = ctx.session, ctx.services, ctx.sender
    assert session is not None
    raw = (ctx.command.path or "").strip()
    thread = b.thread_of(session.id) or ctx.thread
    if not raw:
        b.reply(
            thread,
            render.notice(
                f"Which file? {render.cmd(thread.platform, 'get PATH')}, "
                "relative to the session directory."
            ),
        )
        return
    try:
        data, rel = await asyncio.to_thread(
            read_inside, session.cwd, raw, max_bytes=max_bytes(b.config.agent)
        )
    except FileRefused as e:
        b.db.audit.log(
            platform=sender.platform,
            user=sender.key,
            action="get",
            detail=f"refused {raw[:200]}: {e}",
            allowed=False,
        )
        b.reply(thread, render.notice(f"🚫 {render.md_escape(str(e))}"))
        return
    except OSError as e:
        b.reply(thread, render.notice(f"Could not read {render.md_escape(raw)}: {e.strerror}"))
        return
    b.db.audit.log(platform=sender.platform, user=sender.key, action="get", detail=str(rel))
    b.reply(thread, Outbound(file=FileOut(rel.name, data, caption=str(rel))), session_id=session.id)


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
    threads: Threads, limit: int, session: SessionRow, msg: UserMessage, thread: ThreadRef
) -> tuple[str, list[tuple[str, bytes]] | None] | None:
    """A chat message's prompt text and images (documents saved to the inbox; each file
    at most `limit` bytes), or None when nothing is left to send (its only file was left
    out; `thread` is told)."""
    if not msg.attachments:
        return msg.text, None
    got, left_out = await fetch_attachments(msg.attachments, limit)
    if left_out:
        listed = "; ".join(f"{render.md_escape(n)} ({why})" for n, why in left_out)
        threads.reply(thread, render.notice(f"📎 Not attached: {listed}."), session_id=session.id)
    if not got and not msg.text.strip():
        return None
    notes = [f"[{n} was sent but not attached: {why}]" for n, why in left_out]
    prepared = await asyncio.to_thread(
        prepare_prompt, msg.text, got, Path(session.cwd), max_bytes=limit, notes=notes
    )
    return prepared.text, prepared.images


def max_bytes(agent: AgentConfig) -> int:
    """The size cap for a file in either direction (`[agent] max_file_mb`)."""
    return int(agent.max_file_mb * 2**20)


__all__ = [
    "FileRefused",
    "PreparedPrompt",
    "cmd_get",
    "fetch_attachments",
    "prepare_prompt",
    "read_inside",
    "sanitise_name",
    "save_to_inbox",
    "sniff_image",
]
