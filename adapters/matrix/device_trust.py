"""Is the device that sent an encrypted event cross-signed by its user?

Under `[matrix] approvals = "verified"` an owner's event counts only if it was
encrypted by a device the owner cross-signed.  nio has no cross-signing, so this reads
the keys the homeserver publishes (`/keys/query`, raw: nio drops the cross-signing
keys) and checks the chain itself: the sending device (found by the Curve25519 key
that Olm authenticated for the event's megolm session) must be signed by the user's
self-signing key, which must be signed by the user's master key.  The homeserver can
publish any keys, so the master key is pinned the first time it is seen (stored
next to the bot's crypto store); a different master key later is refused until the
pin file is removed on the machine (the owner reset their cross-signing).  `guard`
applies the same check to the room keys the bot shares: an owner device that is not
cross-signed is blacklisted in nio (no TOFU), so it cannot read the bot either.  Without
the private keys of that identity the homeserver cannot sign a device of its own.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import nio

from adapters.matrix.e2ee.crosssign import canonical_json

log = logging.getLogger(__name__)

Json = dict[str, Any]
CACHE_S = 60.0  # a positive answer is reused this long (one /keys/query per minute)


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _one_key(obj: Json) -> str | None:
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    value = next(iter(keys.values()))
    return value if isinstance(value, str) else None


def signed_by(obj: Json, user_id: str, key: str, key_id: str = "") -> bool:
    """Whether `obj` carries a valid signature by the Ed25519 public `key`, named
    `ed25519:<key_id>` (a device signs as its device id, cross-signing keys as their
    public key)."""
    sigs = obj.get("signatures")
    name = f"ed25519:{key_id or key}"
    sig = sigs.get(user_id, {}).get(name) if isinstance(sigs, dict) else None
    if not isinstance(sig, str):
        return False
    try:
        nacl.signing.VerifyKey(_unb64(key)).verify(canonical_json(obj), _unb64(sig))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def check_device(query: Json, user_id: str, sender_key: str, pinned: str | None) -> str | None:
    """Why the device with Curve25519 key `sender_key` is not cross-signed by
    `user_id`'s master key (`pinned`, if one is pinned), or ``None`` if it is."""
    master = query.get("master_keys", {}).get(user_id)
    ssk = query.get("self_signing_keys", {}).get(user_id)
    if not isinstance(master, dict) or not isinstance(ssk, dict):
        return "the account has no cross-signing identity"
    master_key, ssk_key = _one_key(master), _one_key(ssk)
    if master_key is None or ssk_key is None:
        return "the account's cross-signing keys are malformed"
    if pinned is not None and master_key != pinned:
        return "the account's cross-signing identity changed since the bot first saw it"
    if not signed_by(ssk, user_id, master_key):
        return "the self-signing key is not signed by the master key"
    devices = query.get("device_keys", {}).get(user_id, {})
    for device_id, device in devices.items() if isinstance(devices, dict) else ():
        keys = device.get("keys", {}) if isinstance(device, dict) else {}
        if keys.get(f"curve25519:{device_id}") != sender_key:
            continue
        own = keys.get(f"ed25519:{device_id}")
        if not isinstance(own, str) or not signed_by(device, user_id, own, device_id):
            return f"device {device_id} is not signed by its own key"
        if not signed_by(device, user_id, ssk_key):
            return f"device {device_id} is not cross-signed by its owner"
        return None
    return "the sending device is not one of the account's devices"


class DeviceTrust:
    def __init__(self, pins: Path | None = None) -> None:
        self.pins = pins  # user id → pinned master key (JSON)
        self._ok: dict[tuple[str, str], float] = {}  # (user, curve key) → checked at

    def _pinned(self) -> dict[str, str]:
        if self.pins is None or not self.pins.exists():
            return {}
        try:
            raw = json.loads(self.pins.read_text())
        except (OSError, ValueError):
            log.error("Matrix: unreadable identity pins %s: trusting no identity", self.pins)
            return {"": ""}  # matches no user, pins nothing new
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    def _pin(self, pins: dict[str, str], user_id: str, master_key: str) -> None:
        log.warning("Matrix: pinning %s's cross-signing identity %s", user_id, master_key)
        if self.pins is None or "" in pins:
            return
        pins[user_id] = master_key
        self.pins.parent.mkdir(parents=True, exist_ok=True)
        self.pins.write_text(json.dumps(pins))

    async def verdicts(self, client: nio.AsyncClient, user_id: str) -> dict[str, str | None]:
        """Curve25519 key → why that device of `user_id` is not cross-signed (``None``:
        it is), for all the devices the homeserver lists; ``{}`` without an answer."""
        try:
            query = await _keys_query(client, user_id)
        except Exception as e:
            log.warning("Matrix: no /keys/query answer for %s: %s", user_id, e)
            return {}
        pinned = self._pinned().get(user_id)
        devices = query.get("device_keys", {}).get(user_id, {})
        out: dict[str, str | None] = {}
        for device_id, device in devices.items() if isinstance(devices, dict) else ():
            keys = device.get("keys", {}) if isinstance(device, dict) else {}
            curve = keys.get(f"curve25519:{device_id}")
            if isinstance(curve, str):
                out[curve] = check_device(query, user_id, curve, pinned)
        return out

    async def guard(
        self,
        client: nio.AsyncClient,
        owners: Iterable[str],
        changed: set[str],
        guarded: set[tuple[str, str]],
    ) -> None:
        """An owner device gets the bot's room keys only if the owner cross-signed it
        (nio shares with every device not blacklisted): checked for devices not in
        `guarded` yet, and again for owners whose keys `changed` in this sync."""
        for user_id in owners:
            devices = [
                d
                for d in client.device_store.active_user_devices(user_id)
                if d.id != client.device_id
            ]
            if user_id not in changed and all((user_id, d.id) in guarded for d in devices):
                continue
            verdicts = await self.verdicts(client, user_id)
            if not verdicts:
                continue  # no answer: decide after a later sync
            for device in devices:
                reason = verdicts.get(device.curve25519, "not listed by the homeserver")
                guarded.add((user_id, device.id))
                if reason is None:
                    if device.blacklisted:
                        client.unblacklist_device(device)
                    if not device.verified:
                        log.info("Matrix: %s's device %s is cross-signed", user_id, device.id)
                        client.verify_device(device)
                elif not device.blacklisted:
                    log.warning(
                        "Matrix: not sharing keys with %s's device %s: %s",
                        user_id,
                        device.id,
                        reason,
                    )
                    client.blacklist_device(device)

    async def why_not(self, client: nio.AsyncClient, user_id: str, sender_key: str) -> str | None:
        """``None`` if the device behind `sender_key` is cross-signed by `user_id`."""
        if time.monotonic() - self._ok.get((user_id, sender_key), -CACHE_S) < CACHE_S:
            return None
        try:
            query = await _keys_query(client, user_id)
        except Exception as e:  # no answer is no proof
            return f"the homeserver did not answer /keys/query ({e})"
        pins = self._pinned()
        reason = check_device(query, user_id, sender_key, pins.get(user_id))
        if reason is None:
            if user_id not in pins:
                self._pin(pins, user_id, str(_one_key(query["master_keys"][user_id])))
            self._ok[(user_id, sender_key)] = time.monotonic()
        return reason


async def _keys_query(client: nio.AsyncClient, user_id: str) -> Json:
    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    body = json.dumps({"device_keys": {user_id: []}})
    resp = await client.send("POST", "/_matrix/client/v3/keys/query", body, headers)
    async with resp:
        data = await resp.json(content_type=None)
    if resp.status != 200 or not isinstance(data, dict):
        raise RuntimeError(f"HTTP {resp.status}")
    return data
