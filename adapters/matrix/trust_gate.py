"""What the Matrix adapter refuses because a homeserver could have forged it.

A homeserver sees and can inject any unencrypted event in the name of its own users:
a plaintext `m.room.message` in an encrypted room, or an `m.reaction` (every client
sends reactions in plaintext).  With `encryption = "required"` a plaintext message in
an encrypted room is refused here: logged, audit-logged through the bridge's
`AccessControl.refuse` (the same rows and the same once-an-hour notice rule as a
stranger's message), and its sender told why at most once an hour.  Until the bridge
hands over its audit (`report`), the adapter still logs and keeps the once-an-hour
rule itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

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


class TrustGate:
    def __init__(self) -> None:
        self.report: Report | None = None
        self._told: dict[str, float] = {}  # sender → when told (without `report`)

    def refuse(self, sender: Sender, action: str, detail: str) -> bool:
        """Record a refused event; True if its sender should be told why now."""
        log.warning("Matrix: refused %s from %s: %s", action, sender.user_id, detail[:200])
        if self.report is not None:
            return self.report(sender, action, detail)
        now = time.monotonic()
        if now - self._told.get(sender.key, -NOTICE_INTERVAL_S) < NOTICE_INTERVAL_S:
            return False
        self._told[sender.key] = now
        return True
