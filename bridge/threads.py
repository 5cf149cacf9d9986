"""Where a session's messages go: thread ↔ session bindings, replies, platform calls.

The lowest layer of routing, shared by everything that talks to a session's thread
(the sessions router, the turn router, recovery, folder trust, revoked modes, prompts
from the terminal and schedules, import).  It knows the database's bindings and the
outbox, nothing of Claude Code, so the modules that need "the thread of session X" or
"say this there" take a `Threads` instead of the whole bridge — and the sessions
router (`bridge/sessions.py`), which needs those same modules, sits above it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from adapters.base import RateLimited, TransientError
from adapters.messages import Inbound, Outbound, ThreadRef
from bridge.outbox.outbox import Outbox
from storage.db import Database
from storage.models import SessionRow, ThreadBinding
from storage.types import BindingKind, OutboxId

T = TypeVar("T")


class Threads:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox
        self._threads: dict[str, ThreadRef] = {}

    def thread_of(self, session_id: str) -> ThreadRef | None:
        """The session's thread; cached, because every agent event asks for it."""
        cached = self._threads.get(session_id)
        if cached is not None:
            return cached
        binding = self.db.bindings.for_session(session_id)
        if binding is None:
            return None
        thread = self._threads[session_id] = ThreadRef(
            binding.platform, binding.chat_id, binding.thread_id
        )
        return thread

    def forget_thread(self, session_id: str) -> None:
        """Drop the cached thread after the session was moved to another one."""
        self._threads.pop(session_id, None)

    def session_for(self, msg: Inbound) -> SessionRow | None:
        """The session of the thread an event was placed in (`bridge/placement.py`)."""
        binding = self.db.bindings.by_thread_key(msg.thread.key)
        return self.db.sessions.get(binding.session_id) if binding else None

    def bind(
        self, row: SessionRow, thread: ThreadRef, header_id: str | None, kind: BindingKind
    ) -> None:
        self.db.sessions.add(row)
        self.db.bindings.add(
            ThreadBinding(
                session_id=row.id,
                platform=thread.platform,
                chat_id=thread.chat_id,
                thread_id=thread.thread_id,
                header_message_id=header_id,
                kind=kind,
                thread_key=thread.key,
            )
        )

    def reply(
        self, thread: ThreadRef, msg: Outbound, *, session_id: str | None = None
    ) -> list[OutboxId]:
        """Say something in a thread, ahead of queued stream updates (priority 0)."""
        return self.outbox.enqueue(thread, msg, session_id=session_id, priority=0)

    async def platform_call(
        self, platform: str, chat_id: str, call: Callable[[], Awaitable[T]], *, calls: int = 1
    ) -> T:
        """A platform call made outside the outbox (opening or closing a thread): paced
        by the chat's rate budget like everything else, retried on 429 and 5xx."""
        budget = self.outbox.budget(platform)
        for attempt in range(1, 6):
            # after any prompt or final answer ready in the chat (`Outbox.reserve`)
            slots = await self.outbox.reserve(platform, chat_id, calls=calls)
            backoff = 0.0  # after a 429 the budget's pause is the wait
            try:
                return await call()
            except RateLimited as e:
                budget.pause(chat_id, e.retry_after)
                if attempt == 5:
                    raise
            except TransientError:
                if attempt == 5:
                    raise
                backoff = min(30.0, 0.5 * 2**attempt)
            finally:
                for at in slots:  # settled when the call returned, not after a backoff
                    budget.settle(chat_id, "message", at)
            await asyncio.sleep(backoff)
        raise AssertionError("unreachable")


__all__ = ["Threads"]
