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
  understands.
* the bot's MAC also covers its cross-signing master key when one is given, so the
  owner's client can sign the bot's identity, not just this device.
* nio's `Sas.get_emoji()` treats vodozemac's emoji *indices* as raw bytes and so
  shows other emoji than Element does; the emoji here come straight from the indices.

Tests (and the adapter, to show the owner what to compare) read the emoji of a run
from `sessions[txn].emoji` or receive them through the `on_emoji` callback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nio
from nio.api import Api
from nio.crypto import Sas
from nio.event_builders import ToDeviceMessage

log = logging.getLogger(__name__)

MAC_V2 = ("hkdf-hmac-sha256.v2", "org.matrix.msc3783.hkdf-hmac-sha256")
MAX_KEPT = 20  # finished runs kept in `sessions`
EmojiCallback = Callable[["Verification"], Awaitable[None] | None]


@dataclass(slots=True)
class Verification:
    transaction_id: str
    user_id: str
    device_id: str
    state: str = "requested"  # requested, started, keys, verified, cancelled
    emoji: list[tuple[str, str]] = field(default_factory=list)
    decimals: tuple[int, ...] = ()
    cancel_code: str = ""
    finished: asyncio.Event = field(default_factory=asyncio.Event)


def owner_ids(owners: Sequence[str]) -> frozenset[str]:
    """Matrix ids from the config's owners ("matrix:@user:server"; bare ids too)."""
    ids = set()
    for owner in owners:
        if owner.startswith("matrix:"):
            ids.add(owner.removeprefix("matrix:"))
        elif owner.startswith("@"):
            ids.add(owner)
    return frozenset(ids)


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
        for old in [t for t, v in self.sessions.items() if v.finished.is_set()][:-MAX_KEPT]:
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
        offered = event.message_authentication_codes
        v2 = next((m for m in MAC_V2 if m in offered), None)
        if v2 is not None:  # a spec client: nio's MAC *is* the v2 one (correct base64),
            sas.chosen_mac_method = v2  # but its hex commitment is not the spec's base64
            accept.content["message_authentication_code"] = v2
            start = Api.to_canonical_json(event.source["content"])
            digest = hashlib.sha256((sas.pubkey + start).encode("utf-8")).digest()
            accept.content["commitment"] = base64.b64encode(digest).decode().rstrip("=")
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
        session.emoji = [Sas.emoji[i] for i in sas_bytes.emoji_indices]
        session.decimals = tuple(sas_bytes.decimals)
        session.state = "keys"
        log.info(
            "SAS verification %s with %s: %s",
            txn,
            session.user_id,
            " ".join(e for e, _ in session.emoji),
        )
        if self.on_emoji is not None:
            result = self.on_emoji(session)
            if result is not None:
                await result

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
        other, txn = sas.other_olm_device, sas.transaction_id
        if sas.chosen_key_agreement == "curve25519":  # the deprecated original
            return (
                f"MATRIX_KEY_VERIFICATION_SAS{other.user_id}{other.id}"
                f"{sas.own_user}{sas.own_device}{txn}"
            )
        return (
            f"MATRIX_KEY_VERIFICATION_SAS|{other.user_id}|{other.id}|{sas.their_sas_key}"
            f"|{sas.own_user}|{sas.own_device}|{sas.pubkey}|{txn}"
        )

    def _mac(self, sas: Sas) -> ToDeviceMessage:
        """Our MAC over the device key and, if set, the cross-signing master key."""
        assert sas.established_sas is not None
        other = sas.other_olm_device
        info = (
            f"MATRIX_KEY_VERIFICATION_MAC{sas.own_user}{sas.own_device}"
            f"{other.user_id}{other.id}{sas.transaction_id}"
        )
        keys = {f"ed25519:{sas.own_device}": sas.own_fp_key}
        if self.master_key:
            keys[f"ed25519:{self.master_key}"] = self.master_key
        mac = sas.established_sas.calculate_mac
        content = {
            "transaction_id": sas.transaction_id,
            "mac": {key_id: mac(key, info + key_id) for key_id, key in keys.items()},
            "keys": mac(",".join(sorted(keys)), info + "KEY_IDS"),
        }
        return ToDeviceMessage("m.key.verification.mac", other.user_id, other.id, content)

    async def _query_keys(self, user_id: str) -> None:
        assert self.client.olm is not None
        self.client.olm.users_for_key_query.add(user_id)
        response = await self.client.keys_query()
        if isinstance(response, nio.KeysQueryError):
            log.warning("SAS verification: keys query for %s failed: %s", user_id, response)

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
