"""Room keys a sender's client withheld from the bot (`m.room_key.withheld`).

Element with "Never send encrypted messages to unverified sessions" on (or MSC4153's
"exclude insecure devices") does not share a message's room key with a device its
user has not verified; it sends the bot a to-device `m.room_key.withheld` with a code
(`m.unverified`, `m.blacklisted`, `m.unauthorised`, `m.unavailable`, `m.no_olm`)
instead.  nio 0.26 does not know the event (it arrives as an `UnknownToDeviceEvent`),
so without this the message is retried until it is given up, and the person never
hears why the bot stays silent.  `Withheld` remembers which megolm sessions were
withheld, and says what to tell the person: once per session, since every later
message in that session is unreadable for the same reason.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from nio import UnknownToDeviceEvent

log = logging.getLogger(__name__)

EVENT_TYPE = "m.room_key.withheld"
MAX_REMEMBERED = 1000

UNVERIFIED_NOTICE = (
    "🔒 I could not read your message: your client does not share its encryption keys "
    "with unverified devices, and my device is not verified yet. Verify me with emoji "
    "verification (in Element: my profile → Verify), comparing the emoji with the ones "
    "`threadline verify` shows on the machine that runs Threadline; then send the "
    "message again."
)
OTHER_NOTICE = (
    "🔒 I could not read your message: your client withheld its encryption key from me "
    "({code}). If your client only shares keys with verified devices, verify me with "
    "emoji verification (`threadline verify` on the machine shows my emoji); then send "
    "the message again."
)


class Withheld:
    def __init__(self) -> None:
        self._sessions: OrderedDict[str, str] = OrderedDict()  # session id → code
        self._answered: set[str] = set()

    def note(self, to_device: Iterable[Any]) -> None:
        """Remember the withheld sessions among one sync's to-device events."""
        for event in to_device:
            if not isinstance(event, UnknownToDeviceEvent) or event.type != EVENT_TYPE:
                continue
            content = event.source.get("content")
            if not isinstance(content, dict):
                continue
            session, code = content.get("session_id"), content.get("code")
            if not isinstance(session, str) or not session:
                continue  # m.no_olm names no session: the keys of a later one follow
            code = code if isinstance(code, str) else "unknown"
            log.warning(
                "Matrix: %s withheld the key of session %s from the bot (%s: %s)",
                event.sender,
                session,
                code,
                content.get("reason", ""),
            )
            self._sessions[session] = code
            while len(self._sessions) > MAX_REMEMBERED:
                self._sessions.popitem(last=False)

    def code(self, session_id: str) -> str | None:
        return self._sessions.get(session_id)

    def notice(self, session_id: str) -> str | None:
        """What to tell the sender of a message in `session_id`; ``None`` if its key
        was not withheld or the sender was told already."""
        code = self._sessions.get(session_id)
        if code is None or session_id in self._answered:
            return None
        self._answered.add(session_id)
        return UNVERIFIED_NOTICE if code == "m.unverified" else OTHER_NOTICE.format(code=code)
