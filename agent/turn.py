"""One turn of a session: the prompt going in, the SDK's messages turned into events.

A ``Turn`` keeps what the events of a turn need (tool names by id, the tools used, the
API error text the CLI reported, whether an interrupt was asked for) and translates each
SDK message into ``AgentEvent``s. It does no I/O: ``AgentSession`` feeds it messages and
queues the events it returns. ``as_query`` builds what ``ClaudeSDKClient.query`` sends.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    Message,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from agent.credentials import AUTH_FAILED
from agent.events import (
    AgentEvent,
    AgentFailed,
    ApiRetrying,
    TextDelta,
    TextDone,
    ToolFinished,
    ToolStarted,
    TurnEnded,
)

# ResultMessage.terminal_reason of a turn stopped by an interrupt.
ABORTED = frozenset({"aborted_streaming", "aborted_tools"})


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    images: tuple[tuple[str, bytes], ...] = ()  # (media type, data)


@dataclass(slots=True)
class Turn:
    session_id: str
    prompt: Prompt
    started: float = field(default_factory=time.monotonic)
    sent: bool = False  # the prompt went to the CLI
    interrupted: bool = False  # interrupt() was called
    ended: bool = False  # TurnEnded was produced
    api_error: str = ""
    tools: list[str] = field(default_factory=list)
    tool_names: dict[str, str] = field(default_factory=dict)
    streaming: bool = False  # text deltas came since the last finished text block
    restart: bool = False  # a new model call began while a block was unfinished
    login_failed: bool = False  # the CLI has no credentials
    retries: int = 0  # retries of the current model call so far

    def events_for(self, message: Message) -> list[AgentEvent]:
        """Events for a streamed, assistant or user (tool result) message."""
        sid = self.session_id
        if isinstance(message, StreamEvent):
            # Subagents' text (parent_tool_use_id set) is not the session's answer.
            if message.parent_tool_use_id is not None:
                return []
            if message.event.get("type") == "message_start":
                self.retries = 0  # the model answers again
            if message.event.get("type") == "message_start" and self.streaming:
                # The CLI retries a model call whose stream broke off: it streams the
                # answer again from its start, so what came before is void.
                self.restart = True
            delta = message.event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                restart, self.restart, self.streaming = self.restart, False, True
                return [TextDelta(sid, delta["text"], restart=restart)]
        elif isinstance(message, AssistantMessage):
            if message.error is not None:  # the CLI's synthetic "API Error: ..." message
                texts = [b.text for b in message.content if isinstance(b, TextBlock)]
                self.api_error = " ".join(texts) or str(message.error)
                self.login_failed = message.error == AUTH_FAILED
                return []
            return [e for b in message.content if (e := self._block(b, message)) is not None]
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            return [
                ToolFinished(
                    sid,
                    b.tool_use_id,
                    self.tool_names.get(b.tool_use_id, ""),
                    bool(b.is_error),
                    output_text(b.content),
                )
                for b in message.content
                if isinstance(b, ToolResultBlock)
            ]
        elif isinstance(message, SystemMessage) and message.subtype == "api_retry":
            return [self._retrying(message.data)]
        return []

    def _retrying(self, data: Mapping[str, Any]) -> ApiRetrying:
        """The CLI's ``api_retry`` message (seen with CLI 2.1.337: ``attempt``,
        ``max_retries``, ``retry_delay_ms``, ``error_status`` — None when the API could
        not be reached — and ``error``, a category such as "server_error")."""
        attempt, most = data.get("attempt"), data.get("max_retries")
        delay, status, kind = (
            data.get("retry_delay_ms"),
            data.get("error_status"),
            data.get("error"),
        )
        self.retries = attempt if isinstance(attempt, int) else self.retries + 1
        if isinstance(status, int):
            error = f"HTTP {status}" + (f" {kind}" if isinstance(kind, str) and kind else "")
        elif isinstance(kind, str) and kind not in ("", "unknown"):
            error = kind.replace("_", " ")
        else:
            error = "no connection to the model API"
        return ApiRetrying(
            self.session_id,
            self.retries,
            most if isinstance(most, int) else 0,
            delay / 1000 if isinstance(delay, int | float) else 0.0,
            error,
        )

    def _block(self, block: object, message: AssistantMessage) -> AgentEvent | None:
        if isinstance(block, TextBlock) and block.text and message.parent_tool_use_id is None:
            self.streaming = self.restart = False
            return TextDone(self.session_id, block.text)
        if isinstance(block, ToolUseBlock):
            self.tools.append(block.name)
            self.tool_names[block.id] = block.name
            return ToolStarted(
                self.session_id, block.id, block.name, MappingProxyType(dict(block.input))
            )
        return None

    def ended_by(self, result: ResultMessage, cost_usd: float) -> list[AgentEvent]:
        """AgentFailed (if the turn failed other than by interrupt) and TurnEnded."""
        interrupted = result.terminal_reason in ABORTED or (self.interrupted and result.is_error)
        events: list[AgentEvent] = []
        text = result.result or ""
        if result.is_error and not interrupted:
            errors = "; ".join(result.errors or ())
            error = text or self.api_error or errors or result.subtype
            if self.retries and not self.login_failed:
                n = self.retries
                error = f"gave up after {n} retr{'y' if n == 1 else 'ies'}: {error}"
            events.append(AgentFailed(self.session_id, error, login=self.login_failed))
        events.append(
            self.end(
                text,
                is_error=result.is_error,
                interrupted=interrupted,
                cost_usd=cost_usd,
                usage=result.usage,
                duration_ms=result.duration_ms,
            )
        )
        return events

    def end(
        self,
        result: str,
        *,
        is_error: bool,
        interrupted: bool,
        cost_usd: float = 0.0,
        usage: Mapping[str, Any] | None = None,
        duration_ms: int | None = None,
    ) -> TurnEnded:
        self.ended = True
        if duration_ms is None:
            duration_ms = int((time.monotonic() - self.started) * 1000)
        return TurnEnded(
            self.session_id,
            result,
            cost_usd,
            MappingProxyType(dict(usage or {})),
            duration_ms,
            tuple(self.tools),
            is_error,
            interrupted,
        )


def as_query(prompt: Prompt) -> str | AsyncIterator[dict[str, Any]]:
    """A plain string, or one user message with base64 image blocks before the text."""
    if not prompt.images:
        return prompt.text
    content: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": media_type,
                "data": base64.b64encode(data).decode(),
            },
        }
        for media_type, data in prompt.images
    ]
    content.append({"type": "text", "text": prompt.text})

    async def one_message() -> AsyncIterator[dict[str, Any]]:
        yield {
            "type": "user",
            "message": {"role": "user", "content": content},
            "parent_tool_use_id": None,
        }

    return one_message()


def output_text(content: str | list[dict[str, Any]] | None) -> str:
    """A tool result as text; non-text parts (images) become "[image]"."""
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(
        str(b.get("text", "")) if b.get("type") == "text" else f"[{b.get('type')}]" for b in content
    )
