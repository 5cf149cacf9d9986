"""The inbound side of the Matrix adapter: what arrives with each sync.

After nio has applied a sync response (state, decryption of `m.room.encrypted`
events, to-device room keys), `Receiver.handle` does the rest in order: key
housekeeping and TOFU trust for the owners' devices, invites (an owner's is
accepted, anyone else's declined unless a pairing code is open), then every room's
new timeline events, and finally saves the sync position (`inbox.py`).  Every event
after the saved position is handled once, however long the daemon was down (a message
that waited over a minute gets a notice saying so, `catchup.py`); skipped are only the
whole first sync of a new device (history it could never decrypt), the events of a
room from before the bot joined it, our own, and events already handled (by id, so a
daemon killed before saving its position repeats nothing).  A message in an
unencrypted room while `encryption = "required"` is not handed on: the room is told
why instead (at most every `REFUSAL_INTERVAL_S`).  An event that could not be
decrypted yet (its room key is still on the way) is kept, in the inbox too, and
retried after later syncs for `UNDECRYPTED_KEEP_S`; if the sender's client withheld
its key (`m.room_key.withheld`, `withheld.py`), the sender is told why once instead.
What a homeserver could have forged is refused (`trust_gate.py`): a plaintext message
in an encrypted room under `encryption = "required"`, and under `approvals =
"verified"` a deciding reaction or an owner's message not encrypted by a device the
owner cross-signed.  Reactions become `ButtonPress`es
through the `ButtonMap` (the bridge refuses one on a prompt that expired meanwhile);
taking back a reaction on a multi-select option (its redaction) presses it again,
which unselects it; messages become `UserMessage`s via `inbound.py`, their
attachments lazy (the bridge downloads them, only for an owner — never on the sync
path).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from nio import AsyncClient, InviteMemberEvent, MatrixRoom, MegolmEvent, SyncResponse

from adapters.matrix import catchup, inbound, trust_gate
from adapters.matrix import client as mx_client
from adapters.matrix.buttons import ButtonMap, toggles
from adapters.matrix.errors import MatrixErrors
from adapters.matrix.inbox import Inbox
from adapters.matrix.trust_gate import PLAINTEXT_NOTICE, TrustGate
from adapters.matrix.withheld import Withheld
from adapters.messages import ButtonPress, Inbound, ThreadRef

log = logging.getLogger(__name__)

REFUSAL_INTERVAL_S = 600.0
UNDECRYPTED_KEEP_S = 300.0
HANDLED_KINDS = ("m.room.message", "m.reaction", "m.room.redaction")
MAX_TOGGLES = 500  # reactions remembered so that taking one back unselects its option

Deliver = Callable[[Inbound], Awaitable[None]]
Notify = Callable[[str, str], None]  # (room id, plain text) → send a notice, in background
NotifyIn = Callable[[ThreadRef, str], None]  # the same, in a thread


class Receiver:
    def __init__(
        self,
        client: AsyncClient,
        *,
        owners: Sequence[str],
        encryption: str,
        buttons: ButtonMap,
        errors: MatrixErrors,
        deliver: Deliver,
        notify: Notify,
        pace: Callable[[], Awaitable[None]],
        inbox: Inbox | None = None,
        notify_in: NotifyIn | None = None,
    ) -> None:
        self.client = client
        self.owners = tuple(owners)
        self.encryption = encryption
        self.buttons = buttons
        self.errors = errors
        self.deliver = deliver
        self.notify = notify
        self.pace = pace  # joins and leaves are events too: they spend the message budget
        self.inbox = inbox if inbox is not None else Inbox(None)
        self.notify_in: NotifyIn = notify_in or (lambda thread, text: notify(thread.chat_id, text))
        self.catching_up = False  # handling the first sync after a start: late is expected
        # Whether this process may take events now (the gateway's `may_receive`: shut
        # from the first step of a clean stop, or on a deposed gateway).  What it does
        # not take stays after the saved position, for the next start to take.
        self.gate: Callable[[], bool] | None = None
        self._invites_seen: set[str] = set()
        # A stranger's invite is accepted when this says so (a pairing code is open).
        self.invite_open: Callable[[str], bool] = lambda _inviter: False
        self._refused: dict[str, float] = {}
        self.trust = TrustGate()  # what a homeserver could have forged is refused
        self._guarded: set[tuple[str, str]] = set()  # owner devices checked (verified)
        self.withheld = Withheld()  # room keys a sender's client would not share with us
        # (room, event, first seen: wall clock, so that it counts across a restart)
        self._undecrypted: list[tuple[str, MegolmEvent, float]] = []
        for room_id, raw, since in self.inbox.undecrypted():
            event = MegolmEvent.from_dict(raw)
            if isinstance(event, MegolmEvent):
                event.room_id = room_id
                self._undecrypted.append((room_id, event, since))
        # reaction event id → (room, target event, key, sender) of toggle presses
        self._toggles: OrderedDict[str, tuple[str, str, str, str]] = OrderedDict()

    async def handle(
        self, resp: SyncResponse, *, since: str | None = None, history: bool = False
    ) -> None:
        """Handle one sync response, asked for `since` that token (for completing a
        limited timeline); `history`: a new device's first sync, whose timelines are
        only skipped.  The position is saved once everything in `resp` is handled;
        not at all if the gate shut meanwhile (what was handled is not handled again)."""
        if not self.open():
            return
        await mx_client.housekeeping(self.client)
        if self.trust.verified:  # no TOFU: only devices the owner cross-signed
            await self._guard_owner_devices(resp)
        else:
            mx_client.trust_owners(self.client, self.owners)
        self.withheld.note(resp.to_device_events)
        for room_id, info in resp.rooms.invite.items():
            await self._invite(room_id, info.invite_state)
        skipped = 0
        for room_id, info in resp.rooms.join.items():
            room = self.client.rooms.get(room_id)
            if room is None:
                continue
            if history:
                skipped += len(info.timeline.events)
                continue
            events = list(info.timeline.events)
            if info.timeline.limited and since:
                start = info.timeline.prev_batch
                events = await catchup.fill_gap(self.client, room_id, start, since) + events
            # the join may be in the gap too: what came before it is skipped all the same
            events, before = catchup.after_own_join(events, self.client.user_id)
            skipped += before
            for event in events:
                if not self.open():
                    log.info("Matrix: intake closed; the rest waits for the next start")
                    return
                try:
                    await self._event(room, event)
                except Exception:
                    log.exception("Matrix: dropping event %s", getattr(event, "event_id", "?"))
        if skipped:
            log.info("Matrix: skipped %d events from before the bot was there", skipped)
        await self._retry_undecrypted()
        if resp.next_batch and self.client.device_id:
            self.inbox.save_position(self.client.device_id, resp.next_batch)

    def open(self) -> bool:
        return self.gate is None or self.gate()

    # --- invites --------------------------------------------------------------------

    async def _invite(self, room_id: str, state: Sequence[Any]) -> None:
        if room_id in self._invites_seen:
            return
        inviter = next(
            (
                e.sender
                for e in state
                if isinstance(e, InviteMemberEvent)
                and e.state_key == self.client.user_id
                and e.membership == "invite"
            ),
            None,
        )
        if inviter is None:
            return
        self._invites_seen.add(room_id)
        await self.pace()
        if inviter in self.owners or self.invite_open(inviter):
            log.info("Matrix: accepting %s's invite to %s", inviter, room_id)
            call = self.client.join(room_id)
        else:
            log.warning("Matrix: declining an invite to %s from non-owner %s", room_id, inviter)
            call = self.client.room_leave(room_id)
        try:
            self.errors.check(await call)
        except Exception as e:
            self._invites_seen.discard(room_id)  # try again after the next sync
            log.warning("Matrix: answering the invite to %s failed: %s", room_id, e)
            return
        if room_id not in self.client.rooms:  # declined: a later invite is a new question
            self._invites_seen.discard(room_id)

    # --- timeline events --------------------------------------------------------------

    async def _event(self, room: MatrixRoom, event: Any) -> None:
        sender = getattr(event, "sender", None)  # nio's BadEvents may have none
        if not isinstance(sender, str) or not sender or sender == self.client.user_id:
            return
        if isinstance(event, MegolmEvent):
            if self.client.olm is None:  # encryption = "off": this room is not for us
                log.info(
                    "Matrix: ignoring an encrypted event in %s (encryption is off)", room.room_id
                )
                return
            log.warning(
                "Matrix: cannot decrypt %s from %s yet (session %s); waiting for its key",
                event.event_id,
                event.sender,
                event.session_id,
            )
            since = self.inbox.keep_undecrypted(room.room_id, event.event_id, event.source)
            if all(e.event_id != event.event_id for _, e, _ in self._undecrypted):
                self._undecrypted.append((room.room_id, event, since))
            if self._answer_withheld(room.room_id, event):
                return  # asking for the key again would only be refused again
            try:
                await self.client.request_room_key(event)
            except Exception as e:  # a duplicate request, or no connection: not fatal
                log.debug("Matrix: room key request failed: %s", e)
            return
        source: dict[str, Any] = getattr(event, "source", {}) or {}
        kind = source.get("type")
        event_id = source.get("event_id")
        if kind in HANDLED_KINDS and isinstance(event_id, str) and event_id:
            if not _well_formed(event_id):  # no homeserver sends one; hostile input
                log.info("Matrix: ignoring an event with a malformed id %r", event_id[:100])
                return
            # claimed before it is handed on: after a kill -9 it is never handed on twice
            if not self.inbox.claim(event_id):
                log.info("Matrix: %r was handled before; skipping it", event_id)
                return
        if kind == "m.reaction":
            await self._reaction(room, source)
        elif kind == "m.room.redaction":
            await self._redaction(room, source)
        elif kind == "m.room.message":
            if self.encryption == "required" and not room.encrypted:
                self._refuse(room.room_id)
                return
            if self.encryption == "required" and not getattr(event, "decrypted", False):
                self._refuse_plaintext(room, source)
                return
            if self.trust.verified and not await self._from_verified_device(room, event):
                return
            await self._message(room, source)

    async def _reaction(self, room: MatrixRoom, source: dict[str, Any]) -> None:
        reaction = inbound.parse_reaction(room.room_id, source, own_user=self.client.user_id)
        if reaction is None:
            return
        found = self.buttons.lookup(room.room_id, reaction.target, reaction.key)
        if found is None:
            log.debug("Matrix: reaction %r on %s is not a button", reaction.key, reaction.target)
            return
        entry, data = found
        if self.trust.verified and self.trust.decides(data):
            who = inbound.sender_of(reaction.sender, room.user_name(reaction.sender) or "")
            detail = f"reaction {reaction.key} on {reaction.target} in {room.room_id}"
            if self.trust.refuse(who, "reaction", detail):
                self.notify_in(
                    ThreadRef(inbound.PLATFORM, room.room_id, entry.thread_id),
                    trust_gate.REACTION_NOTICE,
                )
            return
        if reaction.event_id and toggles(entry, data):
            self._toggles[reaction.event_id] = (
                room.room_id,
                reaction.target,
                reaction.key,
                reaction.sender,
            )
            while len(self._toggles) > MAX_TOGGLES:
                self._toggles.popitem(last=False)
        await self._press(room, reaction.sender, reaction.target, entry.thread_id, data)

    async def _redaction(self, room: MatrixRoom, source: dict[str, Any]) -> None:
        """A person took back a reaction: for a toggle (a multi-select option) that
        presses it again; any other reaction stays pressed (an answer is final)."""
        redaction = inbound.parse_redaction(room.room_id, source, own_user=self.client.user_id)
        if redaction is None or redaction.redacts not in self._toggles:
            return
        room_id, target, key, sender = self._toggles[redaction.redacts]
        if room_id != room.room_id or sender != redaction.sender:
            return  # a moderator's redaction is not the person changing their mind
        del self._toggles[redaction.redacts]
        found = self.buttons.lookup(room.room_id, target, key)
        if found is None:  # answered since: nothing to unselect
            return
        entry, data = found
        await self._press(room, sender, target, entry.thread_id, data)

    async def _press(
        self, room: MatrixRoom, sender: str, target: str, thread_id: str | None, data: str
    ) -> None:
        name = room.user_name(sender) or ""
        await self.deliver(
            ButtonPress(
                thread=ThreadRef(inbound.PLATFORM, room.room_id, thread_id),
                sender=inbound.sender_of(sender, name),
                message_id=target,
                data=data,
            )
        )

    async def _message(self, room: MatrixRoom, source: dict[str, Any]) -> None:
        sender = str(source.get("sender", ""))
        parsed = inbound.parse_message(
            room.room_id,
            source,
            own_user=self.client.user_id,
            display_name=room.user_name(sender) or "",
            member_count=room.member_count,
        )
        if parsed is None:
            return
        msg = parsed.message
        age = catchup.age_s(source)
        if self.catching_up and age > catchup.LATE_S and msg.sender.user_id in self.owners:
            log.info("Matrix: %r waited %.0f s for the daemon", msg.message_id, age)
            self.notify_in(msg.thread, catchup.late_notice(age))
        if parsed.files:  # downloaded by the bridge, and only for an owner
            attachments = tuple(mx_client.attachment(self.client, ref) for ref in parsed.files)
            msg = replace(msg, attachments=attachments)
        await self.deliver(msg)

    async def _guard_owner_devices(self, resp: SyncResponse) -> None:
        """approvals = "verified": room keys only for owner devices cross-signed."""
        if self.client.olm is not None:
            changed = set(resp.device_list.changed)
            await self.trust.devices.guard(self.client, self.owners, changed, self._guarded)

    async def _from_verified_device(self, room: MatrixRoom, event: Any) -> bool:
        """approvals = "verified": an owner's message counts only if a device the
        owner cross-signed encrypted it; refused (and said why) otherwise."""
        sender = str(event.sender)
        if sender not in self.owners:
            return True  # a stranger's message: the bridge refuses it (or pairs them)
        source: dict[str, Any] = event.source
        content = source.get("content")
        content = content if isinstance(content, dict) else {}
        sender_key = getattr(event, "sender_key", None)
        if not getattr(event, "decrypted", False) or not isinstance(sender_key, str):
            why, text = "plaintext message", trust_gate.PLAIN_VERIFIED_NOTICE
        else:
            reason = await self.trust.devices.why_not(self.client, sender, sender_key)
            if reason is None:
                return True
            why, text = reason, trust_gate.DEVICE_NOTICE.format(why=reason)
        who = inbound.sender_of(sender, room.user_name(sender) or "")
        if self.trust.refuse(who, "unverified-device", f"{why}: {room.room_id}"):
            self.notify_in(inbound.thread_of(room.room_id, content), text)
        return False

    def _refuse_plaintext(self, room: MatrixRoom, source: dict[str, Any]) -> None:
        """A plaintext message in an encrypted room: anyone running the homeserver
        could have sent it in the owner's name."""
        sender = str(source.get("sender", ""))
        content = source.get("content")
        content = content if isinstance(content, dict) else {}
        body = content.get("body")
        detail = f"plaintext message in encrypted room {room.room_id}: "
        detail += body[:200] if isinstance(body, str) else ""
        who = inbound.sender_of(sender, room.user_name(sender) or "")
        if self.trust.refuse(who, "plaintext", detail):
            self.notify_in(inbound.thread_of(room.room_id, content), PLAINTEXT_NOTICE)

    def _refuse(self, room_id: str) -> None:
        now = time.monotonic()
        if now - self._refused.get(room_id, -REFUSAL_INTERVAL_S) < REFUSAL_INTERVAL_S:
            return
        self._refused[room_id] = now
        log.warning("Matrix: refusing to work in unencrypted room %s", room_id)
        self.notify(
            room_id,
            "🔒 This room is not end-to-end encrypted, so Threadline will not work here "
            '(encryption = "required"). Turn on encryption in the room settings, or start '
            "an encrypted room or direct message with me and invite me there.",
        )

    def _answer_withheld(self, room_id: str, event: MegolmEvent) -> bool:
        """Tell the sender, once per session, why their message cannot be read when
        their client withheld its key; True if the key was withheld."""
        if self.withheld.code(event.session_id) is None:
            return False
        text = self.withheld.notice(event.session_id)
        if text is not None:
            content = event.source.get("content")  # m.relates_to stays in the clear
            thread = inbound.thread_of(room_id, content if isinstance(content, dict) else {})
            log.warning(
                "Matrix: telling %s that %s could not be read", event.sender, event.event_id
            )
            self.notify_in(thread, text)
        return True

    async def _retry_undecrypted(self) -> None:
        keep: list[tuple[str, MegolmEvent, float]] = []
        for room_id, event, since in self._undecrypted:
            room = self.client.rooms.get(room_id)
            try:
                decrypted = self.client.decrypt_event(event)
            except Exception:
                self._answer_withheld(room_id, event)  # the withheld notice came later
                if time.time() - since < UNDECRYPTED_KEEP_S:
                    keep.append((room_id, event, since))
                else:
                    log.error("Matrix: gave up decrypting %s from %s", event.event_id, event.sender)
                    self.inbox.drop_undecrypted(event.event_id)
                continue
            self.inbox.drop_undecrypted(event.event_id)
            if room is not None and not isinstance(decrypted, MegolmEvent):
                await self._event(room, decrypted)
        self._undecrypted = keep


def _well_formed(event_id: str) -> bool:
    """An event id that can be stored: valid UTF-8, no control characters, bounded."""
    try:
        event_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return len(event_id) <= 255 and event_id.isprintable()
