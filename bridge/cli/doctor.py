"""`threadline doctor`: check each part a running daemon needs and say how to fix
what is wrong.  Returns the number of failed checks (the CLI exits 1 if any)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rich.console import Console

from bridge.cli.doctor_out import _fail, _ok, _warn
from bridge.config import Config


def run_checks(cfg: Config, out: Console) -> int:
    from bridge.cli.daemon import open_database
    from bridge.cli.main import claude_cli_path, claude_version

    failures = 0
    try:
        db = open_database(cfg)
        db.check()
        _ok(out, f"database {db.url.split('@')[-1]}")
        db.close()
    except Exception as e:  # any driver error is a failed check, not a crash
        failures += 1
        _fail(
            out,
            f"database: {type(e).__name__}: {str(e)[:200]}",
            "check [storage] url and that its directory is writable",
        )

    for root in cfg.agent.allowed_roots:
        path = Path(os.path.expanduser(root))
        if path.is_dir():
            _ok(out, f"allowed root {path}")
        else:
            failures += 1
            _fail(
                out,
                f"allowed root {root} does not exist",
                f"create it (mkdir -p {root}) or fix [agent] allowed_roots",
            )

    cli = claude_cli_path(cfg.agent.cli_path)
    version = claude_version(cli) if cli else None
    if version:
        _ok(out, f"Claude Code CLI {version} ({cli})")
    else:
        failures += 1
        _fail(
            out,
            "Claude Code CLI not found or not runnable",
            "reinstall claude-agent-sdk (it bundles the CLI) or set [agent] cli_path",
        )
    if not (
        os.environ.get("ANTHROPIC_API_KEY")
        or os.environ.get("CLAUDE_CODE_OAUTH_TOKEN")
        or Path("~/.claude").expanduser().exists()
    ):
        _warn(
            out,
            "no ANTHROPIC_API_KEY and no Claude Code login found",
            "export ANTHROPIC_API_KEY, or run `claude` once and log in",
        )

    if cfg.telegram.enabled:
        failures += asyncio.run(_check_telegram(cfg, out))
    if cfg.slack.enabled:
        from bridge.cli.doctor_slack import check_slack

        failures += check_slack(cfg, out)
    if cfg.matrix.enabled:
        from bridge.cli.doctor_matrix import check_matrix

        failures += check_matrix(cfg, out)
    return failures


async def _check_telegram(cfg: Config, out: Console) -> int:
    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError

    bot = (
        Bot(cfg.telegram.token, base_url=cfg.telegram.base_url)
        if cfg.telegram.base_url
        else Bot(cfg.telegram.token)
    )
    try:
        async with bot:
            me = await bot.get_me()
            topics = bool(
                getattr(me, "has_topics_enabled", False)
                or (me.api_kwargs or {}).get("has_topics_enabled")
            )
    except InvalidToken:
        _fail(
            out,
            "Telegram: the bot token was rejected",
            "copy the token from @BotFather into [telegram] token (or $TELEGRAM_BOT_TOKEN)",
        )
        return 1
    except TelegramError as e:
        _fail(
            out,
            f"Telegram: getMe failed: {type(e).__name__}",
            "check the network and [telegram] base_url",
        )
        return 1
    _ok(out, f"Telegram bot @{me.username}")
    from bridge.cli.daemon import all_owners

    if not any(o.startswith("telegram:") for o in all_owners(cfg)):
        _fail(
            out,
            "Telegram: no telegram owner in [access] owners and none paired",
            "run `threadline pair` and open the link, or add 'telegram:<your user id>' to [access] owners",
        )
        return 1
    if cfg.telegram.chat_id:
        _ok(out, f"Telegram: sessions open as topics in chat {cfg.telegram.chat_id}")
    elif topics:
        _ok(
            out, "Telegram: topic mode is on — each session gets its own topic in your private chat"
        )
    else:
        _warn(
            out,
            "Telegram: the bot has no topic mode — sessions will be reply chains in your private chat",
            "in @BotFather open your bot → Bot Settings → enable Threaded Mode (topics), or set [telegram] chat_id to a forum supergroup",
        )
    return 0
