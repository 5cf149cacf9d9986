"""`threadline doctor` for Telegram: is the bot token good, is there a Telegram owner,
and where sessions will open (a forum chat, topics in the private chat, or reply
chains).  Returns the results; `bridge.cli.doctor` prints them."""

from __future__ import annotations

from collections.abc import Sequence

from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from adapters.spec import CheckResult, fail, ok, warn
from adapters.telegram.config import TelegramConfig


async def check(cfg: TelegramConfig, owners: Sequence[str]) -> list[CheckResult]:
    bot = Bot(cfg.token, base_url=cfg.base_url) if cfg.base_url else Bot(cfg.token)
    try:
        async with bot:
            me = await bot.get_me()
            topics = bool(
                getattr(me, "has_topics_enabled", False)
                or (me.api_kwargs or {}).get("has_topics_enabled")
            )
    except InvalidToken:
        return [
            fail(
                "Telegram: the bot token was rejected",
                "copy the token from @BotFather into [telegram] token (or $TELEGRAM_BOT_TOKEN)",
            )
        ]
    except TelegramError as e:
        return [
            fail(
                f"Telegram: getMe failed: {type(e).__name__}",
                "check the network and [telegram] base_url",
            )
        ]
    results = [ok(f"Telegram bot @{me.username}")]
    if not any(o.startswith("telegram:") for o in owners):
        results.append(
            fail(
                "Telegram: no telegram owner in [access] owners and none paired",
                "run `threadline pair` and open the link, or add 'telegram:<your user id>' to [access] owners",
            )
        )
        return results
    if cfg.chat_id:
        results.append(ok(f"Telegram: sessions open as topics in chat {cfg.chat_id}"))
    elif topics:
        results.append(
            ok("Telegram: topic mode is on — each session gets its own topic in your private chat")
        )
    else:
        results.append(
            warn(
                "Telegram: the bot has no topic mode — sessions will be reply chains in your private chat",
                "in @BotFather open your bot → Bot Settings → enable Threaded Mode (topics), or set [telegram] chat_id to a forum supergroup",
            )
        )
    return results
