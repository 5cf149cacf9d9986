"""What a press on a prompt's button did (`Outcome`) and what the presser is told
(`PressResult`): shared by the permission broker and the question desk."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """What a press did: decided the request one way or the other, or nothing."""

    ALLOWED = "allowed"
    ALLOWED_SESSION = "allowed_session"
    DENIED = "denied"
    ANSWERED = "answered"  # a question's button: toggled, Other…, or answered
    REFUSED = "refused"  # forged, replayed, stale, foreign: nothing was decided


@dataclass(frozen=True, slots=True)
class PressResult:
    """The broker's answer to a press; `text` is what the presser is told."""

    outcome: Outcome
    text: str

    @property
    def decided(self) -> bool:
        return self.outcome is not Outcome.REFUSED


__all__ = ["Outcome", "PressResult"]
