"""The `schedule`, `schedules` and `unschedule` commands (the schedules themselves:
`bridge/sources/scheduler.py`)."""

from __future__ import annotations

import logging

from bridge import render
from bridge.commands.context import CommandContext
from bridge.commands.registry import Section, command
from bridge.sources.scheduler import Scheduler
from storage.models import ScheduleRow

log = logging.getLogger(__name__)


def _describe(scheduler: Scheduler, row: ScheduleRow) -> str:
    nxt = scheduler.next_run(row.id)
    when = nxt.astimezone(scheduler.tz).strftime("%a %d %b %H:%M %Z") if nxt else "never"
    prompt = " ".join(row.prompt.split())
    prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
    return f"• `{row.id}` · `{row.cron}` · next {when} · {render.md_escape(prompt)}"


@command(
    "schedule",
    usage="CRON PROMPT",
    help='schedule a prompt: schedule "0 9 * * 1-5" run the tests',
    section=Section.SCHEDULES,
    in_session=True,
)
async def cmd_schedule(ctx: CommandContext) -> None:
    session, scheduler = ctx.session, ctx.services.scheduler
    assert session is not None
    cron, prompt = ctx.command.cron, ctx.command.prompt.strip()
    if cron is None or not prompt:
        ctx.reply(
            render.notice(
                "Usage: "
                + render.cmd(
                    ctx.thread.platform,
                    'schedule "0 9 * * 1-5" run the tests and summarise failures',
                )
            )
        )
        return
    try:
        row = scheduler.add(session.id, cron, prompt, by=ctx.sender.key)
    except ValueError as e:
        ctx.reply(render.notice(f"🚫 Not a valid cron expression: {render.md_escape(str(e))}"))
        return
    ctx.db.audit.log(
        platform=ctx.sender.platform,
        user=ctx.sender.key,
        action="schedule",
        detail=f"{row.id} {cron}",
    )
    ctx.reply(render.notice("⏰ Scheduled:\n" + _describe(scheduler, row)), session_id=session.id)


@command("schedules", help="list this session's scheduled prompts", section=Section.SCHEDULES)
async def cmd_schedules(ctx: CommandContext) -> None:
    session, scheduler = ctx.session, ctx.services.scheduler
    rows = ctx.db.schedules.list(session.id if session is not None else None)
    if not rows:
        ctx.reply(
            render.notice(
                f"No scheduled prompts. {render.cmd(ctx.thread.platform, 'schedule CRON PROMPT')} adds one."
            )
        )
        return
    where = "this session" if session is not None else "all sessions"
    lines = [f"**Scheduled prompts** ({where}, {scheduler.tz})"]
    lines += [
        _describe(scheduler, r) + ("" if session else f" · session `{r.session_id}`") for r in rows
    ]
    ctx.reply(render.notice("\n".join(lines)))


@command("unschedule", usage="ID", help="remove a scheduled prompt", section=Section.SCHEDULES)
async def cmd_unschedule(ctx: CommandContext) -> None:
    session, args = ctx.session, ctx.command.args
    row = ctx.db.schedules.get(args[0]) if args else None
    if row is None or (session is not None and row.session_id != session.id):
        ctx.reply(
            render.notice(
                f"Which schedule? {render.cmd(ctx.thread.platform, 'schedules')} lists them with their ids."
            )
        )
        return
    ctx.services.scheduler.remove(row.id)
    ctx.db.audit.log(
        platform=ctx.sender.platform, user=ctx.sender.key, action="unschedule", detail=row.id
    )
    ctx.reply(render.notice(f"Removed schedule `{row.id}`."))
