"""The `help` command: the command list, read from the registry the command came through."""

from __future__ import annotations

from adapters.messages import Markdown, Outbound
from adapters.registry import BY_NAME
from bridge.commands.context import CommandContext
from bridge.commands.registry import CommandSpec, Section, command
from bridge.render import md_escape


def help_message(prefix: str, commands: tuple[CommandSpec, ...]) -> Outbound:
    """One line per command: ``PREFIXname ARGS`` — what it does."""
    lines = ["**Commands**"]
    lines += [f"`{prefix}{c.synopsis}` — {md_escape(c.help)}" for c in commands]
    return Outbound((Markdown("\n".join(lines)),))


@command("help", help="this list", section=Section.HELP)
async def cmd_help(ctx: CommandContext) -> None:
    spec = BY_NAME.get(ctx.thread.platform)
    prefix = spec.command_prefix if spec else "!"
    ctx.reply(help_message(prefix, ctx.registry.commands()))
