"""What the Matrix adapter refuses because a homeserver could have forged it.

A homeserver sees and can inject any unencrypted event in the name of its own users:
a plaintext `m.room.message` in an encrypted room, or an `m.reaction` (every client
sends reactions in plaintext).  With `encryption = "required"` a plaintext message in
an encrypted room is refused here: logged, audit-logged through the bridge's
`AccessControl.refuse` (the same rows and the same once-an-hour notice rule as a
stranger's message), and its sender told why at most once an hour.  Until the bridge
hands over its audit (`report`), the adapter still logs and keeps the once-an-hour
rule itself.

With `[matrix] approvals = "verified"` an owner's message counts only if it is
encrypted by a device the owner cross-signed (`device_trust.py`): the text reply that
decides a prompt (allow, deny, a question's number, approve for a plan) as much as a
new prompt, since a device the homeserver adds to the owner's account would
otherwise be trusted.  Reactions that would decide a permission, question or plan
(button data `p:`, `q:`, `l:`) are refused, with a notice saying how to answer; ⏹ (a
stop) still works by reaction, since forging it can only interrupt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from adapters.matrix.device_trust import DeviceTrust
from adapters.messages import Sender

log = logging.getLogger(__name__)

NOTICE_INTERVAL_S = 3600.0

# (sender, action, detail) → True if the sender should be told (once an hour);
# `bridge.access.control.AccessControl.refuse`, which writes the audit row.
Report = Callable[[Sender, str, str], bool]

PLAINTEXT_NOTICE = (
    "🔒 I ignored an unencrypted message in this encrypted room: the homeserver could "
    'have written it, and this bot only acts on encrypted messages (encryption = "required"). '
    "If you sent it, your client did not encrypt it; send it again from a client with "
    "encryption on."
)


DECISIONS = ("p:", "q:", "l:")  # permission, question, plan buttons

REACTION_NOTICE = (
    "🔒 Reactions are not encrypted, so the homeserver could forge them: this bot only "
    'takes decisions from encrypted replies (approvals = "verified"). Reply in the '
    "thread instead: allow, always or deny for a permission, the option number(s) for a "
    "question, approve or your feedback for a plan."
)
DEVICE_NOTICE = (
    "🔒 I ignored your message: it was not sent from a device you have cross-signed "
    '(approvals = "verified"; {why}). Verify this device from one of your verified '
    "sessions (in Element: Settings → Sessions → Verify), then send it again."
)
PLAIN_VERIFIED_NOTICE = (
    "🔒 I ignored an unencrypted message: the homeserver could have written it, and "
    'this bot only acts on encrypted messages from your cross-signed devices (approvals = "verified").'
)


class TrustGate:
    def __init__(self) -> None:
        self.report: Report | None = None
        self.approvals = "reactions"
        self.devices = DeviceTrust()
        self._told: dict[tuple[str, str], float] = {}  # (sender, action) → when told

    @property
    def verified(self) -> bool:
        return self.approvals == "verified"

    def decides(self, data: str) -> bool:
        """Whether a button with `data` decides a permission, question or plan."""
        return data.startswith(DECISIONS)

    def refuse(self, sender: Sender, action: str, detail: str) -> bool:
        """Record a refused event; True if its sender should be told why now: once an
        hour for each kind of refusal (`action`), so that a refused reaction does not
        keep the next refused reply unexplained."""
        log.warning("Matrix: refused %s from %r: %r", action, sender.user_id, detail[:200])
        told = True
        if self.report is not None:  # the audit row; its answer counts across restarts
            told = self.report(sender, action, detail) or action != "plaintext"
        now = time.monotonic()
        last = self._told.get((sender.key, action), -NOTICE_INTERVAL_S)
        if not told or now - last < NOTICE_INTERVAL_S:
            return False
        self._told[(sender.key, action)] = now
        return True
