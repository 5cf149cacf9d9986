"""The daemon side of `threadline attach` (and `threadline import ID`): a Unix socket.

The socket lives at `<data dir>/run/attach.sock`; the `run` directory is mode 0700
and the socket 0600, and a connecting process must be the daemon's own user
(`SO_PEERCRED` where the OS has it), so only the owner of the machine account gets
in.  A stale socket left by a killed daemon is replaced; a live one (another daemon
on the same data directory) is left alone and attach is disabled.

The protocol is newline-delimited JSON.  The client sends operations:

    {"op": "attach", "session": ID}          ID: Threadline or Claude session id
    {"op": "prompt", "text": TEXT}           a prompt, shown in the chat as from the terminal
    {"op": "answer", "request": R, "choice": "a"|"s"|"d", "reason": TEXT}   an answer
    {"op": "question", "request": R, "index": N, "text": TEXT}   Claude's question N:
                                             option number(s) (`2`, `1, 3`) or a free answer
    {"op": "plan", "request": R, "text": TEXT}   Claude's plan: `approve`, `auto`,
                                             `keep planning`, or the feedback itself
    {"op": "stop"}                           interrupt the running turn
    {"op": "import", "id": CLAUDE_ID}        open a thread for a session on disk

and receives events, each with a type `t`: `attached` (its connection id, the session,
whether a turn runs), `history` (recent exchanges from the Claude transcript),
`prompt` (from the chat, a schedule or another terminal, with `source` and `by`),
`turn`, `delta`, `text`, `tool`, `tool_done`, `permission` (request id, tool, detail),
`question` (Claude's questions with numbered options, the open one's index), `plan`
(Claude's plan as Markdown), `answered` (with a question's next open index),
`decided`, `end` (cost, duration), `failed`, `notice`, `ok`, `error`, `imported`
(the agent and permission events are built in `bridge/sources/attach_events.py`).

Permission, question and plan answers go through the broker (and its question and
plan desks) like a button press, so the first answer
wins across chat and terminal; each decision is published to every attached client
when the request's future resolves, whoever decided it.  Each connection has a
bounded queue; a client that stops reading is disconnected rather than slowing the
bridge.  Every connection's task is registered in the bridge's `TaskGroup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from adapters.messages import ThreadRef
from adapters.tasks import TaskGroup
from agent.events import (
    AgentEvent,
    PermissionAsked,
    PermissionDecision,
)
from agent.host import AgentHost
from bridge import render
from bridge.approvals import plans
from bridge.approvals.permissions import PermissionBroker
from bridge.sessions import SessionRouter
from bridge.sources import prompts as sources
from bridge.sources.attach_events import agent_payload, request_payload
from bridge.sources.importer import ClaudeSessions
from storage.db import Database
from storage.models import SessionRow

log = logging.getLogger(__name__)

MAX_LINE: Final = 1 << 20  # a prompt may be long; a line beyond this closes the connection
QUEUE: Final = 5000  # events buffered per client before it counts as stuck
HISTORY: Final = 10

# `threadline import ID`: (origin or None for the default chat, owner, Claude session id)
# → (the session, what to tell the person)
ImportSession = Callable[[ThreadRef | None, str, str], Awaitable[tuple[SessionRow | None, str]]]
StopTurn = Callable[[SessionRow, ThreadRef], Awaitable[None]]  # as the chat's Stop does


@dataclass(eq=False)
class _Client:
    id: int
    writer: asyncio.StreamWriter
    user: str
    session_id: str | None = None
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE)
    )


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", raw)[1])


def _socket_alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


class AttachServer:
    def __init__(
        self,
        path: Path,
        *,
        db: Database,
        tasks: TaskGroup,
        router: SessionRouter,
        broker: PermissionBroker,
        host: AgentHost,
        claude_sessions: ClaudeSessions,
        import_session: ImportSession,
        stop_turn: StopTurn,
    ) -> None:
        self.path = path
        self.db = db
        self.tasks = tasks
        self.router = router
        self.broker = broker
        self.host = host
        self.claude_sessions = claude_sessions
        self.import_session = import_session
        self.stop_turn = stop_turn
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[_Client] = set()
        self._next_id = 0

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Listen; on any problem log it and run without attach (chat still works)."""
        try:
            self._prepare()
            self._server = await asyncio.start_unix_server(
                self._accept, path=str(self.path), limit=MAX_LINE
            )
            os.chmod(self.path, 0o600)
        except (OSError, RuntimeError) as e:
            log.error("attach socket %s unavailable: %s; `threadline attach` is off", self.path, e)
            self._server = None
            return
        log.info("attach socket at %s", self.path)

    def _prepare(self) -> None:
        run = self.path.parent
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = run.stat()
        if st.st_uid != os.getuid():
            raise RuntimeError(f"{run} belongs to another user")
        os.chmod(run, 0o700)
        if len(str(self.path).encode()) > 100:
            raise RuntimeError(
                "the socket path is too long for a Unix socket; set [daemon] data_dir"
            )
        if self.path.exists() or self.path.is_symlink():
            if _socket_alive(self.path):
                raise RuntimeError("another daemon is listening there")
            self.path.unlink()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for client in list(self._clients):
            self._close(client)
        with contextlib.suppress(OSError):
            self.path.unlink()

    # --- publishing (a subscriber of the turn router, `bridge/turn_router.py`) -----

    def publish(self, session_id: str, event: dict[str, Any]) -> None:
        for client in list(self._clients):
            if client.session_id == session_id:
                self._put(client, event)

    def agent_event(self, ev: AgentEvent) -> None:
        if not self._clients:
            return
        out = agent_payload(ev, self._cwd_of)
        if out is not None:
            self.publish(ev.session_id, out)

    def _cwd_of(self, session_id: str) -> str:
        row = self.db.sessions.get(session_id)
        return row.cwd if row else ""

    def permission_asked(self, ev: PermissionAsked) -> None:
        """After the broker posted a prompt: show it in the terminals, and tell them
        when it is decided (by anyone: chat, terminal, timeout, turn end)."""
        row = next(
            (
                r
                for r in self.db.permissions.pending(ev.session_id)
                if r.tool_use_id == ev.tool_use_id
            ),
            None,
        )
        if row is None:
            return  # allowed by a session rule, or already decided
        session = self.db.sessions.get(ev.session_id)
        self.publish(ev.session_id, request_payload(row.id, ev.name, ev.input, session))
        request_id = row.id

        def decided(_: asyncio.Future[PermissionDecision]) -> None:
            now = self.db.permissions.get(request_id)
            state = now.state if now is not None and now.state != "pending" else "withdrawn"
            by = now.decided_by if now is not None else ""
            out = {"t": "decided", "request": request_id, "state": state, "by": by}
            if ev.name == plans.TOOL and state == "allowed":  # the plan switched the mode
                session = self.db.sessions.get(ev.session_id)
                out["mode"] = session.mode if session is not None else ""
            self.publish(ev.session_id, out)

        ev.future.add_done_callback(decided)

    # --- connections --------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._next_id += 1
        client = _Client(self._next_id, writer, getpass.getuser())
        self.tasks.spawn(self._serve(client, reader), name=f"attach-{client.id}")

    async def _serve(self, client: _Client, reader: asyncio.StreamReader) -> None:
        uid = _peer_uid(client.writer)
        if uid is not None and uid != os.getuid():
            log.warning("attach: refused a connection from uid %d", uid)
            client.writer.close()
            return
        self._clients.add(client)
        pump = self.tasks.spawn(self._pump(client), name=f"attach-{client.id}-out")
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self._put(client, {"t": "error", "error": "line too long"})
                    break
                except ConnectionError:
                    break
                if not line:
                    break
                try:
                    msg = json.loads(line)
                    if not isinstance(msg, dict):
                        raise ValueError("not an object")
                except ValueError:
                    self._put(client, {"t": "error", "error": "not a JSON object"})
                    continue
                try:
                    await self._op(client, msg)
                except Exception as e:
                    log.exception("attach: %s failed", msg.get("op"))
                    self._put(client, {"t": "error", "error": f"{type(e).__name__}: {e}"[:300]})
        finally:
            self._close(client)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), 2)
            pump.cancel()

    async def _pump(self, client: _Client) -> None:
        try:
            while (event := await client.queue.get()) is not None:
                client.writer.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
                await client.writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(client)
            client.writer.close()

    def _put(self, client: _Client, event: dict[str, Any]) -> None:
        try:
            client.queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("attach client %d is not reading; disconnecting it", client.id)
            self._close(client)

    def _close(self, client: _Client) -> None:
        """Stop publishing to `client`; its pump ends (and closes the socket) after
        what is queued, or at once for a client that stopped reading."""
        if client not in self._clients:
            return
        self._clients.discard(client)
        if client.queue.full():
            while not client.queue.empty():
                client.queue.get_nowait()
        client.queue.put_nowait(None)

    # --- operations -----------------------------------------------------------------

    async def _op(self, client: _Client, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        who = f"terminal:{client.user}"
        if op == "attach":
            await self._attach(client, str(msg.get("session", "")))
            return
        if op == "import":
            row, said = await self.import_session(None, who, str(msg.get("id", "")))
            self._put(
                client,
                {
                    "t": "imported" if row else "error",
                    "session": row.id if row else None,
                    "message": said,
                    "error": said,
                },
            )
            return
        session = self.db.sessions.get(client.session_id or "")
        thread = self.router.threads.thread_of(session.id) if session else None
        if session is None or thread is None:
            self._put(client, {"t": "error", "error": "attach to a session first"})
            return
        if op == "prompt":
            text = str(msg.get("text", "")).strip()
            if session.state == "ended":
                self._put(
                    client,
                    {
                        "t": "error",
                        "error": "the session has ended; "
                        f"{render.cmd(thread.platform, f'resume {session.id}')} in the chat "
                        "reopens it",
                    },
                )
            elif text.lower().rstrip(".!") in ("allow", "always", "deny"):
                # Another client (or one whose prompt was just decided) typed an answer:
                # it answers the thread's open prompt, and is never a prompt for Claude.
                if not await self.broker.answer_text(
                    thread, text, who, f"{client.user} (terminal)", reply_to=None
                ):
                    self._put(client, {"t": "notice", "text": "No permission request is open."})
            elif text:
                self.db.audit.log(platform="terminal", user=who, action="prompt")
                await sources.submit(
                    self.router, session, text, source="terminal", by=client.user, conn=client.id
                )
                self._put(client, {"t": "ok", "op": "prompt"})
        elif op == "answer":
            request_id, choice = str(msg.get("request", "")), str(msg.get("choice", ""))
            reason = str(msg.get("reason", "")) if choice == "d" else ""
            result = await self.broker.press(
                request_id, choice, thread, who, f"{client.user} (terminal)", reason=reason
            )
            self._put(client, {"t": "answered", "request": request_id, "result": result.text})
        elif op == "question":
            # an answer to Claude's open question: option number(s) or a free answer
            request_id, text = str(msg.get("request", "")), str(msg.get("text", "")).strip()
            index = msg.get("index")
            result, current = await self.broker.questions.answer_typed(
                request_id,
                index if isinstance(index, int) else -1,
                text,
                thread,
                who,
                f"{client.user} (terminal)",
            )
            self._put(
                client,
                {"t": "answered", "request": request_id, "result": result.text, "index": current},
            )
        elif op == "plan":
            # an answer to Claude's plan: approve, auto, keep planning, or the feedback
            request_id, text = str(msg.get("request", "")), str(msg.get("text", "")).strip()
            result = await self.broker.plans.answer(
                request_id, text, thread, who, f"{client.user} (terminal)"
            )
            self._put(client, {"t": "answered", "request": request_id, "result": result.text})
        elif op == "stop":
            agent = self.host.get(session.id)
            if agent is None or not agent.busy:
                self._put(client, {"t": "notice", "text": "Nothing is running."})
            else:
                await self.stop_turn(session, thread)
                self._put(client, {"t": "ok", "op": "stop"})
        else:
            self._put(client, {"t": "error", "error": f"unknown op {str(op)[:40]!r}"})

    async def _attach(self, client: _Client, ident: str) -> None:
        db = self.db
        session = db.sessions.get(ident) if ident else None
        session = session or (db.sessions.by_claude_id(ident) if ident else None)
        if session is None or self.router.threads.thread_of(session.id) is None:
            self._put(
                client,
                {
                    "t": "error",
                    "error": f"no session {ident[:60]!r} (`threadline sessions` lists them)",
                },
            )
            return
        client.session_id = session.id
        agent = self.host.get(session.id)
        self._put(
            client,
            {
                "t": "attached",
                "conn": client.id,
                "session": {
                    "id": session.id,
                    "title": session.title,
                    "cwd": session.cwd,
                    "state": session.state,
                    "claude_session_id": session.claude_session_id,
                },
                "busy": bool(agent and agent.busy),
            },
        )
        items: list[dict[str, str]] = []
        if session.claude_session_id:
            try:
                exchanges = await asyncio.to_thread(
                    self.claude_sessions.exchanges,
                    session.claude_session_id,
                    session.cwd,
                    HISTORY,
                )
                items = [{"role": e.role, "text": e.text} for e in exchanges]
            except Exception as e:  # a damaged transcript must not stop the attach
                log.warning("attach: reading the history of %s failed: %r", session.id, e)
        self._put(client, {"t": "history", "items": items})
        for row in db.permissions.pending(session.id):
            tool_input = json.loads(row.input_json or "{}")
            pending = self.broker.find(row.id)
            index = pending.form.index if pending is not None and pending.form else 0
            self._put(
                client, request_payload(row.id, row.tool_name, tool_input, session, index=index)
            )


__all__ = ["AttachServer"]
