"""The `import [ID]` command and its listing's `i:` buttons (sessions on disk:
`bridge/sources/importer.py`)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bridge.commands.context import CommandContext, PressContext
from bridge.commands.registry import Section, button, command

if TYPE_CHECKING:
    pass

from bridge.sources.importer import listing

log = logging.getLogger(__name__)


@command(
    "import",
    usage="[ID]",
    help="list Claude Code sessions on disk, or continue one here",
    section=Section.IMPORT,
)
async def cmd_import(ctx: CommandContext) -> None:
    """`import`: the sessions on disk; `import ID`: continue one in a new thread."""
    if not ctx.command.args:
        found = await asyncio.to_thread(ctx.services.claude_sessions.recent)
        ctx.reply(listing(found, ctx.thread.platform))
        return
    await ctx.services.importer.import_and_tell(ctx.thread, ctx.sender.key, ctx.command.args[0])


@button("i")
async def press_import(ctx: PressContext, rest: str) -> None:
    await ctx.services.importer.import_and_tell(ctx.thread, ctx.sender.key, rest)
