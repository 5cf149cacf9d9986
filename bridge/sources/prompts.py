"""Prompts that do not come from the session's own thread: the terminal and schedules.

The chat is the session's record, so a prompt typed in `threadline attach` or fired
by a schedule is first shown in the thread, marked with where it came from
("💻 From the terminal (ada)", "⏰ Scheduled (schedule 1a2b3c)"), then sent to
Claude like any chat prompt (queued if a turn runs) — under the thread's lock, so it
keeps its order with the messages typed in the chat.  Attached terminals see every
prompt with its source, including their own (`conn` tells a client which were its).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from bridge import render
from bridge.sessions import SessionRouter
from bridge.threads import Threads
from storage.models import ScheduleRow, SessionRow

log = logging.getLogger(__name__)

SHOWN_PROMPT_CHARS: Final = 3000  # a prompt as echoed in the thread
_LABELS: Final = {"terminal": "💻 **From the terminal**", "schedule": "⏰ **Scheduled**"}


async def submit(
    router: SessionRouter,
    session: SessionRow,
    text: str,
    *,
    source: str,
    by: str,
    conn: int | None = None,
) -> None:
    """Show `text` in the session's thread as coming from `source`, then prompt."""
    thread = router.threads.thread_of(session.id)
    if thread is None:
        raise LookupError(f"session {session.id} has no thread")
    async with router.thread_lock(thread):
        shown = text if len(text) <= SHOWN_PROMPT_CHARS else text[:SHOWN_PROMPT_CHARS] + "…"
        label = _LABELS.get(source, f"**From {render.md_escape(source)}**")
        router.threads.reply(
            thread,
            render.notice(f"{label} ({render.md_escape(by)}):\n\n{render.md_escape(shown)}"),
            session_id=session.id,
        )
        event: dict[str, Any] = {"t": "prompt", "source": source, "by": by, "text": text}
        router.turns.publish(session.id, {**event, "conn": conn})
        await router.prompt(session, thread, text)


async def run_scheduled(router: SessionRouter, schedule: ScheduleRow) -> None:
    """A schedule fired: its prompt, in its session."""
    session = router.db.sessions.get(schedule.session_id)
    if session is None:
        log.warning("schedule %s: session %s is gone", schedule.id, schedule.session_id)
        return
    await submit(router, session, schedule.prompt, source="schedule", by=f"schedule {schedule.id}")


def schedule_notice(threads: Threads, schedule: ScheduleRow, text: str) -> None:
    """Something about a schedule the person should know (missed runs)."""
    thread = threads.thread_of(schedule.session_id)
    if thread is None:
        return
    prompt = " ".join(schedule.prompt.split())[:80]
    note = f"{text}\nSchedule `{schedule.id}` (`{schedule.cron}`): {render.md_escape(prompt)}"
    threads.reply(thread, render.notice(note, notify=True), session_id=schedule.session_id)


__all__ = ["run_scheduled", "schedule_notice", "submit"]
