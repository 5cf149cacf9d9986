"""Chat command parsing: a message's text → a `Command`, or `None` for a plain prompt.

The same commands exist on every platform; which names are commands is the
registry's (`bridge/commands/registry.py`), passed in as `names`.  A command starts with `/` or `!`,
its name is case-insensitive, and on Telegram it may be addressed as `/cmd@botname`.
Arguments are split shell-style (`shlex`) so a PATH can be quoted to contain spaces;
text that does not split cleanly (an apostrophe in a prompt) falls back to whitespace
splitting.  Commands whose arguments mix a path or cron expression with free text
(`new`, `schedule`, `get`) are read from the raw `rest`, so a prompt keeps its own
formatting.  `parse_command` never raises: chat text is untrusted and arbitrary.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

# Telegram opens a bot with "/start", and a deep link t.me/bot?start=CODE sends
# "/start CODE" -- which is how a pairing link arrives.
_ALIASES: Final[dict[str, str]] = {"start": "help", "h": "help"}

# Telegram's bot_command grammar: a name of letters, digits and "_" (at most 32, but
# we accept longer so a typo still gets "unknown command"), optionally "@botname".
_HEAD = re.compile(r"[/!]([A-Za-z0-9_]+)(?:@([A-Za-z0-9_]*))?(?=\s|$)")
# shlex builds tokens by repeated string concatenation (quadratic in a token's length);
# arguments are short, so long text (a prompt) is split on whitespace instead.
_SHLEX_MAX: Final = 4096
_QUOTED_FIRST = re.compile(r"""(["'])(.*?)\1(?=\s|$)""", re.DOTALL)
_CRON_ATOM = (
    r"(?:\d+|\*|\?|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun)"
)
_CRON_FIELD = re.compile(rf"{_CRON_ATOM}(?:[-/,]{_CRON_ATOM})*", re.IGNORECASE)
_CRON_MACROS: Final[dict[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command.

    `name` is one of the registered names, or ``"unknown"`` (reply "unknown command, see
    /help"; `original` holds what was typed), or ``"ignored"`` (``/cmd@otherbot``:
    addressed to another bot in the group, drop it silently).
    """

    name: str
    args: tuple[str, ...] = ()
    rest: str = ""  # raw text after the name (and @botname), leading whitespace removed
    original: str = ""  # the name as typed, lower-cased
    prefix: str = "/"

    @property
    def arg(self) -> str | None:
        """The first argument: MODE, NAME, ID or CODE for the one-argument commands."""
        return self.args[0] if self.args else None

    @property
    def path(self) -> str | None:
        """`new`: the PATH if one was given; `get`: the whole (unquoted) rest."""
        if self.name == "new":
            return _split_new(self.rest)[0]
        if self.name == "get":
            first = _first_token(self.rest)
            if first is not None and first[1]:
                return first[0] or None
            return self.rest.strip() or None
        return None

    @property
    def prompt(self) -> str:
        """`new` and `schedule`: the prompt text, raw (newlines and quotes kept)."""
        if self.name == "new":
            return _split_new(self.rest)[1]
        if self.name == "schedule":
            return _split_schedule(self.rest)[1]
        return ""

    def new_target(self, hosts: Collection[str]) -> NewTarget:
        """`new [--worktree] [HOST:][PATH] [PROMPT]`, with `hosts` the known host names
        (see `split_host`)."""
        rest = self.rest.lstrip()
        worktree = rest.startswith("--worktree") and rest[10:11] in ("", " ", "\n", "\t")
        if worktree:
            rest = rest[10:].lstrip()
        first = _first_token(rest)
        if first is not None and not first[1]:
            host, on_host, unknown = split_host(first[0], hosts)
            if host is not None or unknown is not None:
                return NewTarget(host, on_host or None, first[2].strip(), worktree, unknown)
        path, prompt = _split_new(rest)
        return NewTarget(None, path, prompt, worktree)

    @property
    def cron(self) -> str | None:
        """`schedule`: the five cron fields, or None if the command has none."""
        return _split_schedule(self.rest)[0] if self.name == "schedule" else None


@dataclass(frozen=True, slots=True)
class NewTarget:
    """What `new` was asked for: on which host (None: the one answering), in which
    directory (None: offer a picker), the first prompt; `unknown_host`: a HOST: that
    names no host (the person is told which exist)."""

    host: str | None
    path: str | None
    prompt: str
    worktree: bool = False
    unknown_host: str | None = None


_HOST_PREFIX = re.compile(r"([A-Za-z0-9-]{1,32}):(.*)", re.DOTALL)


def split_host(token: str, hosts: Collection[str]) -> tuple[str | None, str, str | None]:
    """`HOST:PATH` → (host, path, None) when HOST (any case) is a known host name.
    A path with ":" stays a path: a ":" after a "/" (`~/a:b`, `/x/y:z`), or a first
    part that is no known host — unless what follows looks like a path (`~`, `/`,
    `.`), then it was meant as a host: (None, path, that name) so the
    person can be told the hosts.  `./a:b` is always a path."""
    m = _HOST_PREFIX.fullmatch(token)
    if m is None or "://" in token:  # a URL opens a prompt
        return None, token, None
    name, path = m.group(1).lower(), m.group(2)
    if name in hosts:
        return name, path, None
    if path.startswith(("~", "/", ".")):
        return None, path, name
    return None, token, None


def parse_command(text: str, *, names: Collection[str], bot_username: str = "") -> Command | None:
    """Parse one chat message.  `None`: not a command (send it to Claude as a prompt)."""
    try:
        return _parse(text, names, bot_username)
    except Exception:  # pragma: no cover - belt and braces: chat input must never crash us
        return None


def _parse(text: str, names: Collection[str], bot_username: str) -> Command | None:
    stripped = text.lstrip()
    m = _HEAD.match(stripped)
    if m is None:
        return None
    typed, bot = m.group(1).lower(), m.group(2)
    rest = stripped[m.end() :].lstrip()
    args = split_args(rest)
    prefix = stripped[0]
    if bot is not None and bot_username and bot.lower() != bot_username.lstrip("@").lower():
        return Command("ignored", args, rest, typed, prefix)
    name = _ALIASES.get(typed, typed)
    if typed == "start" and args:
        name = "pair"
    if name not in names:
        name = "unknown"
    return Command(name, args, rest, typed, prefix)


def split_args(rest: str) -> tuple[str, ...]:
    """Shell-like split; on unbalanced quotes, plain whitespace split."""
    if not rest:
        return ()
    if len(rest) > _SHLEX_MAX:
        return tuple(rest.split())
    try:
        return tuple(shlex.split(rest))
    except ValueError:
        return tuple(rest.split())


def _first_token(rest: str) -> tuple[str, bool, str] | None:
    """(token, was_quoted, raw remainder) for the first token of `rest`."""
    rest = rest.lstrip()
    if not rest:
        return None
    q = _QUOTED_FIRST.match(rest)
    if q is not None:
        return q.group(2), True, rest[q.end() :].lstrip()
    parts = rest.split(None, 1)
    return parts[0], False, parts[1] if len(parts) > 1 else ""


def _looks_like_path(token: str, quoted: bool) -> bool:
    if quoted:
        return True
    if "://" in token:  # a URL opens a prompt ("/new https://... is down, why?")
        return False
    return token.startswith(("~", "/", ".")) or "/" in token


def _split_new(rest: str) -> tuple[str | None, str]:
    """`new [PATH] [PROMPT]` → (path or None, prompt)."""
    first = _first_token(rest)
    if first is None:
        return None, ""
    token, quoted, remainder = first
    if _looks_like_path(token, quoted):
        return token or None, remainder.strip()
    return None, rest.strip()


def _split_schedule(rest: str) -> tuple[str | None, str]:
    """`schedule "CRON" PROMPT` or `schedule m h dom mon dow PROMPT` → (cron, prompt)."""
    first = _first_token(rest)
    if first is None:
        return None, ""
    token, quoted, remainder = first
    if quoted:
        fields = token.split()
        ok = len(fields) == 5 and all(_CRON_FIELD.fullmatch(f) for f in fields)
        return (" ".join(fields), remainder.strip()) if ok else (None, remainder.strip())
    if token.lower() in _CRON_MACROS:
        return _CRON_MACROS[token.lower()], remainder.strip()
    parts = rest.strip().split(None, 5)
    if len(parts) >= 5 and all(_CRON_FIELD.fullmatch(f) for f in parts[:5]):
        return " ".join(parts[:5]), parts[5].strip() if len(parts) > 5 else ""
    return None, rest.strip()
