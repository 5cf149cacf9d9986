"""The platform spec: everything the core needs to know about one chat platform,
declared once by its package (``adapters/<p>/spec.py``) and listed in
`adapters.registry`.

The core (`threadline run`, config validation, `pair`, `doctor`) loops over the
registry instead of naming platforms, so adding one touches only its own package and
one registry line.  A spec is data plus a few callables that import the platform
library lazily: loading the config must not import python-telegram-bot, slack-bolt
and matrix-nio.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from adapters.base import ChatAdapter


class PlatformConfig(BaseModel):
    """A platform's config section (``[telegram]`` …): unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False

    def secrets(self) -> list[str]:
        """The section's secret values (tokens, passwords), for log redaction and to
        keep them out of Claude Code's environment."""
        return []

    def problems(self) -> list[str]:
        """What is wrong beyond types, one line each (``telegram.token: …``); only
        asked of enabled sections."""
        return []


CheckStatus = Literal["ok", "fail", "warn"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of `threadline doctor`: what was checked and, for a problem, the fix."""

    status: CheckStatus
    what: str
    fix: str = ""


def ok(what: str) -> CheckResult:
    return CheckResult("ok", what)


def fail(what: str, fix: str) -> CheckResult:
    return CheckResult("fail", what, fix)


def warn(what: str, fix: str) -> CheckResult:
    return CheckResult("warn", what, fix)


@dataclass(frozen=True, slots=True)
class PairingHint:
    """How to use a pairing code on one platform: lines for `threadline pair` (rich
    markup) and, where the platform has one, a link to put in the QR code."""

    lines: tuple[str, ...]
    link: str | None = None


@dataclass(frozen=True, slots=True)
class SetupField:
    """A value `threadline init` asks for (or takes as ``--set KEY=VALUE``): the key in
    the platform's section, the question, and for a secret the environment variable it
    is also read from (and that a service's environment file would hold)."""

    key: str
    question: str
    env: str = ""
    secret: bool = False
    default: str = ""


C = TypeVar("C", bound=PlatformConfig)


@dataclass(frozen=True, slots=True)
class PlatformSpec(Generic[C]):
    """One chat platform, as the core sees it.

    `create(config, owners)` builds the adapter (`owners`: every configured owner key,
    ``platform:id``, as a hint for what the adapter treats specially before the paired
    ones are loaded).  `doctor(config, owners)` checks the platform against its API and
    returns one result per line (`owners`: configured and paired owner keys).
    `pairing(config, code)` says how to use a pairing code there."""

    name: str  # the config section, the `platform` of every ThreadRef, owner keys' prefix
    title: str  # as people read it: "Telegram"
    config_model: type[C]
    owner_example: str  # the owner key's shape in config errors: "telegram:ID"
    command_prefix: str  # what commands start with in this chat: "/" or "!"
    create: Callable[[C, Sequence[str]], ChatAdapter]
    doctor: Callable[[C, Sequence[str]], Coroutine[Any, Any, list[CheckResult]]]
    pairing: Callable[[C, str], Coroutine[Any, Any, PairingHint]]
    setup: tuple[SetupField, ...] = ()  # what `threadline init` asks, in order


AnySpec = PlatformSpec[Any]
