"""A bare python-telegram-bot polling bot: the floor for start-up time and memory.

`benchmarks/run.py` runs it as a process against the fake Bot API, exactly like the
daemon: `python benchmarks/bare_bot.py TOKEN BASE_URL`.  It answers nothing; it only
initialises (getMe), starts polling (deleteWebhook, getUpdates) and waits for SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from telegram import Update
from telegram.ext import Application, ContextTypes, TypeHandler


async def _ignore(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    return None


async def start_bare_bot(token: str, base_url: str) -> Any:
    """Build, initialise and start polling; returns the running Application."""
    app = Application.builder().token(token).base_url(base_url).build()
    app.add_handler(TypeHandler(Update, _ignore))
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(timeout=20)
    return app


async def stop_bare_bot(app: Any) -> None:
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    await app.stop()
    await app.shutdown()


async def main(token: str, base_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = await start_bare_bot(token, base_url)
    await stop.wait()
    await stop_bare_bot(app)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
