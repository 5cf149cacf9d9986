"""Opening a session and its thread: `open_session` (`new`, `resume`'s picker buttons,
import from disk and the terminal's attach all end up here).

On the platform's gateway the thread is opened at once through the adapter (a topic,
or a reply chain), bound early (a daemon killed between creating a topic and posting
its header finds the session "opening" and finishes it on restart) and announced in
the thread the request came from.  On any other host there is no chat connection:
`Forwarder.open_remote` (`bridge/forward.py`) writes the session row and asks the
gateway, which opens the thread the same way in `open_requested` and tells the host
to go on.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from adapters.messages import ThreadRef
from bridge import render
from bridge.commands.context import Services
from storage.models import SessionRow, ThreadBinding
from storage.types import BindingKind, SessionId

log = logging.getLogger(__name__)


async def open_session(
    s: Services,
    origin: ThreadRef,
    owner: str,
    cwd: Path,
    *,
    title: str,
    claude_session_id: str | None = None,
) -> tuple[SessionRow, ThreadRef] | None:
    """A session row and its new thread (a topic, or a reply chain), announced in
    `origin` if that is elsewhere; None (and `origin` told why) at the session cap.
    With `claude_session_id` the session continues that Claude session."""
    if s.db.sessions.count_open() >= s.config.agent.max_concurrent_sessions:
        s.reply(
            origin,
            render.notice(
                f"🚫 {s.config.agent.max_concurrent_sessions} sessions are open already; "
                f"{render.cmd(origin.platform, 'end')} one first."
            ),
        )
        return None
    row = SessionRow(
        id=SessionId(secrets.token_hex(3)),
        platform=origin.platform,
        cwd=str(cwd),
        title=title,
        owner=owner,
        mode=s.config.agent.permission_mode,
        model=s.config.agent.model,
        claude_session_id=claude_session_id,
        state="opening",
        host=s.config.daemon.host,
    )
    if not s.forward.is_gateway(origin.platform):  # only the gateway can open threads
        return await s.forward.open_remote(row, origin, title)
    thread = await _open_thread(s, row, origin, title, new_row=True)
    row.state = "active"
    return row, thread


async def _open_thread(
    s: Services, row: SessionRow, origin: ThreadRef, title: str, *, new_row: bool
) -> ThreadRef:
    """Open the thread of session `row` (written first if `new_row`), bind it, mark the
    session active and announce it in `origin` if that is elsewhere."""
    adapter = s.adapters[origin.platform]
    session_id = row.id
    header = render.session_header(session_id, row.cwd, row.mode, row.model)
    chat = adapter.default_chat(origin)
    early: list[ThreadRef] = []

    def bind(thread: ThreadRef, header_id: str | None, kind: BindingKind) -> None:
        if new_row:
            s.bind(row, thread, header_id, kind)
        else:  # the session's own host wrote the row
            s.db.bindings.add(
                ThreadBinding(
                    session_id=session_id,
                    platform=thread.platform,
                    chat_id=thread.chat_id,
                    thread_id=thread.thread_id,
                    header_message_id=header_id,
                    kind=kind,
                    thread_key=thread.key,
                )
            )

    def created(topic: ThreadRef) -> None:
        # The topic exists, its header does not yet: recorded now, a daemon killed
        # in between finds the session ("opening") and finishes it on restart.
        if not early:
            bind(topic, None, "topic")
            early.append(topic)

    thread, header_id = await s.platform_call(
        origin.platform,
        chat,
        lambda: adapter.open_thread(chat, title[:120], header, on_created=created),
        calls=2,
    )
    kind: BindingKind = "reply" if thread.kind == "reply" else "topic"
    if early:  # the header is in; the thread may have become a reply chain meanwhile
        s.db.bindings.rebind(
            early[0].key,
            thread_id=thread.thread_id,
            thread_key=thread.key,
            kind=kind,
            header_message_id=header_id,
        )
        s.forget_thread(session_id)
    else:
        bind(thread, header_id, kind)
    s.db.sessions.update(session_id, state="active")
    s.db.audit.log(
        platform=origin.platform, user=row.owner, action="new", detail=f"{session_id} {row.cwd}"
    )
    if thread.key != origin.key:
        s.reply(origin, render.session_started(session_id, row.cwd, adapter.thread_link(thread)))
    return thread


async def open_requested(
    s: Services, host: str, session_id: str, origin: ThreadRef, title: str
) -> None:
    """On the gateway: open the thread of `host`'s new session (`Forwarder.open_remote`
    waits for it), then tell `host` to go on — also when it could not be opened."""
    try:
        row = s.db.sessions.get(session_id)
        if row is None or row.state != "opening" or s.thread_of(session_id) is not None:
            log.info("session %s: no thread to open (%s)", session_id, row.state if row else "gone")
            return
        await _open_thread(s, row, origin, title, new_row=False)
    except Exception as e:
        log.exception("session %s: opening its thread for %s failed", session_id, host)
        s.db.sessions.update(session_id, state="ended")
        s.reply(
            origin,
            render.notice(f"⚠️ The session's thread could not be opened: {type(e).__name__}."),
        )
    finally:
        s.forward.tell_opened(host, session_id)


__all__ = ["open_requested", "open_session"]
