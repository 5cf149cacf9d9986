"""Building the python-telegram-bot `Application` the adapter runs on.

One place for the transport choices: the Bot API base URL (a self-hosted or fake
server), HTTP timeouts sized for long polling and 50 MB uploads, no PTB rate limiter
(the bridge's outbox paces every chat itself), the "/" command menu, and downloading
inbound attachments (lazily: only when the bridge asks, after its access check;
streamed, within their size caps).  It also
hardens long polling: PTB parses a `getUpdates` batch as a whole, so a single update
it cannot parse would make it fetch the same batch forever; `TolerantBot` drops just
that update and lets the offset move on.  And it keeps polling close behind an
outage: PTB's own retry loop backs off up to 30 s on network errors (so polling
resumed ~15 s after a 60 s outage ended); `TolerantBot` hands a long poll's network
error to its outage handler instead (`adapters.telegram.receiver.PollOutage`: a short,
capped, jittered wait), and PTB then simply polls again.  A 429's `retry_after`, a
conflict or a bad token still go to PTB's loop, which honours them.

On several hosts only the chat account's gateway may take updates (`bridge/gateway.py`).
A gateway that stalled (SIGSTOP, a long pause) can wake to a long poll that Telegram
answered meanwhile, after its lease passed: `TolerantBot` asks its *receive gate*
(`set_receive_gate`, the gateway's `may_receive`) about every batch and, while it says
no, hands PTB nothing — neither handled here nor confirmed (PTB moves its offset only
past updates it was given), so the next gateway gets them again from `getUpdates`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeGuard

import httpx
from telegram import Bot, BotCommand, Update
from telegram.error import BadRequest, NetworkError, TelegramError, TimedOut
from telegram.ext import Application, ExtBot
from telegram.request import HTTPXRequest

from adapters import download
from adapters.download import CHUNK, FileRef, check_announced, read_capped
from adapters.messages import Attachment, AttachmentUnavailable, ChatCommand
from adapters.telegram import limits
from adapters.telegram.config import TelegramConfig

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "callback_query")
POLL_TIMEOUT_S = 20  # long-poll hold; stop() cancels a poll in flight
GATED_WAIT_S = 0.5  # a host that may not take updates polls no faster than this
# A Bot API call that has not answered by then is abandoned (PTB `TimedOut`, which the
# outbox retries with backoff): the chat's delivery waits on it meanwhile.
REQUEST_TIMEOUT_S = 30.0


def menu(commands: Sequence[ChatCommand]) -> list[BotCommand]:
    """setMyCommands entries for the commands the bridge offers (`set_commands`)."""
    out: list[BotCommand] = []
    for c in commands:
        text = f"{c.usage} — {c.description}" if c.usage else c.description
        out.append(BotCommand(c.name, text[: limits.MAX_COMMAND_DESCRIPTION]))
    return out


def file_url(base_url: str) -> str:
    """``http://host:8081/bot`` → ``http://host:8081/file/bot`` (the Bot API layout)."""
    head, sep, _ = base_url.rstrip("/").rpartition("/bot")
    return f"{head}/file/bot" if sep else base_url.rstrip("/") + "/file/bot"


class OutageHandler(Protocol):
    """What a long poll does about the Bot API being unreachable."""

    async def failed(self, error: NetworkError) -> None:
        """The poll failed: log, and wait before the next one."""

    def succeeded(self) -> None:
        """A poll was answered."""


def is_outage(error: TelegramError) -> TypeGuard[NetworkError]:
    """Unreachable or failing (connection refused or reset, 5xx), not a refusal of
    the request itself.  (A timeout PTB retries at once by itself.)"""
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest | TimedOut)


class TolerantBot(ExtBot[None]):
    """An `ExtBot` whose `get_updates` survives an update PTB can't parse, retries
    soon after a network error (`set_poll_outage`), and takes no updates while its
    receive gate is shut (`set_receive_gate`)."""

    _poll_outage: OutageHandler | None = None
    _receive_gate: Callable[[], bool] | None = None

    def set_poll_outage(self, outage: OutageHandler) -> None:
        self._poll_outage = outage  # (PTB freezes public attributes after __init__)

    def set_receive_gate(self, gate: Callable[[], bool]) -> None:
        """`gate()` false: updates are not this process's to take (not the gateway)."""
        self._receive_gate = gate

    async def _gated(self, updates: tuple[Update, ...]) -> tuple[Update, ...]:
        """`updates`, or none while the gate is shut: then PTB neither handles nor
        confirms them, and Telegram hands them to the next poller (the gateway)."""
        if not updates or self._receive_gate is None or self._receive_gate():
            return updates
        log.warning(
            "Telegram: %d update(s) reached this host while it takes none (not the gateway,"
            " or stopping); left unconfirmed for the next poller (ids %d-%d)",
            len(updates),
            updates[0].update_id,
            updates[-1].update_id,
        )
        await asyncio.sleep(GATED_WAIT_S)  # a poll answered at once would spin otherwise
        return ()

    async def get_updates(
        self,
        offset: int | None = None,
        limit: int | None = None,
        timeout: Any = None,  # noqa: ASYNC109 - PTB's signature
        allowed_updates: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> tuple[Update, ...]:
        try:
            updates = await super().get_updates(offset, limit, timeout, allowed_updates, **kwargs)
        except TelegramError as e:
            # Only a long poll: PTB's last call at shutdown (timeout 0) fails as before.
            if self._poll_outage is None or not timeout or not is_outage(e):
                raise
            await self._poll_outage.failed(e)
            return ()  # "no updates": PTB polls again at once
        except Exception:
            pass  # PTB logged the batch; refetch it raw (not yet confirmed) and parse one by one
        else:
            if self._poll_outage is not None:
                self._poll_outage.succeeded()
            return await self._gated(updates)
        data = {"offset": offset, "limit": limit, "timeout": 0, "allowed_updates": allowed_updates}
        raw = await self._post("getUpdates", {k: v for k, v in data.items() if v is not None})
        out: list[Update] = []
        for item in raw if isinstance(raw, list) else ():
            update_id = item.get("update_id") if isinstance(item, dict) else None
            if not isinstance(update_id, int):
                continue
            try:
                update = Update.de_json(item, self)
            except Exception:
                log.warning("dropping Telegram update %s that could not be parsed", update_id)
                update = Update(update_id=update_id)  # empty: moves the offset past it
            out.append(update)
        return await self._gated(tuple(out))


def build_application(config: TelegramConfig) -> Application[Any, Any, Any, Any, Any, Any]:
    base_url = config.base_url or "https://api.telegram.org/bot"
    bot = TolerantBot(
        config.token,
        base_url=base_url,
        base_file_url=file_url(base_url),
        request=HTTPXRequest(
            connection_pool_size=32,
            connect_timeout=10,
            read_timeout=REQUEST_TIMEOUT_S,
            write_timeout=REQUEST_TIMEOUT_S,
            pool_timeout=10,
            media_write_timeout=120,
        ),
        get_updates_request=HTTPXRequest(
            connection_pool_size=2, connect_timeout=10, read_timeout=10, pool_timeout=10
        ),
    )
    return Application.builder().bot(bot).build()


def attachment(bot: Bot, ref: FileRef, redact: Callable[[str], str]) -> Attachment:
    """The bridge's lazy `Attachment` for a file someone sent (`adapters.download`):
    getFile is skipped when Telegram already announced the file as too big; the file
    URL is streamed, stopping at the cap."""

    async def body(cap: int) -> bytes:
        try:
            tg_file = await bot.get_file(ref.source)
        except TelegramError as e:
            raise AttachmentUnavailable(redact(str(e))) from None
        check_announced(ref.name, tg_file.file_size, cap)
        url = tg_file.file_path or ""  # PTB makes it the full file URL (with the token)
        if not url.startswith(("https://", "http://")):
            raise AttachmentUnavailable("Telegram gave no file URL")
        try:
            async with (
                httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0)) as http,
                http.stream("GET", url) as r,
            ):
                if r.status_code != 200:
                    raise AttachmentUnavailable(f"file download answered {r.status_code}")
                return await read_capped(r.aiter_bytes(CHUNK), name=ref.name, limit=cap)
        except httpx.HTTPError as e:
            raise AttachmentUnavailable(redact(f"{type(e).__name__}: {e}")) from None

    return download.attachment(ref, body)
