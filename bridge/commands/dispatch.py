"""Running commands and button presses: the registry, completed, behind one door.

Importing this module imports every module that declares commands or buttons, so the
registry (`bridge/commands/registry.py`) is whole here: `parse_command` knows every
name, `menu()` is what platforms offer in their command menus, and `Commands` runs a
typed command or a pressed button with its context (`bridge/commands/context.py`).
The feature commands are declared in their feature modules (import, get, schedules,
trust, rules, pair), next to the helpers they share with the rest of the feature;
those modules import the registry and the context, never this module, so there is
no import circle.
"""

from __future__ import annotations

import logging
from typing import Final

from adapters.messages import ButtonPress, ChatCommand, UserMessage
from bridge import files, render, verify_desk
from bridge.approvals import rules_cmd, trust
from bridge.commands import help as help_cmd
from bridge.commands import hosts, imports, pair, parse, schedules, sessions, turn
from bridge.commands.context import CommandContext, PressContext, Services
from bridge.commands.registry import REGISTRY, Registry
from storage.models import SessionRow

log = logging.getLogger(__name__)

# The modules whose decorators fill the registry (imported for that alone).
DECLARING: Final = (
    sessions, turn, imports, files, schedules, trust, rules_cmd, pair, hosts, help_cmd, verify_desk
)  # fmt: skip


def parse_command(
    text: str, *, bot_username: str = "", registry: Registry = REGISTRY
) -> parse.Command | None:
    """One chat message → a registered command, ``unknown``/``ignored``, or None (a prompt)."""
    return parse.parse_command(text, names=registry.names(), bot_username=bot_username)


def menu(registry: Registry = REGISTRY) -> tuple[ChatCommand, ...]:
    """The commands a platform's own command menu offers, in listing order."""
    return tuple(c.chat_command() for c in registry.commands() if c.menu)


class Commands:
    """Runs commands and presses against `services` (the core's public operations);
    this is the one place their contexts are made."""

    def __init__(self, services: Services, *, registry: Registry = REGISTRY) -> None:
        self.services = services
        self.registry = registry

    async def command(
        self, cmd: parse.Command, msg: UserMessage, session: SessionRow | None
    ) -> None:
        if cmd.name == "ignored":  # `/cmd@otherbot` in a group: not for us
            return
        spec = self.registry.get(cmd.name)
        if spec is None:
            shown = cmd.original if cmd.name == "unknown" else cmd.name
            self.services.reply(
                msg.thread,
                render.notice(
                    f"Unknown command `{shown}` — see {render.cmd(msg.thread.platform, 'help')}."
                ),
            )
            return
        if spec.in_session and session is None:
            self.services.reply(
                msg.thread,
                render.notice(
                    f"`{spec.name}` works inside a session's thread. "
                    f"{render.cmd(msg.thread.platform, 'sessions')} lists them."
                ),
            )
            return
        listing = tuple(c.chat_command() for c in self.registry.commands())
        await spec.handler(CommandContext(cmd, msg, session, self.services, listing))

    async def button(self, press: ButtonPress) -> None:
        """Button data is ``<kind>:<rest>``; every handler checks the press against the
        thread it came from."""
        kind, _, rest = press.data.partition(":")
        ctx = PressContext(press, self.services)
        handler = self.registry.button(kind)
        if handler is None:
            ctx.refuse("unknown button")
            return
        await handler(ctx, rest)
