"""SAS (emoji) verification pieces shared by the two ways an owner verifies the bot.

`verification.py` answers to-device verifications (the owner verifies the bot's
*device*; nio's `Sas` runs the state machine) and `room_verification.py` answers
in-room ones (the owner verifies the bot *user* in their DM; vodozemac directly).
Both need the same record of a run, the same notion of owner, and the same spec
strings: the HKDF info of the short string, the info and layout of the MAC, the
accept's commitment, and the emoji table (indexed by vodozemac's emoji indices, as
Element does; nio's own `Sas.get_emoji()` is off, see `verification.py`).  The table
is the spec's, names included: nio's says "Wrench", "Thumbs up", "Airplane" where the
spec and Element say "Spanner", "Thumbs Up", "Aeroplane", and the person compares
names too.

Nobody sits at the bot, so its side of "They match" comes from the person through a
`DecisionHook` (set by the bridge at composition): it gets each run once its emoji are
known and a `decide(match)` to call with the person's answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nio
import vodozemac

log = logging.getLogger(__name__)

MAC_V2 = ("hkdf-hmac-sha256.v2", "org.matrix.msc3783.hkdf-hmac-sha256")
MAC_OLD = "hkdf-hmac-sha256"  # by the spec: libolm's broken base64 of the same MAC
KEY_AGREEMENTS = ("curve25519-hkdf-sha256", "curve25519")  # preferred first
MAX_KEPT = 20  # finished runs kept in `sessions`
Party = tuple[str, str, str]  # (user id, device id, SAS public key)
MacFunction = Callable[[str, str], str]  # (input, info) -> unpadded base64 MAC
EmojiCallback = Callable[["Verification"], Awaitable[None] | None]
Decide = Callable[[bool], Awaitable[None]]  # the person's answer: True "they match"
DecisionHook = Callable[["Verification", Decide], Awaitable[None]]

# The spec's SAS emoji table (Client-Server API, "SAS method: emoji"), by index.
EMOJI: tuple[tuple[str, str], ...] = tuple(
    (e, n)
    for e, n in (
        line.split(" ", 1)
        for line in (
            "🐶 Dog|🐱 Cat|🦁 Lion|🐎 Horse|🦄 Unicorn|🐷 Pig|🐘 Elephant|🐰 Rabbit|"
            "🐼 Panda|🐓 Rooster|🐧 Penguin|🐢 Turtle|🐟 Fish|🐙 Octopus|🦋 Butterfly|"
            "🌷 Flower|🌳 Tree|🌵 Cactus|🍄 Mushroom|🌏 Globe|🌙 Moon|☁️ Cloud|🔥 Fire|"
            "🍌 Banana|🍎 Apple|🍓 Strawberry|🌽 Corn|🍕 Pizza|🎂 Cake|❤️ Heart|😀 Smiley|"
            "🤖 Robot|🎩 Hat|👓 Glasses|🔧 Spanner|🎅 Santa|👍 Thumbs Up|☂️ Umbrella|"
            "⌛ Hourglass|⏰ Clock|🎁 Gift|💡 Light Bulb|📕 Book|✏️ Pencil|📎 Paperclip|"
            "✂️ Scissors|🔒 Lock|🔑 Key|🔨 Hammer|☎️ Telephone|🏁 Flag|🚂 Train|🚲 Bicycle|"
            "✈️ Aeroplane|🚀 Rocket|🏆 Trophy|⚽ Ball|🎸 Guitar|🎺 Trumpet|🔔 Bell|⚓ Anchor|"
            "🎧 Headphones|📁 Folder|📌 Pin"
        ).split("|")
    )
)


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


def finished_beyond(sessions: dict[str, Verification], keep: int = MAX_KEPT) -> list[str]:
    """Transaction ids of finished runs past the newest `keep` (to forget them)."""
    done = [txn for txn, session in sessions.items() if session.finished.is_set()]
    return done[: max(len(done) - keep, 0)]


def emoji(indices: Iterable[int]) -> list[tuple[str, str]]:
    """The spec's emoji (and their names) for vodozemac's emoji indices."""
    return [EMOJI[i] for i in indices]


def sas_info(agreement: str, starter: Party, acceptor: Party, txn: str) -> str:
    """The HKDF info of the short string; `starter` sent `m.key.verification.start`."""
    if agreement == "curve25519":  # the deprecated original, without the keys
        return f"MATRIX_KEY_VERIFICATION_SAS{starter[0]}{starter[1]}{acceptor[0]}{acceptor[1]}{txn}"
    return "MATRIX_KEY_VERIFICATION_SAS|" + "|".join((*starter, *acceptor, txn))


def mac_info(sender: tuple[str, str], receiver: tuple[str, str], txn: str) -> str:
    """The HKDF info prefix of the MAC that `sender` (user, device) sends `receiver`."""
    return f"MATRIX_KEY_VERIFICATION_MAC{sender[0]}{sender[1]}{receiver[0]}{receiver[1]}{txn}"


def mac_content(mac: MacFunction, info: str, keys: dict[str, str]) -> dict[str, Any]:
    """`mac` and `keys` of an `m.key.verification.mac` over `keys` (key id -> key)."""
    return {
        "mac": {key_id: mac(key, info + key_id) for key_id, key in keys.items()},
        "keys": mac(",".join(sorted(keys)), info + "KEY_IDS"),
    }


def mac_matches(
    mac: MacFunction, info: str, content: dict[str, Any], known: dict[str, str]
) -> bool:
    """Whether a received MAC covers every key in `known` and all of it verifies.

    Key ids we do not know (e.g. the sender's master key) are covered by the `keys`
    MAC but otherwise ignored, as the spec allows."""
    macs = content.get("mac")
    if not isinstance(macs, dict) or not all(isinstance(v, str) for v in macs.values()):
        return False
    if not set(known) <= set(macs):
        return False
    if not hmac.compare_digest(
        mac(",".join(sorted(macs)), info + "KEY_IDS"), str(content.get("keys", ""))
    ):
        return False
    return all(
        hmac.compare_digest(mac(key, info + key_id), macs[key_id]) for key_id, key in known.items()
    )


def negotiate(start: dict[str, Any]) -> tuple[str, str, list[str]] | None:
    """Our choices for an `m.sas.v1` start (key agreement, MAC method, short strings),
    by preference; None when the start offers nothing we share."""

    def first(preferred: Sequence[str], offered: Any) -> str:
        return next((p for p in preferred if isinstance(offered, list) and p in offered), "")

    agreement = first(KEY_AGREEMENTS, start.get("key_agreement_protocols"))
    mac = first((*MAC_V2, MAC_OLD), start.get("message_authentication_codes"))
    offered = start.get("short_authentication_string")
    strings = [s for s in ("decimal", "emoji") if isinstance(offered, list) and s in offered]
    hashes = start.get("hashes")
    if start.get("method") != "m.sas.v1" or not agreement or not mac or "decimal" not in strings:
        return None
    return (agreement, mac, strings) if isinstance(hashes, list) and "sha256" in hashes else None


def mac_function(established: vodozemac.EstablishedSas, method: str) -> MacFunction:
    """The MAC of a method: v2 is proper base64, the old name libolm's broken one."""
    if method in MAC_V2:
        return established.calculate_mac
    return established.calculate_mac_invalid_base64


def find_device(client: nio.AsyncClient, user_id: str, device_id: str) -> nio.OlmDevice | None:
    """A device in nio's store (None if unknown or deleted)."""
    for device in client.device_store:
        if device.user_id == user_id and device.id == device_id and not device.deleted:
            return device
    return None


async def known_device(
    client: nio.AsyncClient, user_id: str, device_id: str
) -> nio.OlmDevice | None:
    """A device from nio's store, its keys queried first if it is not there yet."""
    if (device := find_device(client, user_id, device_id)) is None:
        await query_keys(client, user_id)
        device = find_device(client, user_id, device_id)
    return device


def canonical_json(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def commitment(public_key: str, start_content: dict[str, Any]) -> str:
    """The accept's commitment by the spec: unpadded base64 SHA-256 of our public key
    followed by the canonical JSON of the start's content, as received."""
    digest = hashlib.sha256((public_key + canonical_json(start_content)).encode("utf-8")).digest()
    return base64.b64encode(digest).decode().rstrip("=")


async def query_keys(client: nio.AsyncClient, user_id: str) -> None:
    """Fetch `user_id`'s device keys into nio's store now."""
    assert client.olm is not None
    client.olm.users_for_key_query.add(user_id)
    response = await client.keys_query()
    if isinstance(response, nio.KeysQueryError):
        log.warning("SAS verification: keys query for %s failed: %s", user_id, response)


async def show(on_emoji: EmojiCallback | None, session: Verification) -> None:
    """Log the emoji of a run and hand them to the callback, if any."""
    log.info(
        "SAS verification %s with %s: %s",
        session.transaction_id,
        session.user_id,
        " ".join(e for e, _ in session.emoji),
    )
    if on_emoji is not None:
        result = on_emoji(session)
        if result is not None:
            await result
