"""The inbound side of the Telegram adapter: updates (long polling, or a webhook with
a verified secret token) → the bridge's sink.

Every callback query is answered first — the person's client spins until it is —
then parsed (`adapters.telegram.inbound`) into a `ButtonPress`; a new message
becomes a `UserMessage` with its files wrapped as lazy attachments (the bridge
downloads them only for an owner).  Anything else (edits, service messages, the
bot's own) is dropped here.  A failure on one update is logged and never stops the
others.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

from telegram import Bot, Update
from telegram.error import Conflict, TelegramError
from telegram.ext import Application, ContextTypes, TypeHandler

from adapters.base import InboundSink
from adapters.messages import Inbound
from adapters.telegram import client, inbound
from adapters.telegram.config import TelegramConfig
from adapters.telegram.errors import TelegramErrors

log = logging.getLogger(__name__)


class Receiver:
    def __init__(
        self, config: TelegramConfig, errors: TelegramErrors, bot: Callable[[], Bot]
    ) -> None:
        self.config = config
        self.errors = errors
        self._bot = bot
        self.sink: InboundSink | None = None

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        app.add_handler(TypeHandler(Update, self.on_update))
        app.add_error_handler(self.on_error)

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
