"""Cross-signing of the bot's device against a real Synapse (`adapters/matrix/e2ee/crosssign`).

Every signature is checked independently of the module under test: canonical JSON is
rebuilt here and each Ed25519 signature verified with pynacl against the public keys
that `/keys/query` returns - as the bot itself sees them and as another user (the
owner's client) sees them.  Synapse's acceptance is shown by the signatures appearing
in `/keys/query` at all: it verifies them on upload and stores only valid ones.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import nacl.secret
import nacl.signing
import nacl.utils
import nio
import pytest

from adapters.matrix.e2ee.crosssign import (
    KEY_FILE,
    SECRETS_FILE,
    CrossSigningError,
    CrossSigningState,
    ensure_cross_signed,
)
from tests.support.synapse import Account, Synapse

pytestmark = pytest.mark.timeout(120)


def canonical(obj: dict[str, Any]) -> bytes:
    body = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def assert_signed(obj: dict[str, Any], user_id: str, key_id: str, public_key: str) -> None:
    """`obj` carries a valid signature by `key_id` (an unpadded base64 Ed25519 key)."""
    signature = obj["signatures"][user_id][key_id]
    nacl.signing.VerifyKey(unb64(public_key)).verify(canonical(obj), unb64(signature))


def only_key(key_object: dict[str, Any]) -> str:
    ((key_id, pub),) = key_object["keys"].items()
    assert key_id == f"ed25519:{pub}"
    return str(pub)


def query(hs: Synapse, token: str, user_id: str) -> dict[str, Any]:
    return hs.request(
        "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}}, token=token
    )


def fresh_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


async def login(hs: Synapse, account: Account, store: Path) -> nio.AsyncClient:
    client = nio.AsyncClient(hs.base_url, account.user_id, store_path=str(store))
    response = await client.login(account.password, device_name="threadline")
    assert isinstance(response, nio.LoginResponse), response
    await client.keys_upload()
    return client


def check_identity(
    keys: dict[str, Any], user_id: str, device_id: str, state: CrossSigningState, *, own: bool
) -> None:
    master = keys["master_keys"][user_id]
    ssk = keys["self_signing_keys"][user_id]
    assert master["usage"] == ["master"] and ssk["usage"] == ["self_signing"]
    assert master["user_id"] == ssk["user_id"] == user_id
    assert only_key(master) == state.master_key
    assert only_key(ssk) == state.self_signing_key
    master_id = f"ed25519:{state.master_key}"
    assert_signed(ssk, user_id, master_id, state.master_key)
    device = keys["device_keys"][user_id][device_id]
    device_ed25519 = device["keys"][f"ed25519:{device_id}"]
    assert_signed(device, user_id, f"ed25519:{state.self_signing_key}", state.self_signing_key)
    assert_signed(device, user_id, f"ed25519:{device_id}", device_ed25519)  # its own
    if own:  # Synapse shows these two only to the account itself
        assert_signed(master, user_id, f"ed25519:{device_id}", device_ed25519)
        usk = keys["user_signing_keys"][user_id]
        assert usk["usage"] == ["user_signing"] and usk["user_id"] == user_id
        assert only_key(usk) == state.user_signing_key
        assert_signed(usk, user_id, master_id, state.master_key)
    else:
        assert user_id not in keys.get("user_signing_keys", {})


async def test_first_login_creates_uploads_and_signs(synapse: Synapse, tmp_path: Path) -> None:
    bot, owner = synapse.register(), synapse.register()
    client = await login(synapse, bot, fresh_dir(tmp_path / "store"))
    try:
        state = await ensure_cross_signed(
            client, password=bot.password, store_path=tmp_path / "store"
        )
        assert state.created and state.user_id == bot.user_id
        assert state.device_id == client.device_id
        assert set(state.uploaded_signatures) == {"device", "master"}
        assert len({state.master_key, state.self_signing_key, state.user_signing_key}) == 3
        own_view = query(synapse, client.access_token, bot.user_id)
        check_identity(own_view, bot.user_id, client.device_id, state, own=True)
        # What the owner's client sees: the chain master -> self-signing -> device.
        owner_view = query(synapse, owner.access_token, bot.user_id)
        check_identity(owner_view, bot.user_id, client.device_id, state, own=False)
    finally:
        await client.close()


async def test_restart_is_idempotent(synapse: Synapse, tmp_path: Path) -> None:
    bot = synapse.register()
    store = tmp_path / "store"
    client = await login(synapse, bot, fresh_dir(store))
    first = await ensure_cross_signed(client, password=bot.password, store_path=store)
    before = query(synapse, client.access_token, bot.user_id)
    again = await ensure_cross_signed(client, password=bot.password, store_path=store)
    assert (again.master_key, again.self_signing_key) == (first.master_key, first.self_signing_key)
    assert not again.created and again.uploaded_signatures == ()
    await client.close()
    # A restart of the daemon: same store, same device, fresh client.
    restarted = nio.AsyncClient(synapse.base_url, bot.user_id, store_path=str(store))
    restarted.restore_login(bot.user_id, client.device_id, client.access_token)
    try:
        third = await ensure_cross_signed(restarted, password="not needed", store_path=store)
        assert third.master_key == first.master_key and not third.created
        assert third.uploaded_signatures == ()
        assert query(synapse, client.access_token, bot.user_id) == before
    finally:
        await restarted.close()


async def test_new_device_is_signed_by_the_existing_identity(
    synapse: Synapse, tmp_path: Path
) -> None:
    bot = synapse.register()
    store = tmp_path / "store"
    old = await login(synapse, bot, fresh_dir(store))
    first = await ensure_cross_signed(old, password=bot.password, store_path=store)
    await old.close()
    new = await login(synapse, bot, fresh_dir(tmp_path / "other-olm-store"))
    try:
        assert new.device_id != old.device_id
        state = await ensure_cross_signed(new, password=bot.password, store_path=store)
        assert not state.created and state.master_key == first.master_key
        assert set(state.uploaded_signatures) == {"device", "master"}
        keys = query(synapse, new.access_token, bot.user_id)
        check_identity(keys, bot.user_id, new.device_id, state, own=True)
    finally:
        await new.close()


async def test_private_keys_are_encrypted_at_rest(synapse: Synapse, tmp_path: Path) -> None:
    bot = synapse.register()
    store = tmp_path / "store"
    client = await login(synapse, bot, fresh_dir(store))
    try:
        await ensure_cross_signed(client, password=bot.password, store_path=store)
    finally:
        await client.close()
    sealed, key_file = store / SECRETS_FILE, store / KEY_FILE
    for path in (sealed, key_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    blob = sealed.read_bytes()
    keys = json.loads(nacl.secret.SecretBox(key_file.read_bytes()).decrypt(blob))
    assert keys["user_id"] == bot.user_id
    for usage in ("master", "self_signing", "user_signing"):
        seed = base64.b64decode(keys[usage])
        assert len(seed) == 32
        for form in (seed, keys[usage].encode(), base64.b64encode(seed).rstrip(b"=")):
            assert form not in blob, f"{usage} private key readable in {sealed}"
    assert b"user_id" not in blob and bot.user_id.encode() not in blob


async def test_caller_supplied_cipher(synapse: Synapse, tmp_path: Path) -> None:
    bot = synapse.register()
    store = tmp_path / "store"
    box = nacl.secret.SecretBox(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE))
    client = await login(synapse, bot, fresh_dir(store))
    try:
        state = await ensure_cross_signed(
            client, password=bot.password, store_path=store, key_cipher=box
        )
        assert not (store / KEY_FILE).exists()
        seed = base64.b64decode(
            json.loads(box.decrypt((store / SECRETS_FILE).read_bytes()))["master"]
        )
        assert (
            base64.b64encode(bytes(nacl.signing.SigningKey(seed).verify_key)).decode().rstrip("=")
            == state.master_key
        )
        with pytest.raises(CrossSigningError, match="cannot decrypt"):
            await ensure_cross_signed(client, password=bot.password, store_path=store)
    finally:
        await client.close()


async def test_lost_keys_replace_identity_with_password_auth(
    synapse: Synapse, tmp_path: Path
) -> None:
    """Replacing existing keys needs user-interactive auth: the password is checked."""
    bot = synapse.register()
    store = tmp_path / "store"
    client = await login(synapse, bot, fresh_dir(store))
    try:
        first = await ensure_cross_signed(client, password=bot.password, store_path=store)
        (store / SECRETS_FILE).unlink()
        with pytest.raises(CrossSigningError, match="refused"):
            await ensure_cross_signed(client, password="wrong password", store_path=store)
        keys = query(synapse, client.access_token, bot.user_id)
        assert only_key(keys["master_keys"][bot.user_id]) == first.master_key
        assert not (store / SECRETS_FILE).exists()
        state = await ensure_cross_signed(client, password=bot.password, store_path=store)
        assert state.created and state.master_key != first.master_key
        keys = query(synapse, client.access_token, bot.user_id)
        check_identity(keys, bot.user_id, client.device_id, state, own=True)
    finally:
        await client.close()


async def test_never_overwrites_a_different_server_identity(
    synapse: Synapse, tmp_path: Path
) -> None:
    bot = synapse.register()
    client = await login(synapse, bot, fresh_dir(tmp_path / "a"))
    try:
        first = await ensure_cross_signed(client, password=bot.password, store_path=tmp_path / "a")
        other = await ensure_cross_signed(client, password=bot.password, store_path=tmp_path / "b")
        assert other.master_key != first.master_key  # "b" had no keys: it replaced them
        with pytest.raises(CrossSigningError, match="refusing to replace"):
            await ensure_cross_signed(client, password=bot.password, store_path=tmp_path / "a")
        keys = query(synapse, client.access_token, bot.user_id)
        assert only_key(keys["master_keys"][bot.user_id]) == other.master_key
    finally:
        await client.close()
