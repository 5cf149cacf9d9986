"""The registry of running agent sessions, and the settings they share.

``AgentHost`` starts, resumes, finds and ends ``AgentSession``s, each keyed by the
Threadline session id its owner chose, and closes them all on shutdown. It holds what
every session's CLI gets: the event sink, the environment (``os.environ`` overlaid with
``env``, applied by the SDK when it spawns the CLI), the CLI binary (the SDK's bundled one
by default), and the default model and permission mode. Whether a session's CLI loads
its folder's own settings is the caller's explicit choice (``project``). Sessions start their CLI lazily,
on their first prompt, so resuming many idle sessions after a restart costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from agent.events import EventSink
from agent.permissions import check_mode
from agent.session import AgentSession
from agent.trust import FolderSettings

log = logging.getLogger(__name__)


class AgentHost:
    """Owns the sessions; ``close()`` ends them all."""

    def __init__(
        self,
        sink: EventSink,
        *,
        env: Mapping[str, str] | None = None,
        cli_path: str | None = None,
        default_model: str = "",
        default_mode: str = "default",
    ) -> None:
        self._sink = sink
        self._env = dict(env or {})
        self._cli_path = cli_path
        self._default_model = default_model
        self._default_mode = check_mode(default_mode)
        self._sessions: dict[str, AgentSession] = {}
        self._closed = False

    async def start_session(
        self,
        session_id: str,
        cwd: Path | str,
        *,
        resume: str | None = None,
        model: str | None = None,
        mode: str | None = None,
        project: FolderSettings | None = None,
    ) -> AgentSession:
        """A new session in ``cwd``; ``resume`` continues a Claude session by its id.
        ``project``: the folder's own settings the CLI is given (the snapshot of
        ``agent/trust.inspect_folder`` the owner trusted); by default none.

        The CLI starts on the first prompt; ``SessionStarted`` then reports the Claude
        session id (the same id again when resuming).
        """
        if self._closed:
            raise RuntimeError("the agent host is closed")
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} is already running")
        directory = Path(cwd)
        if not await asyncio.to_thread(directory.is_dir):
            raise FileNotFoundError(f"working directory {directory} does not exist")
        session = AgentSession(
            session_id,
            directory,
            self._sink,
            env=self._env,
            cli_path=self._cli_path,
            model=self._default_model if model is None else model,
            mode=self._default_mode if mode is None else check_mode(mode),
            resume=resume,
            project=project,
        )
        self._sessions[session_id] = session
        return session

    def cli_env(self) -> dict[str, str]:
        """The environment the CLI runs with (where it finds its config, HOME, ...)."""
        return {**os.environ, **self._env}

    def get(self, session_id: str) -> AgentSession | None:
        return self._sessions.get(session_id)

    @property
    def sessions(self) -> Mapping[str, AgentSession]:
        return dict(self._sessions)

    async def end_session(self, session_id: str) -> None:
        """Stop the session's CLI; unknown ids are ignored. It can be resumed later."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            await session.close()

    async def close(self) -> None:
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        results = await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        for session, result in zip(sessions, results, strict=True):
            if isinstance(result, BaseException):
                log.error("[%s] close failed: %r", session.session_id, result)
