"""Telegram as the core sees it: the platform spec `PLATFORM` (config section, adapter
factory, doctor checks, pairing hint).  The platform library is imported only when
one of them is called."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapters.base import ChatAdapter
from adapters.spec import CheckResult, PairingHint, PlatformSpec, SetupField
from adapters.telegram.config import TelegramConfig


def _create(config: TelegramConfig, owners: Sequence[str]) -> ChatAdapter:
    from adapters.telegram.adapter import TelegramAdapter

    return TelegramAdapter(config, owners_hint=owners)


async def _doctor(config: TelegramConfig, owners: Sequence[str]) -> list[CheckResult]:
    from adapters.telegram import doctor

    return await doctor.check(config, owners)


async def _pairing(config: TelegramConfig, code: str) -> PairingHint:
    """The deep link (the bot's name from getMe), or what to send if the bot cannot be
    reached."""
    from telegram import Bot
    from telegram.error import TelegramError

    async def username() -> str:
        bot = Bot(config.token, base_url=config.base_url or "https://api.telegram.org/bot")
        async with bot:
            return (await bot.get_me()).username or ""

    try:
        name = await asyncio.wait_for(username(), timeout=15)
    except (TelegramError, TimeoutError, OSError) as e:
        name, why = "", type(e).__name__
    else:
        why = "it has no username"
    if not name:
        return PairingHint(
            (
                f"Telegram: the bot could not be reached ({why}), so there is no link;"
                f" send [bold]/start {code}[/bold] (or /pair {code}) to the bot.",
            )
        )
    link = f"https://t.me/{name}?start={code}"
    return PairingHint((f"Telegram: open {link}  (or send /start {code} to @{name})",), link)


PLATFORM: PlatformSpec[TelegramConfig] = PlatformSpec(
    name="telegram",
    title="Telegram",
    config_model=TelegramConfig,
    owner_example="telegram:ID",
    command_prefix="/",
    create=_create,
    doctor=_doctor,
    pairing=_pairing,
    setup=(
        SetupField("token", "Bot token (from @BotFather)", env="TELEGRAM_BOT_TOKEN", secret=True),
    ),
)
