"""Streaming an inbound attachment within a size cap; shared by the adapters.

Adapters never download what a person sends when the message arrives: they hand the
bridge an `Attachment` whose `fetch(limit)` downloads on demand, and the bridge calls
it only after the sender passed the access check.  A fetch streams: the announced
size is checked first (an oversized file is never requested), and the body is read
chunk by chunk and abandoned as soon as it passes the cap, whatever the platform
announced — so a stranger cannot make the daemon download anything, and an owner's
huge file costs at most the cap in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from adapters.messages import AttachmentTooLarge

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
