"""A local fake of the Anthropic Messages API that the real Claude Code CLI talks to.

Tests point the CLI at it with ``ANTHROPIC_BASE_URL`` (``tests/support/fakes/claude_env.py``) and
script the model per prompt: ``fake.on("write a file", ToolUse("Write", {...}),
Text("done"))`` answers the first model call of a turn whose prompt contains
"write a file" with a ``tool_use`` block, and the call that carries its tool_result with
the text. Every body sent to ``/v1/messages`` is kept in ``fake.requests``.

Matching is stateless, so any number of CLI processes can share one fake: in the request's
``messages``, the latest user message carrying a prompt starts the turn (a prompt is the
last text block after the last ``tool_result``, ignoring ``<system-reminder>`` sections and
the CLI's own "[Request interrupted…]" and "[Image: source: …]" notes); the latest
registration whose string it contains wins; the number of assistant messages after it
picks the step. Unmatched turns and exhausted scripts answer "OK.".

What the bundled CLI (2.1.330, claude-agent-sdk 0.2.187) was seen to do against it:

- With ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` it calls nothing but
  ``POST /v1/messages?beta=true`` with ``"stream": true`` (no count_tokens, no title or
  summary calls, no DNS lookups, checked with strace). Without it, it also sends
  ``HEAD /api/hello`` to the base URL and telemetry to the internet. Other paths are
  answered ``{}`` and logged.
- Bodies: model ``claude-opus-5-5`` unless set, ``max_tokens`` 128000, adaptive thinking,
  ``tools`` (Agent, Bash, Edit, Read, Write, ...), ``metadata.user_id`` (a JSON string
  holding the session id), and ``{"role": "system"}`` entries inside ``messages``. The
  first user message starts with ``<system-reminder>`` blocks; an image prompt is sent as
  [image, text, "[Image: source: <file the CLI saved it to>]"].
- The CLI prices the usage numbers of ``message_start`` / ``message_delta`` (omit them and
  the cost is 0). ``total_cost_usd`` is cumulative per CLI process; a resumed process
  starts again from 0 and keeps the session id.
- The SDK yields one ``AssistantMessage`` per content block (same message id).
- An interrupt aborts the HTTP request; the turn's result is ``error_during_execution``
  with ``terminal_reason`` ``aborted_streaming`` (or ``aborted_tools`` when it came during
  a permission prompt: the CLI then cancels the ``can_use_tool`` call). The unanswered
  user message gets "[Request interrupted by user]" and the next prompt merged into it.
- HTTP 500/529: ``CLAUDE_CODE_MAX_RETRIES`` retries, ~0.5 s back-off each, then an
  ``AssistantMessage`` with ``error`` set and "API Error: 500 …" text, and a result with
  ``is_error`` (subtype "success"). The process lives on; the failed prompt stays in the
  conversation and the next one is merged into it.
- A dropped stream (``Cut``) is retried (``CLAUDE_CODE_MAX_RETRIES`` times, each retry
  streaming the same text again from its start), then repeated as a non-streaming call,
  which the fake answers with the whole step: the turn succeeds with the full text.
- Timing on 2 cores: CLI start and SDK initialize ≈ 0.5 s (1–2 s on a loaded machine); a
  turn ≈ 50–200 ms plus scripted delays; a tool round-trip adds ≈ 50 ms plus the tool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientConnectionResetError, web

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-opus-5-5"
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
# Text blocks the CLI adds to a user message that are not the user's words.
_CLI_NOTE = re.compile(r"^\[(Request interrupted by user|Image[^\]]*: source: )")


@dataclass(frozen=True)
class Text:
    """Streamed text: ``chunk``-sized ``text_delta`` pieces, ``delay`` s apart; end_turn.
    With ``gate``, the stream stops once ``gate_at`` of the text is out and goes on
    when the test sets the event (a fault can then be injected mid-stream, whatever
    the machine's speed)."""

    text: str
    chunk: int = 40
    delay: float = 0.0
    gate: asyncio.Event | None = None
    gate_at: float = 0.5


@dataclass(frozen=True)
class ToolUse:
    """One ``tool_use`` block (input streamed as ``input_json_delta``); stop_reason tool_use.
    With ``gate``, the response waits for the test to set the event before its content
    (a test can look at the chat between two tool calls of one turn)."""

    name: str
    input: Mapping[str, Any]
    text_before: str = ""
    id: str = ""  # generated when empty
    gate: asyncio.Event | None = None


@dataclass(frozen=True)
class ToolUses:
    """Several ``tool_use`` blocks in one assistant message (parallel tool calls)."""

    tools: Sequence[ToolUse]
    text_before: str = ""


@dataclass(frozen=True)
class Error:
    """An HTTP error from the model API (500 api_error, 529 overloaded_error, ...)."""

    status: int = 500
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Cut:
    """The stream starts, half of ``text`` is sent, then the connection is dropped.

    The CLI retries a broken stream and then asks once without streaming: that call
    gets the whole ``text`` (the turn recovers) unless ``recover`` is False, when its
    connection is dropped too (the turn fails)."""

    text: str
    recover: bool = True


@dataclass(frozen=True)
class Computed:
    """A step made from the request when it is served: ``make(request body)`` returns
    the step (e.g. a Write to the plan file whose path the CLI names in its prompt)."""

    make: Callable[[Mapping[str, Any]], Text | ToolUse | ToolUses | Error | Cut]


Step = Text | ToolUse | ToolUses | Error | Cut | Computed


def _error_body(status: int) -> dict[str, Any]:
    kind = {529: "overloaded_error", 429: "rate_limit_error", 400: "invalid_request_error"}
    etype = kind.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": f"fake {etype} ({status})"}}


def _prompt_of(message: Mapping[str, Any]) -> str:
    """The prompt a user message carries, or "" if it only continues a turn.

    The prompt is the last visible text block after the last ``tool_result`` block:
    when a user message got no answer (an interrupt, a failed API call) the CLI merges the
    next prompt into it, after the tool results and a "[Request interrupted by user…]"
    marker. ``<system-reminder>`` sections are not prompts.
    """
    content = message.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    prompt = ""
    for block in content or ():
        if block.get("type") == "tool_result":
            prompt = ""
        elif block.get("type") == "text":
            text = _REMINDER.sub("", block.get("text", "")).strip()
            if text and not _CLI_NOTE.match(text):
                prompt = text
    return prompt


def turn_position(messages: Sequence[Mapping[str, Any]]) -> tuple[str, int]:
    """(prompt of the current turn, number of model calls already answered in it)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user" and (prompt := _prompt_of(messages[i])):
            answered = sum(1 for m in messages[i + 1 :] if m.get("role") == "assistant")
            return prompt, answered
    return "", 0


def _input_tokens(data: Mapping[str, Any]) -> int:
    """A plausible input-token count for a request: about 4 characters a token."""
    size = len(json.dumps(data.get("messages", []))) + len(json.dumps(data.get("system", "")))
    return max(1, size // 4)


class FakeAnthropic:
    """The fake server; ``start()`` binds 127.0.0.1 on a free port and returns its URL."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []  # every /v1/messages body, in order
        self.paths: list[str] = []  # "METHOD /path?query" of every HTTP request
        self.errors_served = 0  # Error and Cut steps played (retries count again)
        self._scripts: list[tuple[str, tuple[Step, ...]]] = []
        self.base_url = ""  # set by start()
        self._runner: web.AppRunner | None = None

    def on(self, match: str, *steps: Step) -> None:
        """Answer the model calls of a turn whose prompt contains ``match`` with ``steps``."""
        self._scripts.append((match, steps))

    def step_for(self, data: Mapping[str, Any]) -> Step:
        prompt, index = turn_position(data.get("messages") or [])
        for match, steps in reversed(self._scripts):
            if match in prompt:
                step = steps[index] if index < len(steps) else Text("OK.")
                return step.make(data) if isinstance(step, Computed) else step
        return Text("OK.")

    async def start(self) -> str:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(f"{request.method} {request.path_qs}")
        if request.method == "POST" and request.path == "/v1/messages":
            data = await request.json()
            self.requests.append(data)
            return await self._messages(request, data)
        if request.method == "POST" and request.path == "/v1/messages/count_tokens":
            return web.json_response({"input_tokens": _input_tokens(await request.json())})
        if request.method == "HEAD" or request.path in ("/", "/health", "/api/health"):
            return web.json_response({"status": "ok"})
        log.warning("fake anthropic: unscripted %s %s", request.method, request.path_qs)
        return web.json_response({})

    async def _messages(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        model = str(data.get("model") or DEFAULT_MODEL)
        step = self.step_for(data)
        if isinstance(step, Error):
            self.errors_served += 1
            body = dict(step.body) if step.body is not None else _error_body(step.status)
            return web.json_response(body, status=step.status)
        if not data.get("stream"):
            if isinstance(step, Cut) and not step.recover and request.transport is not None:
                self.errors_served += 1
                request.transport.abort()
                return web.Response(status=500)
            return web.json_response(_whole_message(step, model, data))
        stream = _Stream(request, model, _input_tokens(data))
        try:
            return await stream.play(step, self)
        except (ConnectionResetError, ClientConnectionResetError):
            # The CLI hung up (an interrupt aborts the HTTP request): nothing to answer.
            return stream.resp


def _whole_message(step: Step, model: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """A non-streaming answer. The CLI falls back to one after a broken stream, so a
    scripted step is answered whole; side calls without tools only ever get text."""
    content: list[dict[str, Any]] = []
    stop = "end_turn"
    if isinstance(step, ToolUse | ToolUses) and data.get("tools"):
        tools = step.tools if isinstance(step, ToolUses) else [step]
        if step.text_before:
            content.append({"type": "text", "text": step.text_before})
        for tool in tools:
            content.append(
                {
                    "type": "tool_use",
                    "id": tool.id or _tool_id(),
                    "name": tool.name,
                    "input": dict(tool.input),
                }
            )
        stop = "tool_use"
    else:
        text = step.text if isinstance(step, Text | Cut) else "OK."
        content.append({"type": "text", "text": text})
    out = 1 + len(json.dumps(content)) // 4
    return _message(model, content, stop, _input_tokens(data), out)


def _tool_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


class _Stream:
    """Writes one streamed answer as Server-Sent Events."""

    def __init__(self, request: web.Request, model: str, input_tokens: int) -> None:
        self.request = request
        self.model = model
        self.input_tokens = input_tokens
        self.resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "request-id": f"req_{uuid.uuid4().hex[:24]}",
            }
        )
        self.index = 0
        self.output_chars = 0

    async def event(self, name: str, payload: dict[str, Any]) -> None:
        data = json.dumps({"type": name, **payload})
        await self.resp.write(f"event: {name}\ndata: {data}\n\n".encode())

    async def delta(self, delta: dict[str, Any]) -> None:
        await self.event("content_block_delta", {"index": self.index, "delta": delta})

    async def text_block(
        self, text: str, chunk: int = 40, delay: float = 0.0, gate: Text | None = None
    ) -> None:
        block = {"type": "text", "text": ""}
        await self.event("content_block_start", {"index": self.index, "content_block": block})
        hold = int(len(text) * gate.gate_at) if gate is not None and gate.gate else -1
        for i in range(0, len(text), max(1, chunk)):
            if delay and i:
                await asyncio.sleep(delay)
            if gate is not None and gate.gate is not None and 0 <= hold <= i:
                await gate.gate.wait()
                hold = -1
            piece = text[i : i + max(1, chunk)]
            self.output_chars += len(piece)
            await self.delta({"type": "text_delta", "text": piece})
        await self.event("content_block_stop", {"index": self.index})
        self.index += 1

    async def tool_block(self, tool: ToolUse) -> None:
        block = {"type": "tool_use", "id": tool.id or _tool_id(), "name": tool.name, "input": {}}
        await self.event("content_block_start", {"index": self.index, "content_block": block})
        raw = json.dumps(dict(tool.input))
        for i in range(0, len(raw), 24):
            await self.delta({"type": "input_json_delta", "partial_json": raw[i : i + 24]})
        self.output_chars += len(raw)
        await self.event("content_block_stop", {"index": self.index})
        self.index += 1

    async def play(self, step: Step, fake: FakeAnthropic) -> web.StreamResponse:
        await self.resp.prepare(self.request)
        start = _message(self.model, [], None, self.input_tokens, 1)
        await self.event("message_start", {"message": start})
        await self.event("ping", {})
        stop = "end_turn"
        if isinstance(step, Text):
            await self.text_block(step.text, step.chunk, step.delay, step)
        elif isinstance(step, Cut):
            fake.errors_served += 1
            block = {"type": "text", "text": ""}
            await self.event("content_block_start", {"index": 0, "content_block": block})
            await self.delta(
                {"type": "text_delta", "text": step.text[: max(1, len(step.text) // 2)]}
            )
            await asyncio.sleep(0.05)
            if self.request.transport is not None:
                self.request.transport.abort()
            return self.resp
        elif isinstance(step, ToolUse | ToolUses):
            if isinstance(step, ToolUse) and step.gate is not None:
                await step.gate.wait()
            if step.text_before:
                await self.text_block(step.text_before)
            for tool in step.tools if isinstance(step, ToolUses) else [step]:
                await self.tool_block(tool)
            stop = "tool_use"
        usage = {"output_tokens": max(1, self.output_chars // 4)}
        delta = {"stop_reason": stop, "stop_sequence": None}
        await self.event("message_delta", {"delta": delta, "usage": usage})
        await self.event("message_stop", {})
        await self.resp.write_eof()
        return self.resp


def _message(
    model: str, content: list[dict[str, Any]], stop: str | None, inp: int, out: int
) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": inp,
            "output_tokens": out,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
