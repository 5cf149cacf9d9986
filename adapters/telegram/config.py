"""The ``[telegram]`` config section and what is wrong with it beyond types."""

from __future__ import annotations

import re
from typing import Literal

from adapters.spec import PlatformConfig

_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]{20,}")


class TelegramConfig(PlatformConfig):
    token: str = ""
    base_url: str = ""
    chat_id: int = 0
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: str = ""
    use_drafts: bool = True  # sendMessageDraft streaming in private chats

    def secrets(self) -> list[str]:
        return [self.token, self.webhook_secret]

    def problems(self) -> list[str]:
        errors: list[str] = []
        if not _TOKEN.fullmatch(self.token):
            errors.append(
                "telegram.token: not a bot token (expected '123456:ABC…' from @BotFather)"
            )
        if self.mode == "webhook" and not self.webhook_url:
            errors.append("telegram.webhook_url: needed when telegram.mode = 'webhook'")
        return errors
