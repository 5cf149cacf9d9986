"""A host's name (`[daemon] host`): how it is checked, and the default made from the
machine's hostname.

The name labels the host's row in the `hosts` table and the sessions it runs, and is
what a person types in chat to pick a machine, so it is short and plain: 1–32
characters of ``a-z``, ``0-9`` and ``-`` (no ``:``, which will separate a host from a
path in `new laptop:~/code/app`).  The default is the machine's hostname cleaned to
that shape (``Ada's-MacBook-Pro.local`` → ``ada-s-macbook-pro``), so one machine needs
no setting.
"""

from __future__ import annotations

import re
import socket
from typing import Final

HOST_NAME_MAX: Final = 32
_VALID: Final = re.compile(r"[a-z0-9-]{1,32}")
_RUNS_OF_OTHERS: Final = re.compile(r"[^a-z0-9]+")
FALLBACK: Final = "localhost"


def clean_host_name(raw: str) -> str:
    """`raw` (a hostname) as a valid host name: its first DNS label, lower case, every
    run of other characters one ``-``, cut to 32 characters; `FALLBACK` if nothing is left."""
    label = raw.strip().split(".", 1)[0].lower()
    name = _RUNS_OF_OTHERS.sub("-", label).strip("-")[:HOST_NAME_MAX].strip("-")
    return name or FALLBACK


def default_host_name() -> str:
    """This machine's hostname, cleaned (`clean_host_name`)."""
    return clean_host_name(socket.gethostname())


def check_host_name(name: str) -> str:
    """`name` if it is a valid host name; else a ValueError saying what one is."""
    if _VALID.fullmatch(name) is None:
        raise ValueError(
            f"{name!r} is not a host name: use 1–{HOST_NAME_MAX} characters of "
            "a-z, 0-9 and '-' (e.g. \"laptop\")"
        )
    return name
