"""`threadline doctor` for Matrix: is the homeserver there, do the credentials work, is
the E2EE store usable, is someone allowed to talk to the bot.

The checks never leave a trace on the account: the saved login (or the configured
access token) is checked with `whoami`; with only a password, the doctor logs in as a
throwaway device and logs out again, which deletes that device.  It never touches the
bot's own device or its keys.  `check` returns the results; `bridge.cli.doctor` prints
them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nio import AsyncClient, AsyncClientConfig, ErrorResponse, JoinedRoomsResponse

from adapters.matrix.config import MatrixConfig
from adapters.matrix.e2ee.store import MatrixStore
from adapters.spec import CheckResult, fail, ok, warn

_MXID = re.compile(r"@[^:\s]+:\S+")


async def check(m: MatrixConfig, owners: Sequence[str]) -> list[CheckResult]:
    if not _MXID.fullmatch(m.user_id):
        return [
            fail(
                f"Matrix: user_id {m.user_id!r} is not a Matrix id", "write it as @bot:example.org"
            )
        ]
    results: list[CheckResult] = []
    store = MatrixStore(m.store_path)
    try:
        store.prepare()
        results.append(ok(f"Matrix: E2EE store {store.path} is writable"))
    except OSError as e:
        results.append(
            fail(
                f"Matrix: E2EE store {store.path}: {e.strerror}",
                "fix [matrix] store_path or its permissions",
            )
        )
    client = AsyncClient(
        m.homeserver.rstrip("/"),
        m.user_id,
        config=AsyncClientConfig(encryption_enabled=False, max_timeouts=1, request_timeout=15),
    )
    try:
        results.extend(await _check_login(m, store, client))
    except Exception as e:  # an unreachable homeserver, DNS, TLS
        results.append(
            fail(
                f"Matrix: {m.homeserver} unreachable ({type(e).__name__})",
                "check [matrix] homeserver and the network",
            )
        )
    finally:
        await client.close()
    if not any(o.startswith("matrix:") for o in owners):
        results.append(
            fail(
                "Matrix: no matrix owner in [access] owners and none paired",
                "run `threadline pair`, or add 'matrix:@you:your.server' to [access] owners",
            )
        )
    if m.encryption != "required":
        results.append(
            warn(
                f"Matrix: encryption = {m.encryption!r}",
                'use "required" unless you trust the homeserver with your code',
            )
        )
    return results


async def _check_login(
    m: MatrixConfig, store: MatrixStore, client: AsyncClient
) -> list[CheckResult]:
    saved = store.load_credentials()
    if m.access_token or (saved and saved.user_id == m.user_id):
        client.access_token = m.access_token or (saved.access_token if saved else "")
        who = await client.whoami()
        if isinstance(who, ErrorResponse):
            if not m.password:
                return [
                    fail(
                        f"Matrix: the access token was refused ({who.status_code})",
                        "set a fresh access_token, or a password",
                    )
                ]
        else:
            device = m.device_id or (saved.device_id if saved else "") or who.device_id
            results = [ok(f"Matrix: logged in as {who.user_id} (device {device})")]
            if saved and store.has_crypto_store(saved.user_id, saved.device_id):
                results.append(ok("Matrix: the bot's encryption keys are in the store"))
            return [*results, await _check_room(m, client)]
    if not m.password:
        return [
            fail(
                "Matrix: no password and no access token",
                "set [matrix] password (or access_token and device_id)",
            )
        ]
    resp = await client.login(m.password, device_name="Threadline doctor (temporary)")
    if isinstance(resp, ErrorResponse):
        return [
            fail(
                f"Matrix: login as {m.user_id} failed ({resp.status_code})",
                "check [matrix] user_id and password",
            )
        ]
    try:
        return [ok(f"Matrix: the password works for {m.user_id}"), await _check_room(m, client)]
    finally:
        await client.logout()  # deletes the temporary device


async def _check_room(m: MatrixConfig, client: AsyncClient) -> CheckResult:
    room = m.room
    if not room:
        return ok(
            "Matrix: sessions open in the room each command comes from (invite the bot to an encrypted room)",
        )
    joined = await client.joined_rooms()
    if isinstance(joined, JoinedRoomsResponse) and room in joined.rooms:
        return ok(f"Matrix: the bot is in the control room {room}")
    return warn(
        f"Matrix: the bot is not (yet) in the control room {room}",
        "invite it from an owner's account; it joins on start",
    )
