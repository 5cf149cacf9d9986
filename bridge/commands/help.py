"""The `help` command: the command list the command was parsed against, in listing order."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.messages import ChatCommand, Markdown, Outbound
from adapters.registry import BY_NAME
from bridge.commands.context import CommandContext
from bridge.commands.registry import Section, command
from bridge.render import md_escape


def help_message(prefix: str, commands: Sequence[ChatCommand]) -> Outbound:
    """One line per command: ``PREFIXname ARGS`` — what it does."""
    lines = ["**Commands**"]
    lines += [
        f"`{prefix}{c.name}{' ' + c.usage if c.usage else ''}` — {md_escape(c.description)}"
        for c in commands
    ]
    return Outbound((Markdown("\n".join(lines)),))


@command("help", help="this list", section=Section.HELP)
async def cmd_help(ctx: CommandContext) -> None:
    spec = BY_NAME.get(ctx.thread.platform)
    prefix = spec.command_prefix if spec else "!"
    ctx.reply(help_message(prefix, ctx.listing))
