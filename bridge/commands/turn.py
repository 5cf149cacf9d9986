"""Turn commands: `stop`, `mode`, `model`, `diff`, `cost`, and their buttons —
``x:<session>`` (Stop under a running turn), ``m:<session>:<mode index>`` (a mode
from the `mode` picker) and ``p:<request>:<a|s|d>`` (a permission prompt, decided by
the broker, `bridge/approvals/permissions.py`) and ``q:<request>:<question>:<choice>``
(an option of Claude's question, `bridge/approvals/questions.py`) and
``l:<request>:<a|e|k>`` (Claude's plan: approve, approve & auto-accept edits, keep
planning; `bridge/approvals/plan_desk.py`).

The modes offered are `agent.permissions.OFFERED_MODES`, labelled by `MODE_LABELS`;
a mode button carries its index in that tuple.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from adapters.messages import Button, Markdown, Outbound, ThreadRef
from agent.permissions import OFFERED_MODES, OfferedMode
from bridge import gitsafe, render
from bridge.commands.context import CommandContext, PressContext, Services
from bridge.commands.registry import Section, button, command
from storage.models import SessionRow

log = logging.getLogger(__name__)

# The model aliases the bundled Claude Code CLI (2.1.337) resolves itself; a full
# model id (claude-sonnet-4-5, …) is passed through as well.
MODEL_ALIASES: Final = (
    "sonnet", "opus", "haiku", "fable", "best", "sonnet[1m]", "opus[1m]", "fable[1m]", "opusplan",
)  # fmt: skip
# `help` and the menu are the same for every chat, so they name only the modes every
# config allows; bypassPermissions is offered by the `mode` buttons where allowed.
SAFE_MODES: Final = tuple(m for m in OFFERED_MODES if m != "bypassPermissions")

MODE_LABELS: Final[dict[OfferedMode, str]] = {
    "default": "Default",
    "acceptEdits": "Accept edits",
    "plan": "Plan",
    "bypassPermissions": "Bypass",
}


@command(
    "stop",
    help="interrupt the running turn (the session stays usable)",
    section=Section.TURN,
    in_session=True,
)
async def cmd_stop(ctx: CommandContext) -> None:
    assert ctx.session is not None
    await stop_turn(ctx.services, ctx.session, ctx.thread)


@button("x")
async def press_stop(ctx: PressContext, rest: str) -> None:
    found = ctx.session_here(rest)
    if found is not None:
        await stop_turn(ctx.services, found[0], found[1])


async def stop_turn(s: Services, session: SessionRow, thread: ThreadRef) -> None:
    """Interrupt the session's running turn (chat `stop`, its button, the terminal)."""
    agent = s.host.get(session.id)
    if agent is None or not agent.busy:
        s.reply(thread, render.notice("Nothing is running."))
        return
    await s.broker.cancel_session(session.id, "stopped")
    await agent.interrupt()


@button("p")
async def press_permission(ctx: PressContext, rest: str) -> None:
    request_id, _, choice = rest.rpartition(":")
    sender = ctx.sender
    result = await ctx.services.broker.press(
        request_id, choice, ctx.thread, sender.key, sender.display_name
    )
    log.info("permission press %s → %s", choice, result.outcome)
    if not result.decided:  # the edited prompt shows a decision; a refusal is told
        await ctx.answer(result.text)


@button("q")
async def press_question(ctx: PressContext, rest: str) -> None:
    request_id, _, choice = rest.partition(":")
    sender = ctx.sender
    result = await ctx.services.broker.answer_question(
        request_id, choice, ctx.thread, sender.key, sender.display_name
    )
    log.info("question press %s → %s", choice[:20], result.outcome)
    if not result.decided or result.text.startswith("Select"):
        await ctx.answer(result.text)


@button("l")
async def press_plan(ctx: PressContext, rest: str) -> None:
    request_id, _, action = rest.rpartition(":")
    sender = ctx.sender
    result = await ctx.services.broker.answer_plan(
        request_id, action, ctx.thread, sender.key, sender.display_name
    )
    log.info("plan press %s → %s", action[:2], result.outcome)
    if not result.decided or action == "k":  # Keep planning: tell them to write
        await ctx.answer(result.text)


@command(
    "mode",
    usage="[MODE]",
    help="switch permission mode: " + ", ".join(SAFE_MODES),
    section=Section.TURN,
    in_session=True,
)
async def cmd_mode(ctx: CommandContext) -> None:
    session = ctx.session
    assert session is not None
    if not ctx.command.args:
        buttons = tuple(
            (Button(("• " if m == session.mode else "") + MODE_LABELS[m], f"m:{session.id}:{i}"),)
            for i, m in enumerate(OFFERED_MODES)
            if m != "bypassPermissions" or ctx.config.agent.allow_bypass
        )
        ctx.reply(
            Outbound(blocks=(Markdown(f"Permission mode: **{session.mode}**"),), buttons=buttons)
        )
        return
    wanted = {m.lower(): m for m in OFFERED_MODES}.get(ctx.command.args[0].lower())
    offered = OFFERED_MODES if ctx.config.agent.allow_bypass else SAFE_MODES
    if wanted is None:
        ctx.reply(
            render.notice(
                f"Unknown mode `{ctx.command.args[0][:40]}`; one of: {', '.join(offered)}."
            )
        )
        return
    await _set_mode(ctx.services, session, ctx.thread, wanted)


@button("m")
async def press_mode(ctx: PressContext, rest: str) -> None:
    found = ctx.session_here(rest)
    if found is None:
        return
    session, thread, index = found
    if index.isdigit() and int(index) < len(OFFERED_MODES):
        await _set_mode(ctx.services, session, thread, OFFERED_MODES[int(index)])
    else:
        ctx.refuse("unknown button")


async def _set_mode(s: Services, session: SessionRow, thread: ThreadRef, mode: OfferedMode) -> None:
    if mode == "bypassPermissions" and not s.config.agent.allow_bypass:
        s.reply(
            thread,
            render.notice(
                "🚫 bypassPermissions is disabled (set `allow_bypass = true` in [agent] to allow it)."
            ),
        )
        return
    agent = await s.agent_for(session)
    await agent.set_mode(mode)
    s.db.sessions.update(session.id, mode=mode)
    s.reply(thread, render.notice(f"Permission mode: **{mode}**"), session_id=session.id)


@command("model", usage="[NAME]", help="switch the model", section=Section.TURN, in_session=True)
async def cmd_model(ctx: CommandContext) -> None:
    session = ctx.session
    assert session is not None
    platform = ctx.thread.platform
    if not ctx.command.args:
        ctx.reply(
            render.notice(
                f"Model: **{session.model or 'Claude Code default'}**. "
                f"{render.cmd(platform, 'model NAME')} switches; NAME is one of "
                + ", ".join(f"`{a}`" for a in MODEL_ALIASES)
                + " or a full model id (e.g. `claude-sonnet-4-5`)."
            )
        )
        return
    if session.state == "ended":
        ctx.reply(
            render.notice(
                "This session has ended; the model was not changed. "
                f"{render.cmd(platform, f'resume {session.id}')} reopens it."
            )
        )
        return
    name = ctx.command.args[0][:100]
    agent = await ctx.services.agent_for(session)
    await agent.set_model(name)
    ctx.db.sessions.update(session.id, model=name)
    ctx.reply(render.notice(f"Model: **{name}**"), session_id=session.id)


@command(
    "diff",
    help="show git diff of the session's directory",
    section=Section.TURN,
    in_session=True,
)
async def cmd_diff(ctx: CommandContext) -> None:
    session = ctx.session
    assert session is not None
    try:  # run so the repository's config cannot run programs (bridge/gitsafe.py)
        result = await gitsafe.diff_head(session.cwd)
    except (OSError, TimeoutError) as e:
        ctx.reply(render.notice(f"`git diff` failed: {e}"))
        return
    if result.code != 0:
        ctx.reply(render.notice(f"`git diff` failed: {result.err[:300]}"))
        return
    diff = result.out
    if not diff.strip():
        ctx.reply(render.notice("No changes against HEAD."))
        return
    ctx.reply(render.diff_message(diff, name=f"{Path(session.cwd).name}.diff"))


@command(
    "cost",
    help="tokens and dollars: this session (in its thread), today, this month",
    section=Section.TURN,
)
async def cmd_cost(ctx: CommandContext) -> None:
    """Sums of the turns' own costs (`TurnEnded.cost_usd`, per turn, not the CLI's
    cumulative total); "today" and "this month" in the owner's time zone."""
    now = ctx.services.now().astimezone(ctx.config.agent.tz())
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    lines = []
    if ctx.session is not None:
        cost, tin, tout = ctx.db.turns.cost_since(datetime(1970, 1, 1, tzinfo=UTC), ctx.session.id)
        lines.append(f"This session: **${cost:.4f}** · {tin:,} in / {tout:,} out tokens")
    for label, since in (("Today", day), ("This month", month)):
        cost, tin, tout = ctx.db.turns.cost_since(since)
        lines.append(f"{label}: **${cost:.4f}** · {tin:,} in / {tout:,} out tokens")
    ctx.reply(render.notice("\n".join(lines)))
