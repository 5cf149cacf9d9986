"""The inbound side of the Telegram adapter: updates (long polling, or a webhook with
a verified secret token) → the bridge's sink.

Every callback query is answered first — the person's client spins until it is —
then parsed (`adapters.telegram.inbound`) into a `ButtonPress`; a new message
becomes a `UserMessage` with its files wrapped as lazy attachments (the bridge
downloads them only for an owner).  Anything else (edits, service messages, the
bot's own) is dropped here.  A failure on one update is logged and never stops the
others.

While the Bot API is unreachable, long polling probes again every ~2 s (`PollOutage`:
0.5, 1, 2, 2 … s, each with jitter), so it resumes within a couple of seconds of the
API coming back rather than after PTB's backoff of up to 30 s; one small `getUpdates`
every 1.5–2 s is no load.  The outage is logged once when it starts and once when it
ends.  A 429's `retry_after` is left to PTB, which waits it out.  With a receive
`gate` (the gateway's `may_send`), long polling takes no updates while it is shut
(`client.TolerantBot`): they stay unconfirmed for the host that is the gateway now.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

from telegram import Bot, Update
from telegram.error import Conflict, NetworkError, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler

from adapters.base import InboundSink
from adapters.messages import Inbound
from adapters.telegram import client, inbound
from adapters.telegram.config import TelegramConfig
from adapters.telegram.errors import TelegramErrors

log = logging.getLogger(__name__)

PROBE_FIRST_S = 0.5  # the first retry after a failed poll
PROBE_MAX_S = 2.0  # then doubling up to this: polling resumes ≤ ~2 s after an outage
PROBE_JITTER = 0.25  # each wait is shortened by up to this fraction


class PollOutage:
    """The wait between long polls while the Bot API fails (`client.TolerantBot`),
    and the log lines an outage gets: one when it starts, one when it ends."""

    def __init__(
        self,
        redact: Callable[[str], str],
        *,
        first: float = PROBE_FIRST_S,
        maximum: float = PROBE_MAX_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first, self.maximum = first, maximum
        self._redact, self._sleep, self._clock = redact, sleep, clock
        self.failures = 0  # consecutive failed polls
        self._since = 0.0

    def delay(self) -> float:
        """The wait after the current run of `failures`."""
        base = min(self.maximum, self.first * 2.0 ** min(self.failures - 1, 16))
        return base * random.uniform(1.0 - PROBE_JITTER, 1.0)

    async def failed(self, error: NetworkError) -> None:
        self.failures += 1
        if self.failures == 1:
            self._since = self._clock()
            log.warning(
                "Telegram polling: %s; probing every ~%g s until it answers",
                self._redact(str(error)),
                self.maximum,
            )
        else:
            log.debug("Telegram polling still failing: %s", self._redact(str(error)))
        await self._sleep(self.delay())

    def succeeded(self) -> None:
        if self.failures:
            log.warning(
                "Telegram polling resumed after %.1f s (%d failed polls)",
                self._clock() - self._since,
                self.failures,
            )
            self.failures = 0


class Receiver:
    def __init__(
        self, config: TelegramConfig, errors: TelegramErrors, bot: Callable[[], Bot]
    ) -> None:
        self.config = config
        self.errors = errors
        self._bot = bot
        self.sink: InboundSink | None = None
        self.outage = PollOutage(errors.redact)
        # Whether this process may take updates now (the gateway's `may_send`); None: always.
        self.gate: Callable[[], bool] | None = None

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        app.add_handler(TypeHandler(Update, self.on_update))
        app.add_error_handler(self.on_error)
        if isinstance(app.bot, client.TolerantBot):
            app.bot.set_poll_outage(self.outage)
            if self.gate is not None:
                app.bot.set_receive_gate(self.gate)

    async def start_updates(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        updater = app.updater
        assert updater is not None
        if self.config.mode == "webhook":
            url_path = urlparse(self.config.webhook_url).path.strip("/") or "telegram"
            # Telegram sends the secret back in a header that PTB checks; with none
            # configured we still register a random one so no stranger can post updates.
            secret = self.config.webhook_secret or secrets.token_urlsafe(32)
            await updater.start_webhook(
                listen=self.config.webhook_listen,
                port=self.config.webhook_port,
                url_path=url_path,
                webhook_url=self.config.webhook_url or None,
                secret_token=secret,
                allowed_updates=list(client.ALLOWED_UPDATES),
                drop_pending_updates=False,
            )
        else:
            await updater.start_polling(
                timeout=client.POLL_TIMEOUT_S,
                allowed_updates=list(client.ALLOWED_UPDATES),
                drop_pending_updates=False,
                error_callback=self.on_poll_error,
            )

    async def on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            if update.callback_query is not None:
                query = update.callback_query
                try:  # always, first: the person's client spins until it is answered
                    await query.answer()
                except TelegramError as e:
                    log.debug("answerCallbackQuery failed: %s", self.errors.redact(str(e)))
                press = inbound.parse_callback(query)
                if press is None:
                    log.debug("dropping callback query %s without a usable message", query.id)
                    return
                await self.deliver(press)
                return
            parsed = inbound.parse_message(update)
            if parsed is None:
                log.debug("ignoring update %s (not a person's new message)", update.update_id)
                return
            msg = parsed.message
            if parsed.files:  # downloaded by the bridge, and only for an owner
                attachments = tuple(
                    client.attachment(self._bot(), ref, self.errors.redact) for ref in parsed.files
                )
                msg = replace(msg, attachments=attachments)
            await self.deliver(msg)
        except Exception:
            log.exception("dropping malformed update %s", getattr(update, "update_id", "?"))

    async def deliver(self, event: Inbound) -> None:
        if self.sink is None:
            return
        try:
            await self.sink(event)
        except Exception:
            log.exception("the bridge failed on an inbound Telegram event")

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("Telegram handler error: %s", self.errors.redact(repr(context.error)))

    def on_poll_error(self, error: TelegramError) -> None:
        if isinstance(error, Conflict):
            log.error("another process is polling this bot token (or a webhook is set); stop it")
        else:
            log.warning("Telegram polling: %s", self.errors.redact(str(error)))
