"""Answer interactive SAS (emoji) verifications that an owner starts with the bot.

The owner opens the bot's device in Element and picks "Verify"; their device sends
`m.key.verification.request` to the bot.  `SasResponder` answers with `ready`,
accepts the owner's `start` (method `m.sas.v1`), exchanges SAS keys, and - the bot
having nobody to look at the emoji - sends its own MAC only after the owner's MAC
has arrived and verified, i.e. after the owner confirmed that the emoji match.  It
then marks the owner's device verified in nio's store and sends `done`.  Requests
and starts from anyone who is not an owner are cancelled (`m.user`).

nio 0.26 implements the SAS state machine (`nio.crypto.Sas`, driven by the sync
loop) but not the request/ready/done messages, which are sent here by hand.  Two
more things are done differently from nio:

* nio labels its MAC `hkdf-hmac-sha256` but computes it with vodozemac's
  `calculate_mac`, which is what the spec calls `hkdf-hmac-sha256.v2` (the old name
  means libolm's broken base64), and it sends the accept's commitment as hex where
  the spec wants unpadded base64.  When the owner's client offers `.v2` (Element
  does) the bot answers by the spec (`.v2`, base64 commitment); when it offers only
  the old name it is taken to be nio and gets nio's encoding, the only one it
  understands.  nio's accept also lacks the `method` the spec requires (Element's
  Rust crypto cannot parse an accept without it); it is added.
* the bot's MAC also covers its cross-signing master key when one is given, so the
  owner's client can sign the bot's identity, not just this device.
* nio's `Sas.get_emoji()` treats vodozemac's emoji *indices* as raw bytes and so
  shows other emoji than Element does; the emoji here come straight from the indices.

Tests (and the adapter, to show the owner what to compare) read the emoji of a run
from `sessions[txn].emoji` or receive them through the `on_emoji` callback.  The
pieces shared with the in-room responder (`room_verification.py`) are in `sas_core`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import nio
from nio.crypto import Sas
from nio.event_builders import ToDeviceMessage

from adapters.matrix.e2ee import sas_core
from adapters.matrix.e2ee.sas_core import MAC_V2, MAX_KEPT, EmojiCallback, Verification, owner_ids

__all__ = ["MAC_V2", "MAX_KEPT", "EmojiCallback", "SasResponder", "Verification", "owner_ids"]
log = logging.getLogger(__name__)


class SasResponder:
    """Answers SAS verifications from owners' devices; cancels everyone else's."""

    def __init__(
        self,
        client: nio.AsyncClient,
        owners: Sequence[str],
        *,
        master_key: str | None = None,
        on_emoji: EmojiCallback | None = None,
    ) -> None:
        self.client = client
        self.owners = owner_ids(owners)
        self.master_key = master_key  # unpadded base64 public key (CrossSigningState)
        self.on_emoji = on_emoji
        self.sessions: dict[str, Verification] = {}

    def register(self) -> None:
        self.client.add_to_device_callback(
            self._on_event, (nio.KeyVerificationEvent, nio.UnknownToDeviceEvent)
        )

    async def wait(self, transaction_id: str, timeout: float = 60.0) -> Verification:
        """Wait until a run is verified or cancelled (for tests and diagnostics)."""
        session = self.sessions[transaction_id]
        await asyncio.wait_for(session.finished.wait(), timeout)
        return session

    async def _on_event(self, event: Any) -> None:
        try:
            await self._dispatch(event)
        except Exception:  # never let one bad event stop the sync loop
            log.exception("SAS verification: cannot handle %s", type(event).__name__)

    async def _dispatch(self, event: Any) -> None:
        content: dict[str, Any] = event.source.get("content", {})
        txn = str(content.get("transaction_id", ""))
        if isinstance(event, nio.UnknownToDeviceEvent):
            if event.type == "m.key.verification.request":
                await self._on_request(event.sender, content, txn)
            elif event.type == "m.key.verification.done":
                log.info("SAS verification %s: %s sent done", txn, event.sender)
        elif isinstance(event, nio.KeyVerificationStart):
            await self._on_start(event)
        elif isinstance(event, nio.KeyVerificationCancel):
            self._finish(txn, "cancelled", event.code)
        elif isinstance(event, nio.KeyVerificationKey):
            await self._on_key(txn)
        elif isinstance(event, nio.KeyVerificationMac):
            await self._on_mac(txn)

    async def _on_request(self, sender: str, content: dict[str, Any], txn: str) -> None:
        device = str(content.get("from_device", ""))
        age_ms = time.time() * 1000 - float(content.get("timestamp", 0))
        if not device or txn in self.sessions or not -300_000 < age_ms < 600_000:
            return  # the spec: ignore stale, future-dated or repeated requests
        for old in sas_core.finished_beyond(self.sessions):
            del self.sessions[old]
        session = self.sessions[txn] = Verification(txn, sender, device)
        if sender not in self.owners:
            log.warning("SAS verification request from non-owner %s refused", sender)
            await self._cancel(session, "m.user", "not an owner of this bot")
            return
        if "m.sas.v1" not in content.get("methods", []):
            await self._cancel(session, "m.unknown_method", "only m.sas.v1 is supported")
            return
        if not any(d.user_id == sender and d.id == device for d in self.client.device_store):
            await self._query_keys(sender)
        ready = {"from_device": self.client.device_id, "methods": ["m.sas.v1"]}
        await self._reply(session, "ready", ready)

    async def _on_start(self, event: nio.KeyVerificationStart) -> None:
        txn = event.transaction_id
        known = self.sessions.get(txn)
        session = known or Verification(txn, event.sender, event.from_device)
        self.sessions[txn] = session
        if event.sender not in self.owners or (known and known.state == "cancelled"):
            await self._cancel(session, "m.user", "not an owner of this bot")
            return
        if txn not in self.client.key_verifications:  # nio did not know the device yet
            await self._query_keys(event.sender)
            assert self.client.olm is not None
            self.client.olm.handle_key_verification(event)
        sas = self.client.key_verifications.get(txn)
        if sas is None or sas.canceled:
            await self._flush(txn)  # nio's own cancellation, if it queued one
            await self._cancel(
                session,
                sas.cancel_code if sas else "m.unknown_transaction",
                "cannot start this verification",
            )
            return
        accept = sas.accept_verification()
        accept.content["method"] = "m.sas.v1"  # required by the spec (ruma rejects it missing)
        offered = event.message_authentication_codes
        v2 = next((m for m in MAC_V2 if m in offered), None)
        if v2 is not None:  # a spec client: nio's MAC *is* the v2 one (correct base64),
            sas.chosen_mac_method = v2  # but its hex commitment is not the spec's base64
            accept.content["message_authentication_code"] = v2
            accept.content["commitment"] = sas_core.commitment(sas.pubkey, event.source["content"])
        session.state = "started"
        await self._send(accept)

    async def _on_key(self, txn: str) -> None:
        sas = self.client.key_verifications.get(txn)
        session = self.sessions.get(txn)
        if sas is None or session is None or session.state != "started":
            return
        await self._flush(txn)  # our key, queued by nio when the owner's arrived
        if sas.canceled:
            self._finish(txn, "cancelled", sas.cancel_code)
            return
        assert sas.established_sas is not None
        sas_bytes = sas.established_sas.bytes(self._sas_info(sas))
        session.emoji = sas_core.emoji(sas_bytes.emoji_indices)
        session.decimals = tuple(sas_bytes.decimals)
        session.state = "keys"
        await sas_core.show(self.on_emoji, session)

    async def _on_mac(self, txn: str) -> None:
        sas = self.client.key_verifications.get(txn)
        session = self.sessions.get(txn)
        if sas is None or session is None or session.state != "keys":
            return
        if sas.canceled:  # the owner's MAC did not verify: nio queued the cancel
            await self._flush(txn)
            self._finish(txn, "cancelled", sas.cancel_code)
            return
        # The owner compared the emoji and confirmed; their MAC proves the same keys.
        sas.accept_sas()
        await self._send(self._mac(sas))
        self.client.verify_device(sas.other_olm_device)
        await self._reply(session, "done", {})
        self._finish(txn, "verified", "")
        log.info(
            "SAS verification %s: device %s of %s verified", txn, session.device_id, session.user_id
        )

    @staticmethod
    def _sas_info(sas: Sas) -> str:
        """The HKDF info for the short string; the owner's device started the run."""
        other = sas.other_olm_device
        return sas_core.sas_info(
            sas.chosen_key_agreement,
            (other.user_id, other.id, sas.their_sas_key),
            (sas.own_user, sas.own_device, sas.pubkey),
            sas.transaction_id,
        )

    def _mac(self, sas: Sas) -> ToDeviceMessage:
        """Our MAC over the device key and, if set, the cross-signing master key."""
        assert sas.established_sas is not None
        other = sas.other_olm_device
        info = sas_core.mac_info(
            (sas.own_user, sas.own_device), (other.user_id, other.id), sas.transaction_id
        )
        keys = {f"ed25519:{sas.own_device}": sas.own_fp_key}
        if self.master_key:
            keys[f"ed25519:{self.master_key}"] = self.master_key
        content = {
            "transaction_id": sas.transaction_id,
            **sas_core.mac_content(sas.established_sas.calculate_mac, info, keys),
        }
        return ToDeviceMessage("m.key.verification.mac", other.user_id, other.id, content)

    async def _query_keys(self, user_id: str) -> None:
        await sas_core.query_keys(self.client, user_id)

    async def _cancel(self, session: Verification, code: str, reason: str) -> None:
        sas = self.client.key_verifications.get(session.transaction_id)
        if sas is not None and not sas.canceled:
            sas.cancel()
        await self._reply(session, "cancel", {"code": code, "reason": reason})
        self._finish(session.transaction_id, "cancelled", code)

    def _finish(self, txn: str, state: str, code: str) -> None:
        session = self.sessions.get(txn)
        if session is not None and not session.finished.is_set():
            session.state, session.cancel_code = state, code
            session.finished.set()

    async def _flush(self, txn: str) -> None:
        """Send what nio queued for this run now, not on the next sync."""
        queue = self.client.outgoing_to_device_messages
        mine = [m for m in queue if m.content.get("transaction_id") == txn]
        for message in mine:
            queue.remove(message)
            await self._send(message)

    async def _reply(self, session: Verification, kind: str, content: dict[str, Any]) -> None:
        content = {**content, "transaction_id": session.transaction_id}
        kind = "m.key.verification." + kind
        await self._send(ToDeviceMessage(kind, session.user_id, session.device_id, content))

    async def _send(self, message: ToDeviceMessage) -> None:
        response = await self.client.to_device(message)
        if isinstance(response, nio.ToDeviceError):
            log.warning("SAS verification: sending %s failed: %s", message.type, response)
