"""The `pair CODE` command: the one command strangers may send (pairing itself:
`bridge/access/pairing.py`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bridge import render
from bridge.commands.context import CommandContext
from bridge.commands.registry import Section, command

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)


@command(
    "pair",
    usage="CODE",
    help="complete pairing with a code from threadline pair",
    section=Section.ACCESS,
    menu=False,
)
async def cmd_pair(ctx: CommandContext) -> None:
    """`pair CODE` (Telegram also `/start CODE`): the one command strangers may send."""
    bridge, sender = ctx.services, ctx.sender
    if bridge.access.is_owner(sender):
        ctx.reply(render.notice("You are already an owner; the code was not used."))
        return
    result = bridge.pairing.redeem(ctx.command.rest, sender)
    if result.ok:  # access control reads the signed row; the adapter learns it now
        bridge.adapters[sender.platform].add_owner(sender.user_id)
    if result.message:
        ctx.reply(render.notice(result.message))
