"""Pairing: one-time codes that make the person who uses one an owner.

`threadline pair` issues a code; the person sends `pair CODE` (Telegram: opens the
deep link, which sends `/start CODE`) from their own account, and from then on is
an owner (`platform:user_id`), kept in the database across restarts as a row signed
with the daemon's key, until `threadline unpair` (`bridge/access/owners.py`).

A code is 12 characters of Crockford base32 (60 random bits), shown as
``ABCD-EFGH-JKMN``: short enough to type on a phone and to fit a Telegram deep link.
It is never stored: its SHA-256 keys a row holding a payload signed with the
daemon's Ed25519 key (pynacl; a 32-byte seed in ``<data_dir>/pairing.key``, mode
0600) — code hash, platform (or any), expiry, nonce.  Redeeming checks, in order:
the sender's failed attempts (at most `MAX_FAILURES` an hour, so codes cannot be
guessed), that the row exists, its signature under the daemon's key (an altered
row, or one signed by another key, is refused), that the payload belongs to this
code, expiry (10 minutes), platform, and finally claims the row with one
conditional UPDATE (two people racing the same code: one wins).  Every issue,
redemption and refusal is an audit-log row; the code itself is never logged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from adapters.base import ChatAdapter
from adapters.messages import Sender
from adapters.registry import BY_NAME
from adapters.tasks import TaskGroup
from bridge import render
from bridge.access import owners
from bridge.access.control import AccessControl
from bridge.access.owners import PairedOwners
from bridge.config import Config
from storage.crypto import load_or_create_key
from storage.db import Database
from storage.models import PairingCodeRow, utcnow
from storage.types import PairingPayload

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_CHARS = 12  # 60 bits
TTL = timedelta(minutes=10)
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(hours=1)
_SIGNED_PREFIX = b"threadline-pair-v1\n"
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def key_path(config: Config) -> Path:
    """Where the daemon's signing key lives (next to the database by default)."""
    return config.data_dir() / "pairing.key"


def load_signing_key(path: Path) -> SigningKey:
    """The daemon's Ed25519 key, created (mode 0600) on first use."""
    try:
        seed = load_or_create_key(path)
    except FileExistsError:  # the daemon and `threadline pair` created it at once
        seed = load_or_create_key(path)
    return SigningKey(seed)


def normalise(text: str) -> str | None:
    """What was typed → the bare code, or None if it cannot be one.  Case, spaces,
    dashes and the look-alikes O/I/L are forgiven."""
    bare = "".join(text.upper().split()).replace("-", "").replace("_", "").translate(_LOOKALIKES)
    if len(bare) != CODE_CHARS or any(c not in ALPHABET for c in bare):
        return None
    return bare


def shown(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def code_id(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Issued:
    code: str  # as shown: ABCD-EFGH-JKMN
    platform: str  # "" = any
    expires: datetime


@dataclass(frozen=True, slots=True)
class _Signed:
    platform: str  # "" = any
    expires: datetime


@dataclass(frozen=True, slots=True)
class Redeemed:
    ok: bool
    message: str  # told to the person


class Pairing:
    """Issues and redeems codes; one per process (the daemon, or `threadline pair`)."""

    def __init__(
        self, db: Database, key: SigningKey, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.key = key
        self.now = now
        self.owners = PairedOwners(db, key)

    def issue(self, platform: str = "", *, by: str = "cli") -> Issued:
        if platform and platform not in BY_NAME:
            raise ValueError(f"unknown platform {platform!r}")
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))
        expires = self.now() + TTL
        cid = code_id(code)
        signed: PairingPayload = {
            "v": 1,
            "id": cid,
            "platform": platform,
            "expires": int(expires.timestamp()),
            "nonce": secrets.token_hex(16),
        }
        payload = json.dumps(signed, sort_keys=True)
        signature = self.key.sign(_SIGNED_PREFIX + payload.encode()).signature.hex()
        self.db.pairing.add_code(
            PairingCodeRow(id=cid, payload=payload, signature=signature, platform=platform)
        )
        self._audit(by, platform, "pair-issue", f"code {cid[:8]} for {platform or 'any platform'}")
        return Issued(shown(code), platform, expires)

    def redeem(self, typed: str, sender: Sender) -> Redeemed:
        """Check a code sent by `sender` and, if it holds, claim it for them."""
        since = self.now() - FAILURE_WINDOW
        if self.db.pairing.failures_since(sender.key, since, ("pair-refused",)) >= MAX_FAILURES:
            told = self.db.pairing.failures_since(sender.key, since, ("pair-limited",))
            self._audit(sender.key, sender.platform, "pair-limited", "too many attempts", False)
            return Redeemed(
                False,
                "Too many wrong pairing codes — try again in an hour." if told == 0 else "",
            )
        code = normalise(typed)
        row = self.db.pairing.get_code(code_id(code)) if code else None
        if code is None or row is None:
            return self._refuse(
                sender,
                "unknown code",
                "That pairing code is not valid. Check it, or run `threadline pair` for a new one.",
            )
        cid = row.id[:8]
        signed = self._verified(row)
        if signed is None:
            return self._refuse(
                sender,
                f"code {cid}: bad signature",
                "That pairing code is not valid: it was not issued by this Threadline.",
            )
        if self.now() >= signed.expires:
            return self._refuse(
                sender,
                f"code {cid}: expired",
                "That pairing code has expired (codes last 10 minutes). "
                "Run `threadline pair` for a new one.",
            )
        platform = signed.platform
        if platform and platform != sender.platform:
            return self._refuse(
                sender,
                f"code {cid}: for {platform}",
                f"That pairing code is for {platform.capitalize()}, not "
                f"{sender.platform.capitalize()}.",
            )
        if not self.db.pairing.claim(row.id, sender.key):
            return self._refuse(
                sender, f"code {cid}: already used", "That pairing code has already been used."
            )
        self.owners.add(sender.key, sender.platform, row.id)
        self._audit(sender.key, sender.platform, "pair", f"code {cid}: now an owner")
        log.info("paired %s as an owner", sender.key)
        return Redeemed(
            True,
            "✅ Paired — you are now an owner. Start with "
            f"{render.cmd(sender.platform, 'new PATH PROMPT')}.",
        )

    def open_for(self, platform: str) -> bool:
        """Whether an unexpired, unused, genuinely signed code for `platform` exists."""
        now = self.now()
        for row in self.db.pairing.pending_codes():
            signed = self._verified(row)
            if signed and signed.platform in ("", platform) and signed.expires > now:
                return True
        return False

    def invite_allowed(self, platform: str, user_id: str) -> bool:
        """A stranger's invite (Matrix) may be accepted while a code is open, so the
        person can reach the bot to pair; audit-logged either way."""
        allowed = self.open_for(platform)
        detail = "accepted: a pairing code is open" if allowed else "declined: not an owner"
        self._audit(f"{platform}:{user_id}", platform, "pair-invite", detail, allowed)
        return allowed

    def _verified(self, row: PairingCodeRow) -> _Signed | None:
        """The row's signed payload if the daemon's key signed it, for this row's code;
        None for an altered row, a row signed by another key, or garbage."""
        try:
            self.key.verify_key.verify(
                _SIGNED_PREFIX + row.payload.encode(), bytes.fromhex(row.signature)
            )
            payload: PairingPayload = json.loads(row.payload)
            if payload["id"] != row.id:  # a genuine payload copied onto another code
                return None
            return _Signed(
                str(payload["platform"]), datetime.fromtimestamp(int(payload["expires"]), UTC)
            )
        except (BadSignatureError, ValueError, TypeError, KeyError):
            return None

    def _refuse(self, sender: Sender, detail: str, message: str) -> Redeemed:
        self._audit(sender.key, sender.platform, "pair-refused", detail, False)
        log.warning("pairing refused for %s: %s", sender.key, detail)
        return Redeemed(False, message)

    def _audit(
        self, user: str, platform: str, action: str, detail: str, allowed: bool = True
    ) -> None:
        self.db.audit.log(
            platform=platform, user=user, action=action, detail=detail, allowed=allowed
        )


def load_owners(
    pairing: Pairing,
    access: AccessControl,
    adapters: Mapping[str, ChatAdapter],
    config_owners: Collection[str],
    tasks: TaskGroup,
) -> None:
    """At start: paired owners join the config's (`bridge/access/owners.py`); strangers'
    invites are let in while a pairing code is open."""
    owners.start(pairing.owners, access, adapters, config_owners, tasks)
    for platform, adapter in adapters.items():
        adapter.open_invites(functools.partial(pairing.invite_allowed, platform))
        report = getattr(adapter, "report_refusals", None)  # Matrix: events a server forged
        if report is not None:
            report(access.refuse)
