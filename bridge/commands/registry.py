"""The command registry: every chat command and button kind is declared once, here.

`@command("mode", usage="[MODE]", help="…", in_session=True)` on a handler is the
whole declaration: the parser's names, `help`, Telegram's "/" menu and the in-session
check all read the registry, so adding a command touches the module that defines it
and nothing else.  `@button("m")` does the same for the button data kinds
(``<kind>:<rest>``).  Handlers are registered where they are defined, which is why
this module imports nothing of theirs: `bridge/commands/dispatch.py` imports the
defining modules and so completes the registry.

Help and the menu list commands by `Section` (in the enum's order), then in the
order they were declared.  Each section's commands are declared in one module, so the
order within it is that module's, whichever module some other code imported first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from adapters.messages import ChatCommand

if TYPE_CHECKING:
    from bridge.commands.context import CommandContext, PressContext

CommandHandler = Callable[["CommandContext"], Awaitable[None]]
ButtonHandler = Callable[["PressContext", str], Awaitable[None]]


class Section(IntEnum):
    """Where a command is listed in `help` and the menus (in this order)."""

    SESSION = 1  # bridge/commands/sessions.py
    TURN = 2  # bridge/commands/turn.py
    IMPORT = 3  # bridge/sources/importer.py
    FILES = 4  # bridge/files.py
    SCHEDULES = 5  # bridge/sources/scheduler.py
    TRUST = 6  # bridge/approvals/trust.py
    RULES = 7  # bridge/approvals/rules_cmd.py
    ACCESS = 8  # bridge/access/pairing.py
    HOSTS = 9  # bridge/commands/hosts.py
    HELP = 10  # bridge/commands/help.py


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One chat command.  `menu`: offered in a platform's command menu (Telegram's
    "/" list); the others still work and are in `help`."""

    name: str
    usage: str  # the arguments, e.g. "[PATH] [PROMPT]"; "" for none
    help: str
    handler: CommandHandler
    section: Section
    in_session: bool = False  # only inside a session's thread
    menu: bool = True
    order: int = 0  # declaration order, for a stable listing

    @property
    def synopsis(self) -> str:
        """``name ARGS`` as shown in `help`."""
        return f"{self.name} {self.usage}" if self.usage else self.name

    def chat_command(self) -> ChatCommand:
        return ChatCommand(self.name, self.usage, self.help)


class Registry:
    """Commands by name and button handlers by kind; declaring one twice is an error."""

    def __init__(self) -> None:
        self._commands: dict[str, CommandSpec] = {}
        self._names: frozenset[str] = frozenset()  # asked for every message: kept ready
        self._buttons: dict[str, ButtonHandler] = {}

    def add_command(self, spec: CommandSpec) -> None:
        if spec.name in self._commands:
            raise ValueError(f"command {spec.name!r} is declared twice")
        self._commands[spec.name] = spec
        self._names = frozenset(self._commands)

    def add_button(self, kind: str, handler: ButtonHandler) -> None:
        if kind in self._buttons or ":" in kind:
            raise ValueError(f"button kind {kind!r} is declared twice or contains ':'")
        self._buttons[kind] = handler

    def commands(self) -> tuple[CommandSpec, ...]:
        """Every command in listing order."""
        return tuple(sorted(self._commands.values(), key=lambda s: (s.section, s.order)))

    def get(self, name: str) -> CommandSpec | None:
        return self._commands.get(name)

    def names(self) -> frozenset[str]:
        return self._names

    def button(self, kind: str) -> ButtonHandler | None:
        return self._buttons.get(kind)

    def button_kinds(self) -> frozenset[str]:
        return frozenset(self._buttons)


REGISTRY: Final = Registry()


def command(
    name: str,
    *,
    help: str,  # noqa: A002 - the decorator reads like the help line it declares
    section: Section,
    usage: str = "",
    in_session: bool = False,
    menu: bool = True,
    registry: Registry = REGISTRY,
) -> Callable[[CommandHandler], CommandHandler]:
    """Declare a chat command handled by the decorated function."""

    def register(handler: CommandHandler) -> CommandHandler:
        order = len(registry.names())
        registry.add_command(
            CommandSpec(name, usage, help, handler, section, in_session, menu, order)
        )
        return handler

    return register


def button(kind: str, *, registry: Registry = REGISTRY) -> Callable[[ButtonHandler], ButtonHandler]:
    """Declare the handler of button data ``<kind>:<rest>``; it gets the press and rest."""

    def register(handler: ButtonHandler) -> ButtonHandler:
        registry.add_button(kind, handler)
        return handler

    return register
