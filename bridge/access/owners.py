"""Paired owners: signed rows, checked on every use, revocable while the daemon runs.

Pairing (`bridge/access/pairing.py`) makes someone an owner by writing a `paired_owners` row.
A row alone proves nothing — anyone able to write the database could insert one — so
each row carries an Ed25519 signature by the daemon's key (the one that signs pairing
codes, ``<data_dir>/pairing.key``, mode 0600) over its owner key, platform and pairing
code.  Access control asks `PairedOwners.is_owner` for every message and button press:
the row must exist *and* its signature verify.  So:

- a row inserted or altered by someone without the key makes no owner (and the daemon
  logs it at start);
- rows from before signing existed make no owner either: a genuine one cannot be told
  from a forged one without trusting the database, which is what signing is for.  The
  daemon logs each with how to fix it (`threadline pair` again; pairing again replaces
  the row with a signed one);
- `threadline unpair KEY` deletes the row (audit-logged): the next message from that
  person is refused by the running daemon at once; the adapters' owner lists (Slack
  mentions, Matrix invites and device trust) follow within `RELOAD_S` seconds.

Config owners (`[access] owners`) are not rows: they are changed in the config file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from adapters.base import ChatAdapter
from adapters.tasks import TaskGroup
from bridge.access.control import AccessControl
from storage.db import Database
from storage.models import PairedOwner

log = logging.getLogger(__name__)

_SIGNED_PREFIX = b"threadline-owner-v1\n"
RELOAD_S = 5.0


def _message(key: str, platform: str, code_id: str) -> bytes:
    # NUL cannot occur in any of the three, so the fields cannot be shifted into each other
    return _SIGNED_PREFIX + "\0".join((key, platform, code_id)).encode()


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    platform: str
    paired_at: str
    valid: bool


class PairedOwners:
    """The paired owners in ``db`` whose rows ``signing_key`` signed."""

    def __init__(self, db: Database, signing_key: SigningKey) -> None:
        self.db = db
        self.key = signing_key
        self.announced: set[str] = set()  # the owners the adapters were told of

    def add(self, key: str, platform: str, code_id: str) -> None:
        """Record a new owner (the caller tells the adapter)."""
        signature = self.key.sign(_message(key, platform, code_id)).signature.hex()
        self.db.pairing.add_owner(key, platform, code_id, signature)
        self.announced.add(key)

    def valid(self, row: PairedOwner) -> bool:
        if row.key.partition(":")[0] != row.platform:
            return False
        try:
            self.key.verify_key.verify(
                _message(row.key, row.platform, row.code_id), bytes.fromhex(row.signature)
            )
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True

    def is_owner(self, key: str) -> bool:
        row = self.db.pairing.get_owner(key)
        return row is not None and self.valid(row)

    def owners(self) -> list[PairedOwner]:
        """The rows that make owners."""
        return [row for row in self.db.pairing.owners() if self.valid(row)]

    def listing(self) -> list[Listed]:
        return [
            Listed(o.key, o.platform, o.paired_at.strftime("%Y-%m-%d %H:%M"), self.valid(o))
            for o in self.db.pairing.owners()
        ]

    def remove(self, key: str, *, by: str) -> bool:
        """Revoke a paired owner; False if ``key`` is not one (audit-logged either way)."""
        removed = self.db.pairing.remove_owner(key)
        self.db.audit.log(
            platform=key.partition(":")[0],
            user=by,
            action="unpair",
            detail=f"{key}: {'no longer an owner' if removed else 'not a paired owner'}",
            allowed=removed,
        )
        if removed:
            log.info("unpaired %s", key)
        return removed

    def warn_invalid(self) -> None:
        """Log every row that makes no owner, with what to do about it."""
        for row in self.db.pairing.owners():
            if not self.valid(row):
                log.warning(
                    "paired owner %s is not signed by this daemon's key (paired before "
                    "owners were signed, or written into the database by someone else): "
                    "not an owner. To pair again run `threadline pair`; to remove the row "
                    "run `threadline unpair %s`.",
                    row.key,
                    row.key,
                )


def tell_adapters(
    paired: PairedOwners,
    adapters: Mapping[str, ChatAdapter],
    config_owners: Collection[str],
    now: set[str],
) -> None:
    """Bring the adapters' owner lists from `announced` to `now` (config owners stay)."""
    for key in sorted(now - paired.announced):
        adapter = adapters.get(key.partition(":")[0])
        if adapter is not None:
            adapter.add_owner(key.partition(":")[2])
    for key in sorted(paired.announced - now):
        adapter = adapters.get(key.partition(":")[0])
        if adapter is not None and key not in config_owners:
            adapter.remove_owner(key.partition(":")[2])
    paired.announced = set(now)


def start(
    paired: PairedOwners,
    access: AccessControl,
    adapters: Mapping[str, ChatAdapter],
    config_owners: Collection[str],
    tasks: TaskGroup,
) -> None:
    """At daemon start: access control asks the signed rows; the adapters learn the
    paired owners now and follow changes made by other processes (`threadline unpair`)."""
    paired.warn_invalid()
    access.use_paired(paired.is_owner)
    tell_adapters(paired, adapters, config_owners, {o.key for o in paired.owners()})
    tasks.spawn(watch(paired, adapters, config_owners), name="paired-owners")


async def watch(
    paired: PairedOwners, adapters: Mapping[str, ChatAdapter], config_owners: Collection[str]
) -> None:
    while True:
        await asyncio.sleep(RELOAD_S)
        try:
            rows = await asyncio.to_thread(paired.owners)
        except Exception:  # a busy database now and then: next time
            log.exception("reloading the paired owners failed")
            continue
        tell_adapters(paired, adapters, config_owners, {o.key for o in rows})
