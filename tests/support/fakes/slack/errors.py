"""The error answer of the Web API (`{"ok": false, "error": ...}`, with its HTTP status)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra
