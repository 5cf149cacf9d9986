"""Permissions that do not outlive the config that granted them.

A session's permission mode is stored with it, so a session switched to
``bypassPermissions`` while ``agent.allow_bypass`` was true would start its next
Claude Code in bypass mode after the owner turned ``allow_bypass`` off.  Every CLI
start goes through ``SessionRouter.agent_for`` (a prompt, ``resume``, a schedule, a session
recovered after a restart), which asks ``startable_mode`` first: a mode the config no
longer allows becomes the config's ``permission_mode``, the session row is updated,
and the thread is told why.  The config is read once at start, so a running CLI
never holds a mode the current config forbids.
"""

from __future__ import annotations

import logging

from bridge import render
from bridge.config import AgentConfig
from bridge.threads import Threads
from storage.db import Database
from storage.models import SessionRow

log = logging.getLogger(__name__)


def startable_mode(
    agent: AgentConfig, db: Database, threads: Threads, row: SessionRow
) -> str | None:
    """The mode to start ``row``'s CLI in (None: the host's default)."""
    if row.mode != "bypassPermissions" or agent.allow_bypass:
        return row.mode or None
    fallback = agent.permission_mode
    db.sessions.update(row.id, mode=fallback)
    db.audit.log(
        platform=row.platform,
        user="config",
        action="mode-revoked",
        detail=f"session {row.id}: bypassPermissions → {fallback} (agent.allow_bypass = false)",
        allowed=True,
    )
    log.warning("session %s: stored bypassPermissions not allowed any more; %s", row.id, fallback)
    thread = threads.thread_of(row.id)
    if thread is not None:
        threads.reply(
            thread,
            render.notice(
                f"⚠️ This session was in **bypassPermissions** mode, which the config no "
                f"longer allows (`agent.allow_bypass = false`): Claude Code now runs in "
                f"**{fallback}** mode and asks before acting."
            ),
            session_id=row.id,
        )
    return fallback
