"""matrix-nio plumbing: the logged-in `AsyncClient`, sync housekeeping, device trust,
and file transfer.

Login keeps one device for the life of the store: an explicit `access_token` (+
`device_id`) from the config wins; otherwise the login saved in the store is restored
(and, if the homeserver has revoked its token, renewed with the password *for the
same device id*, so its olm keys stay valid); only a store without a saved login logs
in afresh.  nio retries 429s forever by default, so `max_limit_exceeded=0` hands them
to us (the outbox honours `retry_after`), and `max_timeouts` bounds retries on
timeouts.  After every sync we do what nio's `sync_forever` does between syncs —
send queued to-device messages, upload, query and claim keys — and then trust the
owners' devices on first use (TOFU): nio refuses to encrypt for undecided devices,
owners' devices become verified when first seen, everyone else's are shared keys
with but left unverified.  Attachments people send are fetched only when the bridge
asks (after its access check), streamed within a size cap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from nio import AsyncClient, AsyncClientConfig, ErrorResponse, WhoamiResponse
from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import EncryptionError

from adapters import download
from adapters.base import PermanentError
from adapters.download import FileRef, get_capped
from adapters.matrix.config import MatrixConfig
from adapters.matrix.e2ee.store import Credentials, MatrixStore
from adapters.matrix.errors import MatrixErrors, http_status
from adapters.messages import Attachment, AttachmentUnavailable

log = logging.getLogger(__name__)

DEVICE_NAME = "Threadline"
SYNC_TIMEOUT_MS = 30_000
MEDIA_DOWNLOAD = "/_matrix/client/v1/media/download"  # authenticated media (spec v1.11)
# A fresh device can never decrypt the history before it, and its first sync is only
# skipped (receiver.py): take little of it.  Later syncs take a lot, so that a burst of
# events between two syncs rarely leaves a gap ("limited" timeline; catchup.py reads
# what a gap holds from the room's history).
FIRST_SYNC_FILTER: dict[str, Any] = {"room": {"timeline": {"limit": 3}}}
SYNC_FILTER: dict[str, Any] = {"room": {"timeline": {"limit": 100}}}


def make_client(
    cfg: MatrixConfig, store: MatrixStore, *, encryption: bool, device_id: str = ""
) -> AsyncClient:
    config = AsyncClientConfig(
        store_sync_tokens=True,
        encryption_enabled=encryption,
        pickle_key=store.pickle_key(),
        max_limit_exceeded=0,
        max_timeouts=2,
        request_timeout=30,
    )
    return AsyncClient(
        cfg.homeserver.rstrip("/"),
        cfg.user_id,
        device_id=device_id,
        store_path=str(store.path),
        config=config,
    )


async def _whoami(client: AsyncClient, errors: MatrixErrors) -> WhoamiResponse | ErrorResponse:
    try:
        return await client.whoami()
    except Exception as e:
        raise errors.exception(e) from e


async def login(
    cfg: MatrixConfig, store: MatrixStore, errors: MatrixErrors, *, encryption: bool
) -> AsyncClient:
    """A logged-in client on the bot's one device, its crypto store loaded."""
    homeserver = cfg.homeserver.rstrip("/")
    if cfg.access_token:
        client = make_client(cfg, store, encryption=encryption, device_id=cfg.device_id)
        client.access_token = cfg.access_token  # whoami tells the device if not configured
        who = errors.check(await _whoami(client, errors))
        device = cfg.device_id or who.device_id or ""
        if not device:
            await client.close()
            raise PermanentError("matrix.device_id is needed with matrix.access_token")
        client.restore_login(who.user_id, device, cfg.access_token)
        return client
    saved = store.load_credentials()
    if saved and (saved.homeserver, saved.user_id) == (homeserver, cfg.user_id):
        client = make_client(cfg, store, encryption=encryption, device_id=saved.device_id)
        client.restore_login(saved.user_id, saved.device_id, saved.access_token)
        who = await _whoami(client, errors)
        if not isinstance(who, ErrorResponse):
            log.info("Matrix: restored the login of device %s", saved.device_id)
            return client
        if http_status(who) != 401 or not cfg.password:
            await client.close()
            raise errors.translate(who)
        log.warning("Matrix: the saved access token was revoked; logging in again")
        client.access_token = ""
    else:
        client = make_client(cfg, store, encryption=encryption)
    if not cfg.password:
        await client.close()
        raise PermanentError("matrix: set password (or access_token and device_id)")
    try:
        resp = await client.login(cfg.password, device_name=DEVICE_NAME)
    except Exception as e:
        await client.close()
        raise errors.exception(e) from e
    if isinstance(resp, ErrorResponse):
        await client.close()
        raise errors.translate(resp)
    errors.add_secret(client.access_token)
    store.save_credentials(
        Credentials(homeserver, client.user_id, client.device_id, client.access_token)
    )
    log.info("Matrix: logged in as %s, device %s", client.user_id, client.device_id)
    return client


async def housekeeping(client: AsyncClient) -> None:
    """What nio's `sync_forever` does between syncs, with failures only logged."""
    calls = [client.send_to_device_messages]
    if client.olm is not None:
        if client.should_upload_keys:
            calls.append(client.keys_upload)
        if client.should_query_keys:
            calls.append(client.keys_query)
        if client.should_claim_keys:
            users = client.get_users_for_key_claiming()
            calls.append(lambda: client.keys_claim(users))
    for call in calls:
        try:
            resp = await call()
            if isinstance(resp, ErrorResponse):
                log.warning("Matrix: %s", resp)
        except Exception as e:  # the next sync tries again
            log.warning("Matrix: key housekeeping failed: %s", type(e).__name__)


def trust_owners(client: AsyncClient, owners: Iterable[str]) -> list[str]:
    """TOFU: verify every owner device not yet decided; returns what was trusted."""
    if client.olm is None:
        return []
    trusted = []
    for user_id in owners:
        for device in client.device_store.active_user_devices(user_id):
            if device.verified or device.blacklisted or device.id == client.device_id:
                continue
            client.verify_device(device)
            trusted.append(f"{user_id}/{device.id}")
            log.info(
                "Matrix: trusting %s's device %s (ed25519 %s) on first use",
                user_id,
                device.id,
                device.ed25519,
            )
    return trusted


def attachment(client: AsyncClient, ref: FileRef) -> Attachment:
    """The bridge's lazy `Attachment` for a file someone sent: nothing is fetched until
    the bridge calls `fetch(limit)` (after its access check); then the media is
    streamed (authenticated media, the token in a header) and abandoned past the cap,
    and decrypted if it came from an encrypted room."""

    async def body(cap: int) -> bytes:
        mxc = urlsplit(ref.source)
        media_id = mxc.path.strip("/")
        session = client.client_session
        if mxc.scheme != "mxc" or not mxc.netloc or not media_id or session is None:
            raise AttachmentUnavailable(f"cannot fetch {ref.source[:100]!r}")
        url = f"{client.homeserver}{MEDIA_DOWNLOAD}/{quote(mxc.netloc)}/{quote(media_id)}"
        try:
            data = await get_capped(
                session,
                url,
                token=client.access_token,
                name=ref.name,
                limit=cap,
                what="media download",
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30),
                ssl=client.ssl,
            )
        except (aiohttp.ClientError, OSError) as e:
            raise AttachmentUnavailable(type(e).__name__) from None
        if ref.crypto is not None:
            try:
                key = ref.crypto["key"]["k"]
                data = decrypt_attachment(
                    data, key, ref.crypto["hashes"]["sha256"], ref.crypto["iv"]
                )
            except (KeyError, TypeError, ValueError, EncryptionError) as e:
                raise AttachmentUnavailable(f"cannot decrypt attachment {ref.name}: {e}") from e
        return data

    return download.attachment(ref, body)


async def upload(
    client: AsyncClient, data: bytes, *, name: str, mime: str, encrypt: bool, errors: MatrixErrors
) -> dict[str, Any]:
    """Upload a file; returns the content fields that point at it: `url` in a plain
    room, `file` (mxc URL plus key, iv and hash, spec "Sending encrypted attachments")
    in an encrypted one, where the homeserver only ever sees ciphertext."""
    try:
        resp, keys = await client.upload(
            lambda _got_429, _got_timeouts: data,
            content_type=mime,
            filename=name,
            encrypt=encrypt,
            filesize=len(data),
        )
    except Exception as e:
        raise errors.exception(e) from e
    errors.check(resp)
    if encrypt and keys:
        return {"file": {**keys, "url": resp.content_uri, "mimetype": mime}}
    return {"url": resp.content_uri}
