"""Secrets never reach the logs: the redacting filter, and a full session logged at
DEBUG (python-telegram-bot logs request URLs, which carry the bot token)."""

from __future__ import annotations

import logging
from pathlib import Path

from bridge.logs import RedactingFilter, setup_logging
from tests.fakes.anthropic import Text
from tests.harness import start_harness, stop_harness


def test_filter_redacts_message_args_and_tracebacks() -> None:
    f = RedactingFilter(["s3cr3t-token-value"])
    try:
        raise RuntimeError("failed calling https://api/bots3cr3t-token-value/getMe")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "url %s",
            ("https://h/bots3cr3t-token-value/x",),
            sys.exc_info(),
        )
    assert f.filter(record)
    assert "s3cr3t-token-value" not in record.getMessage()
    assert "[redacted]" in record.getMessage()
    assert (
        record.exc_text
        and "s3cr3t-token-value" not in record.exc_text
        and "RuntimeError" in record.exc_text
    )


async def test_a_whole_session_logged_at_debug_contains_no_token(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    log_file = tmp_path / "daemon.log"
    h = await start_harness(tmp_path)
    try:
        setup_logging("DEBUG", h.config.secrets(), str(log_file))
        logging.getLogger("httpx").setLevel(logging.DEBUG)  # the noisiest place a token could leak
        h.model.on("log me", Text("Logged."))
        topic, _ = await h.new_session(str(h.root / "app"), "log me")
        await h.wait_text("Logged.", thread_id=topic)
    finally:
        await stop_harness(h)
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("httpx").setLevel(httpx_level)
        logging.getLogger("apscheduler").setLevel(logging.NOTSET)
    text = log_file.read_text()
    assert "sendMessage" in text, "the log did capture the Bot API traffic"
    assert h.tg.token not in text
    assert h.tg.token.split(":")[1] not in text
