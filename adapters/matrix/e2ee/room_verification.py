"""Answer in-room SAS (emoji) verifications that an owner starts with the bot's user.

Once the bot's user is cross-signed, Element verifies it as a *user*, in the DM: an
`m.room.message` of msgtype `m.key.verification.request` (`to`, `from_device`,
`methods`) whose event id is the transaction id, then `m.key.verification.ready`,
`start`, `accept`, `key`, `mac`, `done`, `cancel` as room events related to it
(`m.relates_to: {rel_type: m.reference, event_id}`), encrypted in an encrypted room.
nio 0.26 hands these to event callbacks as `RoomMessageUnknown` (the request) and
`UnknownEvent` (the rest; decrypted first, a cleartext `m.relates_to` copied in);
its `Sas` is to-device only, so SAS runs here on vodozemac, with `sas_core`:

* an owner's request `to` the bot gets `ready` (`m.sas.v1`), anyone else's `cancel`
  (`m.user`); requests over 10 minutes old or 5 ahead are ignored (spec);
* the requesting device's `start` gets a spec `accept` (`hkdf-hmac-sha256.v2` if
  offered); after its `key` we send ours and show the emoji (`on_emoji`, `sessions`);
* nobody sits at the bot, so with a `DecisionHook` (`on_pending`, set by the bridge)
  the emoji go to the person elsewhere (`threadline verify`, another platform) and the
  bot's MAC (over its device key and, when given, its cross-signing master key, so
  Element trusts the bot *user*) is sent only once the person said "they match"
  there AND the owner's MAC arrived and verified; "they don't match" cancels with
  `m.mismatched_sas`.  Without a hook (bare responder, tests) the owner's verified MAC
  alone confirms.  Then the owner's device is marked verified in nio's store and
  `done` sent.  A MAC that does not verify is cancelled (`m.key_mismatch`), an event
  out of turn too;
* an owner's `cancel` ends the run with nothing verified; no start within
  `request_timeout` of the request, or no MAC within `sas_timeout` of the start,
  cancels it (`m.timeout`).  Our own echoes and other users' runs are ignored; an
  owner's event whose room key comes late is retried for `DECRYPT_RETRIES` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import nio
import vodozemac

from adapters.matrix.e2ee import sas_core
from adapters.matrix.e2ee.sas_core import DecisionHook, EmojiCallback, Verification

log = logging.getLogger(__name__)

V = "m.key.verification."
METHOD = "m.sas.v1"
MAX_AGE_MS, MAX_AHEAD_MS = 600_000, 300_000  # the spec's window for a request
DECRYPT_RETRIES, SEND_ATTEMPTS = 30, 3  # decryption is retried once a second


@dataclass(slots=True)
class _Run:
    room_id: str
    session: Verification
    sas: vodozemac.Sas = field(default_factory=vodozemac.Sas)
    established: vodozemac.EstablishedSas | None = None
    agreement: str = ""
    mac_method: str = ""
    timer: asyncio.Task[None] | None = None
    confirmed: bool = False  # the person said "they match" (through the hook)
    their_mac: nio.OlmDevice | None = None  # the owner's device, once its MAC verified

    @property
    def public_key(self) -> str:
        return self.sas.public_key.to_base64()


class RoomSasResponder:
    """Answers owners' in-room SAS verifications of the bot; cancels everyone else's."""

    request_timeout = 600.0  # seconds from the request to the owner's start
    sas_timeout = 300.0  # seconds from the start to done

    def __init__(
        self,
        client: nio.AsyncClient,
        owners: Sequence[str],
        *,
        master_key: str | None = None,
        on_emoji: EmojiCallback | None = None,
        pace: Callable[[], Awaitable[None]] | None = None,
        on_pending: DecisionHook | None = None,
    ) -> None:
        self.client = client
        self._me = (client.user_id, client.device_id or "")  # logged in already
        self.owners = sas_core.owner_ids(owners)
        self.master_key = master_key  # unpadded base64 public key (CrossSigningState)
        self.on_emoji = on_emoji
        self.pace = pace  # the adapter's rate budget: these are room events too
        self.on_pending = on_pending  # where the person confirms; None: their MAC does
        self.sessions: dict[str, Verification] = {}
        self._runs: dict[str, _Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self) -> None:
        if self.client.olm is None:
            log.info("in-room verification is off: the client has no encryption")
            return
        self.client.add_event_callback(
            self._on_event, (nio.RoomMessageUnknown, nio.UnknownEvent, nio.MegolmEvent)
        )

    async def wait(self, transaction_id: str, timeout: float = 60.0) -> Verification:
        """Wait until a run is verified or cancelled (for tests and diagnostics)."""
        session = self.sessions[transaction_id]
        await asyncio.wait_for(session.finished.wait(), timeout)
        return session

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_event(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        try:
            await self._dispatch(room, event)
        except Exception:  # never let one bad event stop the sync loop
            log.exception("in-room verification: cannot handle %s", type(event).__name__)

    async def _dispatch(self, room: nio.MatrixRoom, event: nio.Event) -> None:
        if event.sender == self.client.user_id:
            return  # our own events, echoed by the sync
        if isinstance(event, nio.MegolmEvent):
            if event.sender in self.owners:
                self._spawn(self._decrypt_later(room, event))
            return
        content: dict[str, Any] = event.source.get("content", {})
        if isinstance(event, nio.RoomMessageUnknown):
            if event.msgtype == V + "request":
                await self._on_request(room, event, content)
            return
        relation = content.get("m.relates_to")
        if not isinstance(relation, dict) or relation.get("rel_type") != "m.reference":
            return
        run = self._runs.get(str(relation.get("event_id", "")))
        if run is None or event.sender != run.session.user_id or run.session.finished.is_set():
            return  # not a run of ours, or over
        step = str(event.source.get("type", "")).removeprefix(V)
        handlers = {"start": self._on_start, "key": self._on_key, "mac": self._on_mac}
        if step == "cancel":
            log.info("in-room verification %s cancelled by the owner", relation["event_id"])
            self._finish(run, "cancelled", str(content.get("code", "")))
        elif step in handlers:
            await handlers[step](run, content)
        elif step in ("ready", "accept"):  # the owner requested: these are ours to send
            await self._cancel(run, "m.unexpected_message", f"unexpected {step}")

    async def _on_request(
        self, room: nio.MatrixRoom, event: nio.RoomMessageUnknown, content: dict[str, Any]
    ) -> None:
        txn, device = event.event_id, str(content.get("from_device", ""))
        age_ms = time.time() * 1000 - event.server_timestamp
        if content.get("to") != self.client.user_id or not device or txn in self.sessions:
            return
        if not -MAX_AHEAD_MS < age_ms < MAX_AGE_MS:
            return  # the spec: ignore stale or future-dated requests
        for old in sas_core.finished_beyond(self.sessions):
            del self.sessions[old]
            self._runs.pop(old, None)
        session = self.sessions[txn] = Verification(txn, event.sender, device)
        run = self._runs[txn] = _Run(room.room_id, session)
        if event.sender not in self.owners:
            log.warning("in-room verification request from non-owner %s refused", event.sender)
            await self._cancel(run, "m.user", "not an owner of this bot")
            return
        if METHOD not in content.get("methods", []):
            await self._cancel(run, "m.unknown_method", "only m.sas.v1 is supported")
            return
        self._expire(run, self.request_timeout - max(age_ms, 0) / 1000)
        await sas_core.known_device(self.client, event.sender, device)  # for the MAC
        await self._send(run, "ready", {"from_device": self.client.device_id, "methods": [METHOD]})

    async def _on_start(self, run: _Run, content: dict[str, Any]) -> None:
        session = run.session
        if content.get("from_device") != session.device_id:
            return  # not the requesting device; ignore rather than disturb the run
        if session.state != "requested":
            await self._cancel(run, "m.unexpected_message", "a second start")
            return
        if (chosen := sas_core.negotiate(content)) is None:
            await self._cancel(run, "m.unknown_method", "no common SAS parameters")
            return
        run.agreement, run.mac_method, strings = chosen
        accept = {
            "method": METHOD,
            "key_agreement_protocol": run.agreement,
            "hash": "sha256",
            "message_authentication_code": run.mac_method,
            "short_authentication_string": strings,
            "commitment": sas_core.commitment(run.public_key, content),
        }
        session.state = "started"
        self._expire(run, self.sas_timeout)
        await self._send(run, "accept", accept)

    async def _on_key(self, run: _Run, content: dict[str, Any]) -> None:
        session = run.session
        if session.state != "started":
            await self._cancel(run, "m.unexpected_message", "a key out of turn")
            return
        their_key = str(content.get("key", ""))
        try:
            key = vodozemac.Curve25519PublicKey.from_base64(their_key)
            run.established = run.sas.diffie_hellman(key)
        except Exception:
            await self._cancel(run, "m.invalid_message", "not a Curve25519 key")
            return
        me = (*self._me, run.public_key)
        them = (session.user_id, session.device_id, their_key)
        info = sas_core.sas_info(run.agreement, them, me, session.transaction_id)
        sas_bytes = run.established.bytes(info)
        session.emoji = sas_core.emoji(sas_bytes.emoji_indices)
        session.decimals = tuple(sas_bytes.decimals)
        session.state = "keys"
        await self._send(run, "key", {"key": run.public_key})
        await sas_core.show(self.on_emoji, session)
        if self.on_pending is not None:
            self._spawn(self._ask(run, self.on_pending))

    async def _ask(self, run: _Run, hook: DecisionHook) -> None:
        async def decide(match: bool) -> None:
            await self.decide(run.session.transaction_id, match)

        try:
            await hook(run.session, decide)
        except Exception:  # the run then times out, as an unanswered one does
            log.exception("in-room verification %s: the decision hook failed", run.session)

    async def decide(self, transaction_id: str, match: bool) -> bool:
        """The person's answer to a run's emoji; False if the run is unknown or over."""
        run = self._runs.get(transaction_id)
        if run is None or run.session.finished.is_set() or run.session.state != "keys":
            return False
        if not match:
            await self._cancel(run, "m.mismatched_sas", "the emoji do not match")
            return True
        run.confirmed = True
        log.info("in-room verification %s: the person confirmed the emoji", transaction_id)
        if run.their_mac is not None:
            await self._confirm(run, run.their_mac)
        return True

    async def _on_mac(self, run: _Run, content: dict[str, Any]) -> None:
        session, olm, established = run.session, self.client.olm, run.established
        if session.state != "keys" or olm is None or established is None:
            await self._cancel(run, "m.unexpected_message", "a MAC out of turn")
            return
        me, them = self._me, (session.user_id, session.device_id)
        device, txn = await sas_core.known_device(self.client, *them), session.transaction_id
        mac = sas_core.mac_function(established, run.mac_method)
        info = sas_core.mac_info(them, me, txn)
        theirs = {f"ed25519:{them[1]}": device.ed25519} if device else {}
        if device is None or not sas_core.mac_matches(mac, info, content, theirs):
            await self._cancel(run, "m.key_mismatch", "the MAC does not match the device's key")
            return
        # The owner confirmed on their device; their MAC proves the same keys.  The bot's
        # own "they match" is the person's answer through the hook, if there is one.
        run.their_mac = device
        if self.on_pending is None or run.confirmed:
            await self._confirm(run, device)

    async def _confirm(self, run: _Run, device: nio.OlmDevice) -> None:
        """Both sides confirmed: send our MAC and done, and trust the owner's device."""
        session, olm, established = run.session, self.client.olm, run.established
        if session.finished.is_set() or olm is None or established is None:
            return
        if session.state != "keys":
            return  # already confirming (the answer and the MAC raced)
        session.state = "confirming"
        me, them = self._me, (session.user_id, session.device_id)
        mac, txn = sas_core.mac_function(established, run.mac_method), session.transaction_id
        ours = {f"ed25519:{me[1]}": olm.account.identity_keys["ed25519"]}
        if self.master_key:
            ours[f"ed25519:{self.master_key}"] = self.master_key
        info = sas_core.mac_info(me, them, txn)
        await self._send(run, "mac", sas_core.mac_content(mac, info, ours))
        self.client.verify_device(device)
        await self._send(run, "done", {})
        self._finish(run, "verified", "")
        log.info("in-room verification %s: device %s of %s verified", txn, device.id, them[0])

    async def _decrypt_later(self, room: nio.MatrixRoom, event: nio.MegolmEvent) -> None:
        """An owner's event whose room key is still on the way: retry for a while."""
        for _ in range(DECRYPT_RETRIES):
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                decrypted = self.client.decrypt_event(event)
                if not isinstance(decrypted, nio.MegolmEvent):
                    await self._on_event(room, decrypted)
                    return

    def _expire(self, run: _Run, delay: float) -> None:
        if run.timer is not None:
            run.timer.cancel()
        run.timer = self._spawn(self._time_out(run, delay))

    async def _time_out(self, run: _Run, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))  # then the spec's m.timeout
        await self._cancel(run, "m.timeout", "the verification timed out")

    async def _cancel(self, run: _Run, code: str, reason: str) -> None:
        if run.session.finished.is_set():
            return
        log.warning("in-room verification %s cancelled: %s", run.session.transaction_id, code)
        self._finish(run, "cancelled", code)
        await self._send(run, "cancel", {"code": code, "reason": reason})

    def _finish(self, run: _Run, state: str, code: str) -> None:
        session = run.session
        if not session.finished.is_set():
            session.state, session.cancel_code = state, code
            session.finished.set()
        if run.timer is not None and run.timer is not asyncio.current_task():
            run.timer.cancel()
        run.established = None  # the shared secret is of no more use

    async def _send(self, run: _Run, step: str, content: dict[str, Any]) -> None:
        """Send a room event of the run (encrypted in an encrypted room), retrying a
        rate-limited one under the same transaction id."""
        relation = {"rel_type": "m.reference", "event_id": run.session.transaction_id}
        content, tx_id = {**content, "m.relates_to": relation}, str(uuid.uuid4())
        for attempt in range(1, SEND_ATTEMPTS + 1):
            if self.pace is not None:
                await self.pace()
            try:
                response: Any = await self.client.room_send(
                    run.room_id, V + step, content, tx_id=tx_id, ignore_unverified_devices=True
                )
            except Exception as e:  # no such room, members not synced, ...
                response = repr(e)
            retry_ms = getattr(response, "retry_after_ms", None)
            sent = isinstance(response, nio.RoomSendResponse)
            if sent or not retry_ms or attempt == SEND_ATTEMPTS:
                break
            await asyncio.sleep(retry_ms / 1000)
        if not isinstance(response, nio.RoomSendResponse):
            log.warning("in-room verification: sending %s failed: %s", step, response)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
