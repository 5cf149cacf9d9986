"""Secrets never reach the logs: the redacting filter, and a full session logged at
DEBUG (python-telegram-bot logs request URLs, which carry the bot token)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import quote, quote_plus

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.cli.logs import RedactingFilter, setup_logging
from tests.support.fakes.anthropic import Text
from tests.support.harness import start_harness, stop_harness


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


# --- encoded forms -----------------------------------------------------------------

AWKWARD = st.text(
    st.one_of(
        st.sampled_from("/\"\\:%+ &=?#'\n\t<>{}éß€😀\u200b"),
        st.characters(blacklist_categories=("Cs",)),
    ),
    min_size=8,
    max_size=40,
)


def _encodings(secret: str) -> dict[str, str]:
    as_json = json.dumps(secret)[1:-1]
    return {
        "raw": secret,
        "json": as_json,
        "json, utf-8": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json, escaped slashes": as_json.replace("/", "\\/"),
        "json in json": json.dumps(json.dumps(secret))[1:-1],
        "percent": quote(secret, safe=""),
        "percent, lower case": re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(secret)),
        "query string": quote_plus(secret),
        "percent in json": json.dumps(quote(secret, safe=""))[1:-1],
        "repr": repr(secret)[1:-1],
    }


@settings(max_examples=300, deadline=None)
@given(secret=AWKWARD, how=st.sampled_from(sorted(_encodings("x"))))
def test_a_secret_is_redacted_however_it_is_encoded(secret: str, how: str) -> None:
    encoded = _encodings(secret)[how]
    assume(encoded not in "[redacted]" and secret not in "[redacted]")
    f = RedactingFilter([secret])
    record = logging.LogRecord(
        "x", logging.DEBUG, __file__, 1, "POST %s body=%s", (f"/x?key={encoded}&y=1", encoded), None
    )
    assert f.filter(record)
    line = record.getMessage()
    assert encoded not in line, (how, line)
    assert line.count("[redacted]") == 2, line


def test_telegram_token_shapes_and_unconfigured_bot_urls() -> None:
    token = '123456789:AAH-abc_def/ghi"jkl'
    f = RedactingFilter([token])
    for line in (
        f"https://api.telegram.org/bot{quote(token, safe='')}/getMe",
        json.dumps({"url": f"https://x/bot{token}/sendMessage"}),
        f"token={quote_plus(token)}",
        "{'token': " + repr(token) + "}",
    ):
        out = f.redact(line)
        assert "AAH-abc_def" not in out and "[redacted]" in out, out
    # a bot token we were not configured with is still cut out of a Bot API URL
    other = f.redact(
        "GET https://api.telegram.org/bot987654:ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ/getMe"
    )
    assert "ZZZZ" not in other and "/bot[redacted]/getMe" in other
    shapes = f.redact(
        "auth xoxb-1234-5678-AbCdEfGhIj and xapp-1-A0B1C2-99-ff00 then syt_YWRh_xYzAbCdEfGh_0a1b2c"
    )
    assert "AbCdEf" not in shapes and "A0B1C2" not in shapes and "xYzAb" not in shapes, shapes
