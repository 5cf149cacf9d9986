"""One Claude Code session: a long-lived CLI process driven through ``ClaudeSDKClient``.

An ``AgentSession`` owns one client in streaming mode with partial messages. Prompts are
queued and run one turn at a time by the session's worker task; the SDK's messages are
translated into ``AgentEvent``s and handed to the sink by a second task, in order, so a
slow sink never stalls the SDK's reader. The CLI is started on the first prompt; if it
dies, the turn ends with ``AgentFailed`` and the next prompt starts a new CLI that resumes
the conversation by its Claude session id. The CLI reads no settings from its folder;
a trusted folder's are given to it as a snapshot (``project``, ``agent/trust.py``). Costs are reported per turn: the SDK's
``total_cost_usd`` is cumulative for the life of one CLI process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLIConnectionError,
    Message,
    PermissionMode,
    ResultMessage,
    SystemMessage,
)
from claude_agent_sdk.types import SystemPromptPreset

from agent.cli import claude_cli_path
from agent.credentials import login_help
from agent.events import (
    AgentEvent,
    AgentFailed,
    EventSink,
    ModeChanged,
    SessionStarted,
    ToolFinished,
    TurnStarted,
)
from agent.permissions import PermissionGate, check_mode
from agent.trust import SETTING_SOURCES, FolderSettings, project_instructions
from agent.turn import Prompt, Turn, as_query

log = logging.getLogger(__name__)

_SINK_DRAIN_SECONDS = 5.0
_INTERRUPT_SECONDS = 3.0


class AgentSession:
    """Create through ``AgentHost.start_session`` (needs a running event loop)."""

    def __init__(
        self,
        session_id: str,
        cwd: Path,
        sink: EventSink,
        *,
        env: Mapping[str, str],
        cli_path: str | None,
        model: str,
        mode: PermissionMode,
        resume: str | None,
        project: FolderSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.cwd = cwd
        # The folder's own settings (hooks, MCP servers, env, ...) the CLI is given, as
        # the owner trusted them; None: none. Fixed for the life of the session object.
        self.project = project
        self.claude_session_id: str | None = resume
        self._sink = sink
        self._env = dict(env)
        self._cli_path = cli_path
        self._model, self._mode = model, mode
        # What the live CLI uses (model, mode); mode None: not known, send it again.
        self._applied: tuple[str, PermissionMode | None] | None = None
        self._client: ClaudeSDKClient | None = None
        self._cost_base = 0.0  # total_cost_usd of the live CLI so far
        self._announced: str | None = None  # Claude session id reported by the live CLI
        self._turn: Turn | None = None
        self._outstanding = 0
        self._closed = False
        self._stderr: deque[str] = deque(maxlen=5)
        self._prompts: asyncio.Queue[Prompt] = asyncio.Queue()
        self._events: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
        self._idle = asyncio.Event()  # no turn is running
        self._idle.set()
        self._gate = PermissionGate(session_id, self._emit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker = self._spawn(self._work(), "worker")
        self._dispatcher = self._spawn(self._dispatch(), "events")

    @property
    def project_fingerprint(self) -> str:
        """The fingerprint of the folder settings the CLI is given; "" for none."""
        return self.project.fingerprint if self.project else ""

    @property
    def busy(self) -> bool:
        """A turn is running or waiting to run."""
        return self._outstanding > 0

    async def send(self, prompt: str, images: Sequence[tuple[str, bytes]] = ()) -> bool:
        """Queue a prompt (images as ``(media_type, data)``); True if it waits behind a turn."""
        if self._closed:
            raise RuntimeError(f"session {self.session_id} is closed")
        queued = self._outstanding > 0
        self._outstanding += 1
        self._prompts.put_nowait(Prompt(prompt, tuple(images)))
        return queued

    async def interrupt(self) -> None:
        """Stop the running turn (queued prompts still run); open permission prompts deny."""
        turn = self._turn
        if turn is None or turn.ended:
            return
        turn.interrupted = True
        client = self._client
        if client is not None and turn.sent:
            try:
                await client.interrupt()
            except Exception as exc:  # the CLI may be gone already; the turn ends anyway
                log.warning("[%s] interrupt failed: %r", self.session_id, exc)
        self._gate.cancel_all()

    async def set_mode(self, mode: str) -> None:
        """Switch permission mode ("default", "acceptEdits", "plan", ...).  Always sent
        to a live CLI: it may have changed mode on its own (Claude enters plan mode
        itself; approving a plan leaves it), so what we applied last proves nothing."""
        self._mode = check_mode(mode)
        if self._applied is not None:
            self._applied = (self._applied[0], None)
        await self._apply()

    async def set_model(self, model: str) -> None:
        """Switch model from the next model call on; "" means the CLI's default."""
        self._model = model
        await self._apply()

    async def close(self) -> None:
        """Stop the CLI and the session's tasks. A running turn is interrupted (its
        TurnEnded still comes), queued prompts are dropped, queued events delivered."""
        if self._closed:
            return
        self._closed = True
        turn = self._turn
        if turn is not None:
            # A CLI busy with a turn ignores the end of its input, and the SDK waits 5 s
            # before it terminates it; once interrupted it exits at once.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_INTERRUPT_SECONDS):
                    await self.interrupt()
                    await self._idle.wait()
        self._gate.cancel_all()
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._outstanding = 0  # queued prompts are dropped
        if turn is not None and not turn.ended:
            self._emit(turn.end("", is_error=False, interrupted=True))
        await self._disconnect()
        self._events.put_nowait(None)
        me = asyncio.current_task()
        if me is not self._dispatcher:  # close() may be called by the sink itself
            try:
                await asyncio.wait_for(asyncio.shield(self._dispatcher), _SINK_DRAIN_SECONDS)
            except TimeoutError:
                log.warning("[%s] sink too slow, events dropped", self.session_id)
        others = [t for t in self._tasks if t is not me]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    # -- tasks ------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"agent:{self.session_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("[%s] task %s died", self.session_id, task.get_name(), exc_info=exc)

    def _emit(self, event: AgentEvent) -> None:
        self._events.put_nowait(event)

    async def _dispatch(self) -> None:
        while (event := await self._events.get()) is not None:
            try:
                await self._sink(event)
            except Exception:
                log.exception("[%s] event sink failed on %s", self.session_id, type(event).__name__)

    async def _work(self) -> None:
        while not self._closed:
            prompt = await self._prompts.get()
            if self._closed:
                return
            self._idle.clear()
            turn = self._turn = Turn(self.session_id, prompt)
            try:
                self._emit(TurnStarted(self.session_id, prompt.text))
                await self._run(turn)
            except Exception as exc:
                log.exception("[%s] turn failed", self.session_id)
                await self._fail(turn, f"{type(exc).__name__}: {exc}")
            finally:
                self._turn = None
                self._outstanding -= 1
                self._idle.set()

    # -- one turn ---------------------------------------------------------------------------

    async def _run(self, turn: Turn) -> None:
        try:
            client = await self._send(turn)
            if client is None:
                return self._emit(turn.end("", is_error=False, interrupted=True))
            async for message in client.receive_response():
                self._on_message(turn, message)
        except ClaudeSDKError as exc:  # the CLI would not start, or died mid-turn
            log.warning("[%s] Claude Code failed: %s", self.session_id, exc)
            return await self._fail(turn, str(exc))
        if not turn.ended:
            await self._fail(turn, "Claude Code stopped before the turn ended")

    async def _send(self, turn: Turn) -> ClaudeSDKClient | None:
        """Send the prompt, starting the CLI if needed; None if interrupted before that."""
        for attempt in (1, 2):
            client = await self._connected()
            if turn.interrupted:
                return None
            turn.sent = True
            try:
                await client.query(as_query(turn.prompt))
                return client
            except CLIConnectionError:
                if attempt == 2:
                    raise
                # The CLI died while idle: start one that resumes the session, send again.
                await self._disconnect()
        raise AssertionError("unreachable")

    async def _fail(self, turn: Turn, error: str) -> None:
        """The CLI failed (crashed, would not start): end the turn, drop the process."""
        if self._stderr:
            error = f"{error}\n" + "\n".join(self._stderr)
        await self._disconnect()
        if not turn.ended:
            self._emit(AgentFailed(self.session_id, error))
            self._emit(turn.end("", is_error=True, interrupted=turn.interrupted))

    def _on_message(self, turn: Turn, message: Message) -> None:
        if isinstance(message, SystemMessage) and message.subtype == "init":
            self._note_session_id(message.data.get("session_id"))
        elif isinstance(message, ResultMessage):
            self._note_session_id(message.session_id)
            total = message.total_cost_usd or 0.0
            cost = max(0.0, total - self._cost_base)
            self._cost_base = max(total, self._cost_base)
            for event in turn.ended_by(message, cost):
                self._emit(self._explained(event))
        else:
            for event in turn.events_for(message):
                self._emit(event)
                if (
                    isinstance(event, ToolFinished)
                    and event.name == "EnterPlanMode"
                    and not event.is_error
                ):
                    self._entered_plan_mode()

    def _entered_plan_mode(self) -> None:
        """The CLI is in plan mode now (its EnterPlanMode tool ran): what we want and
        what it uses both say so, and the consumer is told."""
        self._mode = "plan"
        if self._applied is not None:
            self._applied = (self._applied[0], "plan")
        self._emit(ModeChanged(self.session_id, "plan"))

    def _explained(self, event: AgentEvent) -> AgentEvent:
        """A failure for want of credentials says how to log in (and is logged so)."""
        if not isinstance(event, AgentFailed) or not event.login:
            return event
        env = {**os.environ, **self._env}
        text = login_help(self._cli_path or claude_cli_path(""), env)
        log.error("[%s] Claude Code is not logged in: %s", self.session_id, " ".join(text.split()))
        return dataclasses.replace(event, error=text)

    def _note_session_id(self, claude_session_id: object) -> None:
        """Report the id once per CLI process (a resumed session keeps its id)."""
        if isinstance(claude_session_id, str) and claude_session_id != self._announced:
            self.claude_session_id = self._announced = claude_session_id
            self._emit(SessionStarted(self.session_id, claude_session_id))

    # -- the CLI process --------------------------------------------------------------------

    async def _connected(self) -> ClaudeSDKClient:
        client = self._client
        if client is None:
            self._stderr.clear()
            # The CLI reads no settings of the folder's own (it would hot-reload them);
            # a trusted folder's come as the snapshot the owner saw. CLAUDE.md is not
            # code: every session gets it, as text, appended to Claude Code's own system
            # prompt (the SDK's default is an empty one, not the one `claude` uses).
            instructions = await asyncio.to_thread(
                project_instructions, self.cwd, {**os.environ, **self._env}
            )
            project = self.project
            options = ClaudeAgentOptions(
                cwd=str(self.cwd),
                env=self._env,
                cli_path=self._cli_path,
                model=self._model or None,
                permission_mode=self._mode,
                resume=self.claude_session_id,
                include_partial_messages=True,
                can_use_tool=self._gate.can_use_tool,
                stderr=self._on_stderr,
                setting_sources=SETTING_SOURCES,
                settings=json.dumps(project.settings) if project and project.settings else None,
                mcp_servers=dict(project.mcp_servers) if project else {},
                system_prompt=SystemPromptPreset(
                    type="preset", preset="claude_code", append=instructions
                )
                if instructions
                else SystemPromptPreset(type="preset", preset="claude_code"),
            )
            applied = (self._model, self._mode)
            client = ClaudeSDKClient(options)
            await client.connect()
            self._client, self._applied, self._cost_base = client, applied, 0.0
            self._announced = None
        await self._apply()
        return client

    async def _apply(self) -> None:
        """Bring the live CLI's model and permission mode in line with the wanted ones."""
        client, applied, wanted = self._client, self._applied, (self._model, self._mode)
        if client is None or applied is None or applied == wanted:
            return  # the next CLI starts with the wanted values
        try:
            if applied[0] != wanted[0]:
                await client.set_model(wanted[0] or None)
            if applied[1] != wanted[1]:
                await client.set_permission_mode(wanted[1])
            if self._client is client:
                self._applied = wanted
        except Exception as exc:  # a dead CLI; the next one starts with the wanted values
            log.warning("[%s] could not switch model/mode: %r", self.session_id, exc)

    async def _disconnect(self) -> None:
        client, self._client, self._applied = self._client, None, None
        if client is not None:
            try:
                await client.disconnect()
            except Exception as exc:
                log.warning("[%s] disconnect failed: %r", self.session_id, exc)

    def _on_stderr(self, line: str) -> None:
        self._stderr.append(line)
        log.debug("[%s] claude: %s", self.session_id, line)
