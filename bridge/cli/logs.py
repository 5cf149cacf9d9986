"""Logging set-up with secret redaction, and log files only the owner can read.

Every configured secret (bot tokens, app tokens, passwords, signing secrets) is
replaced by ``[redacted]`` in every log record before it is written — including
URLs that libraries log with the bot token inside them, and the secret's encoded
forms: a library that logs a JSON body writes `/` as `\\/`, `"` as `\\"` and
non-ASCII as `\\uXXXX`; a URL carries `:` as `%3A`; a dict's repr doubles
backslashes.  Each character of a secret is matched in any of those spellings, so a
mix (a percent-encoded token inside a JSON string) is caught too.  A Telegram bot
token in a `/bot<TOKEN>/` URL path, and anything shaped like a Slack token
(`xoxb-…`, `xapp-…`) or a Synapse access token (`syt_…`), is redacted even when it
is not one we were configured with.  Credentials no config names are redacted by their field name:
matrix-nio logs the login response at DEBUG, with the access token the homeserver
just issued in it.

The log file is created mode 0600 (its directory 0700 when we create it): logs can
hold prompts, paths and tool output.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

REDACTED = "[redacted]"

# `'access_token': 'syt_…'`, `"refresh_token":"…"`, `access_token=…` (JSON, a dict's
# repr, a query string).
_TOKEN_FIELD = re.compile(
    r"""((?:access|refresh)_token['"]?\s*[:=]\s*['"]?)[^'"&\s,}]+""", re.IGNORECASE
)
# Telegram puts the bot token in the URL path: https://api.telegram.org/bot123:AbC/getMe
_BOT_URL = re.compile(r"(/bot)\d{3,}(?::|%3[aA])[A-Za-z0-9_-]{20,}")
# Slack bot/user/app tokens and Synapse access tokens have a recognisable shape.
_TOKEN_SHAPES = re.compile(r"\b(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]{10,}|\bsyt_[A-Za-z0-9_]{10,}")
# JSON's and Python's one-letter escapes for control characters.
_LETTER_ESCAPES = {"\n": "n", "\t": "t", "\r": "r", "\b": "b", "\f": "f", "\a": "a", "\v": "v"}


def _hex(n: int, width: int) -> str:
    """`n` in hex, each letter digit matching either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{n:0{width}x}")


def _char_pattern(c: str) -> str:
    """Every spelling of one character a log line may hold: itself, percent-encoded
    (also twice), or after one or more backslashes (JSON in JSON, a repr) as itself,
    `\\uXXXX` (a surrogate pair beyond the BMP), `\\xXX`, `\\UXXXXXXXX` or a letter."""
    code = ord(c)
    percent = "".join("%(?:25)?" + _hex(b, 2) for b in c.encode("utf-8", "surrogatepass"))
    escaped = [re.escape(c), "U" + _hex(code, 8)]
    if code > 0xFFFF:
        hi, lo = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        escaped.append(f"u{_hex(hi, 4)}\\\\+u{_hex(lo, 4)}")
    else:
        escaped.append("u" + _hex(code, 4))
    if code < 0x100:
        escaped.append("x" + _hex(code, 2))
    if c in _LETTER_ESCAPES:
        escaped.append(_LETTER_ESCAPES[c])
    forms = [re.escape(c), percent, "\\\\+(?:" + "|".join(escaped) + ")"]
    if c == " ":
        forms.append(r"\+")  # a query string's space
    return "(?:" + "|".join(forms) + ")"


def secret_pattern(secret: str) -> str:
    """A regular expression matching `secret` in any of its encoded forms."""
    return "".join(_char_pattern(c) for c in secret)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        # Longest first, so a secret containing another is redacted whole.
        self._pattern = (
            re.compile("|".join(secret_pattern(s) for s in self.secrets)) if self.secrets else None
        )

    def redact(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        text = _BOT_URL.sub(r"\1" + REDACTED, text)
        text = _TOKEN_SHAPES.sub(REDACTED, text)
        return _TOKEN_FIELD.sub(r"\1" + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def private_log_file(path: str) -> None:
    """Create the log file 0600 (its directory 0700 if missing) before logging opens
    it, and take away group and world access from one an older version created."""
    file = Path(path).expanduser()
    if not file.parent.exists():
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def setup_logging(level: str, secrets: Iterable[str], log_file: str = "") -> None:
    if log_file:
        private_log_file(log_file)
    handler: logging.Handler = (
        logging.FileHandler(Path(log_file).expanduser()) if log_file else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and Telegram URLs carry the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
