"""Logging set-up with secret redaction.

Every configured secret (bot tokens, app tokens, passwords, signing secrets) is
replaced by ``[redacted]`` in every log record before it is written — including
URLs that libraries log with the bot token inside them.  Credentials no config names
are redacted by their field name: matrix-nio logs the login response at DEBUG, with
the access token the homeserver just issued in it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# `'access_token': 'syt_…'`, `"refresh_token":"…"`, `access_token=…` (JSON, a dict's
# repr, a query string).
_TOKEN_FIELD = re.compile(
    r"""((?:access|refresh)_token['"]?\s*[:=]\s*['"]?)[^'"&\s,}]+""", re.IGNORECASE
)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_FIELD.sub(r"\1[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup_logging(level: str, secrets: Iterable[str], log_file: str = "") -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO, and Telegram URLs carry the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
