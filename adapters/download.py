"""Streaming an inbound attachment within a size cap; shared by the adapters.

Adapters never download what a person sends when the message arrives: they hand the
bridge an `Attachment` whose `fetch(limit)` downloads on demand, and the bridge calls
it only after the sender passed the access check.  A fetch streams: the announced
size is checked first (an oversized file is never requested), and the body is read
chunk by chunk and abandoned as soon as it passes the cap, whatever the platform
announced — so a stranger cannot make the daemon download anything, and an owner's
huge file costs at most the cap in memory.

Each adapter describes what someone sent as a `FileRef` while parsing and turns it
into the bridge's `Attachment` with `attachment()`, giving only the platform's
download (`get_capped` for a plain authenticated HTTP GET).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from adapters.messages import Attachment, AttachmentTooLarge, AttachmentUnavailable

CHUNK = 64 * 1024


def check_announced(name: str, size: int | None, limit: int) -> None:
    """Refuse before any request when the platform says the file is too big."""
    if size is not None and size > limit:
        raise AttachmentTooLarge(name, limit, size)


async def read_capped(chunks: AsyncIterator[bytes], *, name: str, limit: int) -> bytes:
    """The body from `chunks`, or `AttachmentTooLarge` as soon as it passes `limit`
    (the caller's stream is then abandoned, closing the connection)."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise AttachmentTooLarge(name, limit)
    return bytes(buf)


@dataclass(frozen=True, slots=True)
class FileRef:
    """An attachment someone sent, to download on demand."""

    kind: Literal["image", "file"]
    source: str  # where from: a Telegram file_id, a Slack url_private, a Matrix mxc URL
    name: str
    mime: str
    size: int | None  # as the platform announced it; None when unknown
    limit: int  # the platform's own cap for this kind of file
    crypto: dict[str, Any] | None = None  # Matrix, encrypted rooms: the key, iv and hashes


def attachment(
    ref: FileRef,
    download: Callable[[int], Awaitable[bytes]],
    *,
    precheck: Callable[[], None] | None = None,
) -> Attachment:
    """The bridge's lazy `Attachment` for `ref`: nothing is requested until the bridge
    calls `fetch(limit)` (after its access check); then `precheck` may refuse it, a
    file announced as bigger than the cap (the bridge's limit or the platform's) is
    refused without a request, and `download(cap)` fetches the body within the cap."""

    async def fetch(limit: int) -> bytes:
        if precheck is not None:
            precheck()
        cap = min(limit, ref.limit)
        check_announced(ref.name, ref.size, cap)
        return await download(cap)

    return Attachment(ref.kind, ref.name, ref.mime, ref.size, fetch)


async def get_capped(
    session: aiohttp.ClientSession,
    url: str,
    *,
    token: str,
    name: str,
    limit: int,
    what: str,
    **kw: Any,
) -> bytes:
    """GET `url` with the bearer `token`, no redirects (they would carry the token
    elsewhere), streamed within `limit`; another status than 200 is
    `AttachmentUnavailable` ("`what` answered 404").  Connection errors are the
    caller's to translate."""
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(url, headers=headers, allow_redirects=False, **kw) as r:
        if r.status != 200:
            raise AttachmentUnavailable(f"{what} answered {r.status}")
        return await read_capped(r.content.iter_chunked(CHUNK), name=name, limit=limit)
