"""Picking up after a previous run that stopped abruptly (`kill -9`, a crash, power loss).

`Recovery.recover` runs on start, before anything is delivered, and only for this
host's sessions (`sessions.host`; the start has claimed those with no host): on a
database shared by several hosts, another host's running turns and pending prompts
are live, not left over.  (Delivering the undelivered outbox rows is the gateway's:
its worker resumes them when it gains the lease, `Outbox.resume`.)

- Claude Code processes a killed daemon left behind are ended (`CliReaper`): an
  orphaned CLI keeps streaming its turn and appending to the session's transcript,
  which would race the resumed session.  The daemon records the CLIs it starts
  (pid and start time, so a reused pid is never hit) in `<data dir>/run/claude.pids`.
- Permission requests still pending are marked expired and their prompts edited:
  the buttons no longer act, and nothing is approved silently.
- Turns still running are marked interrupted, their status message loses its Stop
  button, and their unsent stream updates are dropped.
- Each session that was mid-turn gets one notice in its thread saying it was
  interrupted, which requests were not answered, and that the next message resumes
  it with its full context (SDK `resume`).

`Recovery.thread_fallback` is the outbox's way out when a thread stops taking messages while
the daemon runs (a deleted topic, "message thread not found"): the session continues
as a reply chain in the same chat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

from adapters.base import ChatAdapter
from adapters.messages import ThreadRef
from bridge import render
from bridge.approvals.permissions import PermissionBroker
from bridge.outbox.outbox import Outbox
from bridge.threads import Threads
from storage.db import Database
from storage.models import SessionRow

log = logging.getLogger(__name__)


def _proc_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _proc_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


class CliReaper:
    """Remembers this daemon's Claude Code processes; ends a killed daemon's.  Uses
    Linux's /proc; elsewhere both methods do nothing."""

    def __init__(self, path: Path, *, marker: str = "claude") -> None:
        self.path = path
        self.marker = marker
        self.enabled = Path("/proc/self/stat").exists()

    def _is_cli(self, pid: int) -> bool:
        return any(os.path.basename(a) == self.marker for a in _cmdline(pid)[:2])

    def record(self) -> None:
        """Write the daemon's live CLI children (call after a CLI started)."""
        if not self.enabled:
            return
        me = os.getpid()
        lines = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _proc_ppid(int(entry)) == me and self._is_cli(int(entry)):
                start = _proc_start(int(entry))
                if start is not None:
                    lines.append(f"{entry} {start}\n")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(lines), encoding="ascii")
            tmp.replace(self.path)
        except OSError as e:
            log.warning("could not record Claude Code processes in %s: %s", self.path, e)

    def reap(self, *, grace: float = 2.0) -> int:
        """End recorded CLIs that outlived their daemon; how many there were."""
        if not self.enabled or not self.path.exists():
            return 0
        try:
            recorded = [line.split() for line in self.path.read_text(encoding="ascii").splitlines()]
        except OSError:
            return 0
        alive = [
            int(pid)
            for pid, start in (r for r in recorded if len(r) == 2 and r[0].isdigit())
            if _proc_start(int(pid)) == start and self._is_cli(int(pid))
        ]
        for pid in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_proc_start(p) for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in alive:
            if _proc_start(pid) is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.path.unlink()
        if alive:
            log.warning("ended %d Claude Code process(es) left by the previous run", len(alive))
        return len(alive)


class Recovery:
    """Start-up tidying and thread fallbacks, for the sessions in one database."""

    def __init__(
        self,
        db: Database,
        threads: Threads,
        outbox: Outbox,
        broker: PermissionBroker,
        adapters: Mapping[str, ChatAdapter],
        reaper: CliReaper,
        *,
        host: str | None = None,
    ) -> None:
        self.db = db
        self.host = host  # None: every session in the database (one host)
        self.threads = threads
        self.outbox = outbox
        self.broker = broker
        self.adapters = adapters
        self.reaper = reaper

    def recover(self) -> None:
        """Tidy up after a previous run (see the module docstring)."""
        self.reaper.reap()  # per machine: the pid file is this host's
        mine = self._mine()
        unanswered: defaultdict[str, list[str]] = defaultdict(list)
        for request in self.broker.expire_stale(mine):
            unanswered[request.session_id].append(request.tool_name)
        for turn in self.db.turns.running():
            assert turn.id is not None
            if not mine(turn.session_id):
                continue
            self.db.turns.finish(turn.id, state="interrupted")
            thread = self.threads.thread_of(turn.session_id)
            if thread is not None and turn.status_outbox_id is not None:
                self._close_status(thread, turn.session_id, turn.id, turn.status_outbox_id)
        for row in self.db.sessions.list(states=["opening"]):
            if mine(row.id):
                self._finish_opening(row)
        for row in self.db.sessions.list(states=["running"]):
            if not mine(row.id):
                continue
            thread = self.threads.thread_of(row.id)
            if thread is None:
                continue
            tools = unanswered.get(row.id, [])
            extra = ""
            if tools:
                names = ", ".join(dict.fromkeys(tools))
                extra = f" The {names} request{'s were' if len(tools) > 1 else ' was'} not answered and did not run."
            self.mark_interrupted(
                row.id, thread, reason="the daemon restarted during a turn", extra=extra
            )

    def _mine(self) -> Callable[[str], bool]:
        """Whether a session is this host's to recover: its row names this host (or
        none); a session with no row at all is nobody else's either."""
        if self.host is None:
            return lambda session_id: True
        hosts: dict[str, str | None] = {row.id: row.host for row in self.db.sessions.list()}
        me = self.host
        return lambda session_id: hosts.get(session_id, me) in (me, None)

    def _finish_opening(self, row: SessionRow) -> None:
        """A session whose topic was created but whose header was not known to be posted
        when the daemon died: the header and the "started" notice are posted now, and the
        thread is told that its first prompt did not run."""
        thread = self.threads.thread_of(row.id)
        if thread is None:
            self.db.sessions.update(row.id, state="ended")
            return
        self.threads.reply(
            thread, render.session_header(row.id, row.cwd, row.mode, row.model), session_id=row.id
        )
        if thread.thread_id is not None:  # announced in the chat's main thread, as `new` does
            link = (
                self.adapters[thread.platform].thread_link(thread)
                if thread.platform in self.adapters
                else None
            )
            self.threads.reply(
                ThreadRef(thread.platform, thread.chat_id, None),
                render.session_started(row.id, row.cwd, link),
            )
        self.mark_interrupted(
            row.id, thread, reason="the daemon restarted while this session was opening"
        )

    def _close_status(self, thread: ThreadRef, session_id: str, turn_id: int, row_id: int) -> None:
        """The interrupted turn's status message: no Stop button, and why."""
        stream_key = f"{session_id}:{turn_id}"  # as `TurnView` names its streams
        self.outbox.supersede(stream_key)
        self.outbox.supersede(f"{stream_key}:status")
        try:
            self.outbox.enqueue_edit(
                thread,
                row_id,
                render.notice("⚠️ _Interrupted — the daemon restarted during this turn._"),
            )
        except ValueError as e:  # the thread moved (fallback) or the row is gone
            log.info("session %s: status message of turn %d not edited: %s", session_id, turn_id, e)

    def mark_interrupted(
        self, session_id: str, thread: ThreadRef, *, reason: str, extra: str = ""
    ) -> None:
        self.db.sessions.update(session_id, state="interrupted")
        self.outbox.enqueue(
            thread,
            render.notice(
                f"⚠️ Interrupted: {reason}.{extra} Send a message here to continue — the session resumes with its full context.",
                notify=True,
            ),
            session_id=session_id,
            priority=0,
        )

    async def thread_fallback(self, thread: ThreadRef) -> ThreadRef | None:
        """A topic became unusable: continue the session as a reply chain."""
        binding = self.db.bindings.by_thread_key(thread.key)
        adapter = self.adapters.get(thread.platform)
        if binding is None or adapter is None:
            return None
        row = self.db.sessions.get(binding.session_id)
        header = render.notice(
            f"📂 Session {binding.session_id} continues here (reply to its messages)."
        )
        new_thread, header_id = await self.threads.platform_call(
            thread.platform,
            thread.chat_id,
            lambda: adapter.open_thread(
                thread.chat_id, row.title if row else "session", header, prefer_topic=False
            ),
        )
        self.db.bindings.rebind(
            thread.key,
            thread_id=new_thread.thread_id,
            thread_key=new_thread.key,
            kind="reply",
            header_message_id=header_id,
        )
        self.threads.forget_thread(binding.session_id)
        log.warning(
            "session %s: thread %s unusable, moved to a reply chain", binding.session_id, thread.key
        )
        return new_thread


__all__ = ["CliReaper", "Recovery"]
