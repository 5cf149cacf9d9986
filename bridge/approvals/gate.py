"""What a desk (Claude's questions, plans) uses of the permission broker.

A question or a plan is a pending request like any permission: the broker stores the
row, runs the timeout and refuses foreign and stale presses; a desk shows it and turns
presses and replies into an answer.  The desks see the broker only through this
protocol, generic in how each desk sees a pending request, so neither module imports
the broker's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from adapters.messages import ThreadRef
from bridge import render
from bridge.approvals.outcome import PressResult
from storage.models import PermissionRequestRow

A = TypeVar("A", covariant=True)  # a pending request as the desk sees it


class Gate(Protocol[A]):
    timeout_s: float

    def find(self, request_id: str) -> A | None: ...
    def waiting(self) -> Sequence[A]: ...
    def check(
        self, row: PermissionRequestRow, thread: ThreadRef, by_key: str
    ) -> PressResult | None: ...
    def refuse(
        self, thread: ThreadRef, by_key: str, request_id: str, why: str, answer: str
    ) -> PressResult: ...
    def replied(self, thread: ThreadRef, reply_to: str | None) -> str | None: ...
    async def finish(
        self,
        request_id: str,
        state: render.Decision,
        *,
        by: str,
        reason: str = "",
        updated: dict[str, object] | None = None,
    ) -> bool: ...
