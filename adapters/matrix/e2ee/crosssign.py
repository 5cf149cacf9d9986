"""Cross-signing for the bot's own Matrix device, built on the client-server API.

matrix-nio has no cross-signing, so a nio bot shows up in Element as a device "not
verified by its owner" and clients that exclude such devices (MSC4153) stop sharing
room keys with it.  This module gives the bot account a cross-signing identity and
vouches for the bot's device with it:

* on first start it creates the master, self-signing and user-signing keys (Ed25519,
  pynacl), signs the self-signing and user-signing keys with the master key and
  uploads all three (`/keys/device_signing/upload`, with password user-interactive
  auth when the server asks for it);
* it signs the device keys exactly as `/keys/query` returns them with the
  self-signing key, and the master key with the device's own Ed25519 key (nio's olm
  account), and uploads both signatures (`/keys/signatures/upload`);
* the private keys stay in `store_path`, encrypted (a pynacl SecretBox whose key
  file is mode 0600, or the caller's `key_cipher`).  Later starts load them and
  only upload the signatures the server is missing; a master key the server already
  has is never replaced, since a new one would break the owner's trust.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import nacl.secret
import nacl.signing
import nacl.utils
import nio

log = logging.getLogger(__name__)

KEY_FILE = "cross_signing.key"
SECRETS_FILE = "cross_signing.enc"
USAGES = ("master", "self_signing", "user_signing")
Json = dict[str, Any]


class KeyCipher(Protocol):
    """Anything that seals bytes at rest (a `nacl.secret.SecretBox` fits)."""

    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes) -> bytes: ...


class CrossSigningError(Exception):
    """The homeserver refused a cross-signing request, or the local keys are unusable."""


@dataclass(frozen=True, slots=True)
class CrossSigningState:
    user_id: str
    device_id: str
    master_key: str  # unpadded base64 public keys, as in /keys/query
    self_signing_key: str
    user_signing_key: str
    created: bool  # this call generated and uploaded a new identity
    uploaded_signatures: tuple[str, ...]  # what this call signed: "device", "master"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def canonical_json(obj: Json) -> bytes:
    """Matrix canonical JSON of a signable object (without signatures/unsigned)."""
    body = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def public_key(key: nacl.signing.SigningKey) -> str:
    return b64(bytes(key.verify_key))


def sign_object(obj: Json, user_id: str, key: nacl.signing.SigningKey) -> Json:
    """Return `obj` (minus `unsigned`) with `key`'s signature merged into `signatures`."""
    signature = b64(key.sign(canonical_json(obj)).signature)
    signed = {k: v for k, v in obj.items() if k != "unsigned"}
    sigs = {u: dict(s) for u, s in obj.get("signatures", {}).items()}
    sigs.setdefault(user_id, {})[f"ed25519:{public_key(key)}"] = signature
    signed["signatures"] = sigs
    return signed


def key_object(user_id: str, usage: str, key: nacl.signing.SigningKey) -> Json:
    pub = public_key(key)
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{pub}": pub}}


def _cipher(store_path: Path, key_cipher: KeyCipher | None) -> KeyCipher:
    """The caller's cipher, or a SecretBox whose random key lives in `store_path` (0600)."""
    store_path.mkdir(parents=True, exist_ok=True)
    if key_cipher is not None:
        return key_cipher
    path = store_path / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return nacl.secret.SecretBox(path.read_bytes())
    with os.fdopen(fd, "wb") as f:
        f.write(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE))
    return nacl.secret.SecretBox(path.read_bytes())


def _load_keys(
    store_path: Path, user_id: str, cipher: KeyCipher
) -> dict[str, nacl.signing.SigningKey] | None:
    path = store_path / SECRETS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(cipher.decrypt(path.read_bytes()))
    except Exception as exc:  # wrong key file or cipher, corrupt file
        raise CrossSigningError(f"cannot decrypt {path}: {exc}") from exc
    if data.get("user_id") != user_id:
        raise CrossSigningError(f"{path} holds keys of {data.get('user_id')}, not {user_id}")
    return {u: nacl.signing.SigningKey(base64.b64decode(data[u])) for u in USAGES}


def _save_keys(
    store_path: Path, user_id: str, cipher: KeyCipher, keys: dict[str, nacl.signing.SigningKey]
) -> None:
    data = {"version": 1, "user_id": user_id}
    data.update({u: base64.b64encode(bytes(keys[u])).decode("ascii") for u in USAGES})
    sealed = bytes(cipher.encrypt(json.dumps(data).encode("utf-8")))
    tmp = store_path / (SECRETS_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(sealed)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, store_path / SECRETS_FILE)


async def _request(
    client: nio.AsyncClient, path: str, body: Json, *, allow_401: bool = False
) -> tuple[int, Json]:
    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    resp = await client.send("POST", "/_matrix/client/v3" + path, json.dumps(body), headers)
    async with resp:
        data = await resp.json(content_type=None)
    if resp.status != 200 and not (allow_401 and resp.status == 401):
        raise CrossSigningError(f"{path}: HTTP {resp.status} {data}")
    return resp.status, data if isinstance(data, dict) else {}


async def query_own_keys(client: nio.AsyncClient) -> Json:
    """`/keys/query` for the bot's own user, raw (nio drops the cross-signing keys)."""
    _, data = await _request(client, "/keys/query", {"device_keys": {client.user_id: []}})
    return data


def _server_key(query: Json, field: str, user_id: str) -> str | None:
    keys = query.get(field, {}).get(user_id, {}).get("keys", {})
    return next(iter(keys.values()), None)


async def _upload_identity(
    client: nio.AsyncClient, password: str, keys: dict[str, nacl.signing.SigningKey]
) -> None:
    user = client.user_id
    master = key_object(user, "master", keys["master"])
    body: Json = {
        "master_key": master,
        "self_signing_key": sign_object(
            key_object(user, "self_signing", keys["self_signing"]), user, keys["master"]
        ),
        "user_signing_key": sign_object(
            key_object(user, "user_signing", keys["user_signing"]), user, keys["master"]
        ),
    }
    status, data = await _request(client, "/keys/device_signing/upload", body, allow_401=True)
    if status == 401:  # user-interactive auth: answer the session with the password
        if not any(["m.login.password"] == f.get("stages") for f in data.get("flows", [])):
            raise CrossSigningError(f"no password flow offered for cross-signing: {data}")
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "session": data.get("session"),
        }
        status, data = await _request(client, "/keys/device_signing/upload", body, allow_401=True)
        if status == 401:
            raise CrossSigningError(f"cross-signing upload refused: {data.get('error', data)}")


async def ensure_cross_signed(
    client: nio.AsyncClient,
    *,
    password: str,
    store_path: Path,
    key_cipher: KeyCipher | None = None,
) -> CrossSigningState:
    """Make sure the bot's identity exists and vouches for its current device.

    Call after login and `keys_upload()` (it uploads the device keys itself if nio has
    not yet).  Idempotent: the second call on the same store uploads nothing.
    """
    if client.olm is None or not client.user_id or not client.device_id:
        raise CrossSigningError("log in with an encryption store before cross-signing")
    user, device_id = client.user_id, client.device_id
    cipher = _cipher(store_path, key_cipher)
    keys = _load_keys(store_path, user, cipher)
    if client.should_upload_keys:
        await client.keys_upload()
    query = await query_own_keys(client)
    server_master = _server_key(query, "master_keys", user)
    created = False
    if keys is None:
        if server_master is not None:
            log.warning(
                "cross-signing keys for %s are not in %s: replacing the identity "
                "on the server (the owner has to verify the bot again)",
                user,
                store_path,
            )
        keys = {u: nacl.signing.SigningKey.generate() for u in USAGES}
        await _upload_identity(client, password, keys)
        _save_keys(store_path, user, cipher, keys)
        created = True
        query = await query_own_keys(client)
    elif server_master is None:  # stored keys never reached the server: finish that
        await _upload_identity(client, password, keys)
        query = await query_own_keys(client)
    elif server_master != public_key(keys["master"]):
        raise CrossSigningError(
            f"the server's master key for {user} is not the one in {store_path}: "
            "someone reset the identity; refusing to replace it"
        )
    uploaded = await _sign_missing(client, query, keys)
    log.info(
        "cross-signing: %s, master key %s, signed now: %s",
        "new identity uploaded" if created else "identity loaded",
        public_key(keys["master"]),
        ", ".join(uploaded) or "nothing (already signed)",
    )
    return CrossSigningState(
        user_id=user,
        device_id=device_id,
        master_key=public_key(keys["master"]),
        self_signing_key=public_key(keys["self_signing"]),
        user_signing_key=public_key(keys["user_signing"]),
        created=created,
        uploaded_signatures=uploaded,
    )


async def _sign_missing(
    client: nio.AsyncClient, query: Json, keys: dict[str, nacl.signing.SigningKey]
) -> tuple[str, ...]:
    """Sign the device with the self-signing key and the master key with the device."""
    assert client.olm is not None
    user, device_id = client.user_id, client.device_id
    device = query.get("device_keys", {}).get(user, {}).get(device_id)
    master = query.get("master_keys", {}).get(user)
    if device is None or master is None:
        raise CrossSigningError(f"/keys/query has no device {device_id} or master key")
    ours = client.olm.account.identity_keys
    device_key_id = f"ed25519:{device_id}"
    served = (device["keys"].get(device_key_id), device["keys"].get(f"curve25519:{device_id}"))
    if served != (ours["ed25519"], ours["curve25519"]) or device.get("user_id") != user:
        # Never vouch for keys that are not this device's own (a lying server).
        raise CrossSigningError(f"/keys/query returned foreign keys for device {device_id}")
    ssk_id = f"ed25519:{public_key(keys['self_signing'])}"
    if _server_key(query, "self_signing_keys", user) != public_key(keys["self_signing"]):
        raise CrossSigningError(f"the server's self-signing key for {user} is not ours")
    signatures: Json = {}
    done: list[str] = []
    if ssk_id not in device.get("signatures", {}).get(user, {}):
        signatures[device_id] = sign_object(device, user, keys["self_signing"])
        done.append("device")
    if device_key_id not in master.get("signatures", {}).get(user, {}):
        signed = {k: v for k, v in master.items() if k != "unsigned"}
        signed["signatures"] = {
            user: {device_key_id: client.olm.account.sign(canonical_json(master).decode("utf-8"))}
        }
        signatures[public_key(keys["master"])] = signed
        done.append("master")
    if signatures:
        _, data = await _request(client, "/keys/signatures/upload", {user: signatures})
        if data.get("failures"):
            raise CrossSigningError(f"signatures refused: {data['failures']}")
    return tuple(done)
