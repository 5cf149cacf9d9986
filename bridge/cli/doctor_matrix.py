"""`threadline doctor` for Matrix: is the homeserver there, do the credentials work, is
the E2EE store usable, is someone allowed to talk to the bot.

The checks never leave a trace on the account: the saved login (or the configured
access token) is checked with `whoami`; with only a password, the doctor logs in as a
throwaway device and logs out again, which deletes that device.  It never touches the
bot's own device or its keys.  `check_matrix` returns the number of failed checks.
"""

from __future__ import annotations

import asyncio
import re

from nio import AsyncClient, AsyncClientConfig, ErrorResponse, JoinedRoomsResponse
from rich.console import Console

from adapters.matrix.store import MatrixStore
from bridge.cli.doctor_out import _fail, _ok, _warn
from bridge.config import Config

_MXID = re.compile(r"@[^:\s]+:\S+")


def check_matrix(cfg: Config, out: Console) -> int:
    """Run the Matrix checks (blocking); the number of failures."""
    return asyncio.run(check_matrix_async(cfg, out))


async def check_matrix_async(cfg: Config, out: Console) -> int:
    m = cfg.matrix
    failures = 0
    if not _MXID.fullmatch(m.user_id):
        _fail(
            out, f"Matrix: user_id {m.user_id!r} is not a Matrix id", "write it as @bot:example.org"
        )
        return 1
    store = MatrixStore(m.store_path)
    try:
        store.prepare()
        _ok(out, f"Matrix: E2EE store {store.path} is writable")
    except OSError as e:
        failures += 1
        _fail(
            out,
            f"Matrix: E2EE store {store.path}: {e.strerror}",
            "fix [matrix] store_path or its permissions",
        )
    client = AsyncClient(
        m.homeserver.rstrip("/"),
        m.user_id,
        config=AsyncClientConfig(encryption_enabled=False, max_timeouts=1, request_timeout=15),
    )
    try:
        failures += await _check_login(cfg, store, client, out)
    except Exception as e:  # an unreachable homeserver, DNS, TLS
        failures += 1
        _fail(
            out,
            f"Matrix: {m.homeserver} unreachable ({type(e).__name__})",
            "check [matrix] homeserver and the network",
        )
    finally:
        await client.close()
    from bridge.cli.daemon import all_owners

    if not any(o.startswith("matrix:") for o in all_owners(cfg)):
        failures += 1
        _fail(
            out,
            "Matrix: no matrix owner in [access] owners and none paired",
            "run `threadline pair`, or add 'matrix:@you:your.server' to [access] owners",
        )
    if m.encryption != "required":
        _warn(
            out,
            f"Matrix: encryption = {m.encryption!r}",
            'use "required" unless you trust the homeserver with your code',
        )
    return failures


async def _check_login(cfg: Config, store: MatrixStore, client: AsyncClient, out: Console) -> int:
    m = cfg.matrix
    saved = store.load_credentials()
    if m.access_token or (saved and saved.user_id == m.user_id):
        client.access_token = m.access_token or (saved.access_token if saved else "")
        who = await client.whoami()
        if isinstance(who, ErrorResponse):
            if not m.password:
                _fail(
                    out,
                    f"Matrix: the access token was refused ({who.status_code})",
                    "set a fresh access_token, or a password",
                )
                return 1
        else:
            device = m.device_id or (saved.device_id if saved else "") or who.device_id
            _ok(out, f"Matrix: logged in as {who.user_id} (device {device})")
            if saved and store.has_crypto_store(saved.user_id, saved.device_id):
                _ok(out, "Matrix: the bot's encryption keys are in the store")
            return await _check_room(cfg, client, out)
    if not m.password:
        _fail(
            out,
            "Matrix: no password and no access token",
            "set [matrix] password (or access_token and device_id)",
        )
        return 1
    resp = await client.login(m.password, device_name="Threadline doctor (temporary)")
    if isinstance(resp, ErrorResponse):
        _fail(
            out,
            f"Matrix: login as {m.user_id} failed ({resp.status_code})",
            "check [matrix] user_id and password",
        )
        return 1
    try:
        _ok(out, f"Matrix: the password works for {m.user_id}")
        return await _check_room(cfg, client, out)
    finally:
        await client.logout()  # deletes the temporary device


async def _check_room(cfg: Config, client: AsyncClient, out: Console) -> int:
    room = cfg.matrix.room
    if not room:
        _ok(
            out,
            "Matrix: sessions open in the room each command comes from (invite the bot to an encrypted room)",
        )
        return 0
    joined = await client.joined_rooms()
    if isinstance(joined, JoinedRoomsResponse) and room in joined.rooms:
        _ok(out, f"Matrix: the bot is in the control room {room}")
        return 0
    _warn(
        out,
        f"Matrix: the bot is not (yet) in the control room {room}",
        "invite it from an owner's account; it joins on start",
    )
    return 0
