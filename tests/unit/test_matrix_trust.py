"""The Matrix trust gate: the cross-signing chain check of `device_trust`, the
once-an-hour notices of `trust_gate`, and the withheld-key bookkeeping."""

from __future__ import annotations

from typing import Any

import nacl.signing
from nio import UnknownToDeviceEvent

from adapters.matrix.device_trust import check_device, signed_by
from adapters.matrix.e2ee.crosssign import key_object, public_key, sign_object
from adapters.matrix.trust_gate import TrustGate
from adapters.matrix.withheld import Withheld
from adapters.messages import Sender

USER = "@owner:localhost"


def identity() -> tuple[dict[str, Any], nacl.signing.SigningKey, nacl.signing.SigningKey]:
    master, ssk = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    query: dict[str, Any] = {
        "master_keys": {USER: key_object(USER, "master", master)},
        "self_signing_keys": {
            USER: sign_object(key_object(USER, "self_signing", ssk), USER, master)
        },
        "device_keys": {USER: {}},
    }
    return query, master, ssk


def add_device(query: dict[str, Any], device_id: str, curve: str, ssk: Any = None) -> None:
    own = nacl.signing.SigningKey.generate()
    device: dict[str, Any] = {
        "user_id": USER,
        "device_id": device_id,
        "algorithms": ["m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": curve, f"ed25519:{device_id}": public_key(own)},
    }
    device = sign_object(device, USER, own)
    sigs = device["signatures"][USER]
    sigs[f"ed25519:{device_id}"] = sigs.pop(f"ed25519:{public_key(own)}")
    if ssk is not None:
        device = sign_object(device, USER, ssk)
    query["device_keys"][USER][device_id] = device


def test_a_cross_signed_device_passes_and_others_say_why() -> None:
    query, master, ssk = identity()
    add_device(query, "PHONE", "curve-phone", ssk)
    add_device(query, "NEW", "curve-new")  # the owner merely has it (or the server added it)
    assert check_device(query, USER, "curve-phone", None) is None
    assert check_device(query, USER, "curve-phone", public_key(master)) is None
    assert "not cross-signed" in str(check_device(query, USER, "curve-new", None))
    assert "not one of" in str(check_device(query, USER, "curve-else", None))
    other = nacl.signing.SigningKey.generate()
    assert "changed" in str(check_device(query, USER, "curve-phone", public_key(other)))


def test_a_self_signing_key_the_server_swapped_in_is_refused() -> None:
    query, master, _ = identity()
    forged = nacl.signing.SigningKey.generate()  # the server's own, signed by nobody
    query["self_signing_keys"][USER] = key_object(USER, "self_signing", forged)
    add_device(query, "FAKE", "curve-fake", forged)
    assert "not signed by the master key" in str(check_device(query, USER, "curve-fake", None))
    assert not signed_by({"signatures": "junk"}, USER, public_key(master))


def test_no_identity_is_no_trust() -> None:
    assert check_device({"device_keys": {}}, USER, "x", None) is not None


def test_notices_once_an_hour_per_kind_and_every_refusal_reported() -> None:
    gate = TrustGate()
    rows: list[tuple[str, str]] = []

    def report(sender: Sender, action: str, detail: str) -> bool:
        rows.append((action, detail))
        return len(rows) == 1  # the bridge's audit: only the first is to be told

    gate.report = report
    who = Sender("matrix", USER, "Owner")
    assert gate.refuse(who, "plaintext", "a")
    assert not gate.refuse(who, "plaintext", "b")
    assert gate.refuse(who, "reaction", "c"), "another kind of refusal is explained once too"
    assert not gate.refuse(who, "reaction", "d")
    assert [a for a, _ in rows] == ["plaintext", "plaintext", "reaction", "reaction"]
    assert gate.decides("p:1:a") and gate.decides("q:1:0:1") and not gate.decides("s:stop")


def test_a_withheld_session_is_answered_once() -> None:
    w = Withheld()
    raw = {
        "sender": USER,
        "type": "m.room_key.withheld",
        "content": {"code": "m.unverified", "session_id": "S1", "room_id": "!r"},
    }
    w.note([UnknownToDeviceEvent.from_dict(raw), object()])
    assert w.code("S2") is None and w.notice("S2") is None
    text = w.notice("S1")
    assert text is not None and "verif" in text and "threadline verify" in text
    assert w.notice("S1") is None, "once per session"
