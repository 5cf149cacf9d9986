"""Reading untrusted platform payloads: the helpers every adapter's `inbound.py` uses.

A payload field can be missing, of the wrong type, or a string that cannot be stored
or sent: JSON may carry lone UTF-16 surrogates (``"\\ud800"`` decodes to a Python str
that UTF-8 cannot encode, so SQLite and every HTTP client would raise on it).  The
parsers read fields through `text`, `ident`, `integer` and `mapping`, which answer
a safe value or "absent", and pass what they hand to the bridge through `clean`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_ID = 256  # ids, timestamps and event ids are short on every platform


def scrub(value: str) -> str:
    """`value` with lone surrogates replaced by U+FFFD, so it encodes as UTF-8."""
    return value if value.isascii() else _SURROGATE.sub("\ufffd", value)


def text(value: object) -> str:
    """A string field, or "" when it is absent or not a string."""
    return scrub(value) if isinstance(value, str) else ""


def integer(value: object) -> int | None:
    """An integer field (not a bool, which is an int in Python), or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def ident(value: object) -> str | None:
    """An id (a number or a short non-empty string) as a string, or None."""
    number = integer(value)
    if number is not None:
        return str(number)
    if isinstance(value, str) and 0 < len(value) <= MAX_ID:
        return scrub(value)
    return None


def mapping(value: object) -> Mapping[str, Any]:
    """A JSON object field, or an empty one when it is absent or something else."""
    return value if isinstance(value, Mapping) else {}


def clean(value: T) -> T:
    """A (frozen) dataclass with every string in it scrubbed, recursively."""
    if isinstance(value, str):
        return scrub(value)  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(clean(v) for v in value)  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: clean(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if isinstance(getattr(value, f.name), str | tuple)
            or dataclasses.is_dataclass(getattr(value, f.name))
        }
        return dataclasses.replace(value, **changes)
    return value
