"""`bridge/inbox_codec.py`: chat events survive the trip through the inbox exactly, and
whatever else is in a payload — hostile, malformed or oversized — is a `CodecError`,
never another exception."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.messages import (
    AttachmentTooLarge,
    AttachmentUnavailable,
    ButtonPress,
    Sender,
    ThreadRef,
    UserMessage,
)
from bridge import inbox_codec
from bridge.inbox_codec import CodecError, Fetched, decode_event, encode_message, encode_press

THREAD = ThreadRef("telegram", "1001", "77")
SENDER = Sender("telegram", "1001", "Ada")


def test_a_message_with_files_comes_back_as_it_was_sent() -> None:
    msg = UserMessage(THREAD, SENDER, "look ✨\nhere", "42", "41", "group")
    files = [
        Fetched("image", "cat.png", "image/png", b"\x89PNG\r\n\x1a\nxx"),
        Fetched("file", "big.bin", "application/octet-stream", too_large=(100, 5000)),
        Fetched("file", "gone.txt", "text/plain"),
    ]
    raw = json.dumps(encode_message(msg, files, "threadline_bot"))
    got = decode_event("message", raw)
    assert got.bot == "threadline_bot"
    event = got.event
    assert isinstance(event, UserMessage)
    assert (event.thread, event.sender, event.text, event.message_id) == (
        THREAD,
        SENDER,
        "look ✨\nhere",
        "42",
    )
    assert (event.reply_to, event.chat_type) == ("41", "group")
    cat, big, gone = event.attachments
    assert asyncio.run(cat.fetch(1000)) == b"\x89PNG\r\n\x1a\nxx"
    with pytest.raises(AttachmentTooLarge) as too_large:
        asyncio.run(big.fetch(1000))
    assert (too_large.value.limit, too_large.value.size) == (100, 5000)
    with pytest.raises(AttachmentUnavailable):
        asyncio.run(gone.fetch(1000))
    with pytest.raises(AttachmentTooLarge):  # the receiving host's own cap holds too
        asyncio.run(cat.fetch(3))


def test_a_press_comes_back_as_it_was_sent() -> None:
    press = ButtonPress(ThreadRef("slack", "C1", None), SENDER, "1700.1", "p:abc:allow")
    got = decode_event("press", json.dumps(encode_press(press, "")))
    assert got.event == press and got.bot == ""


def test_oversized_payloads_and_fields_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = UserMessage(THREAD, SENDER, "x" * 2000, "1")
    raw = json.dumps(encode_message(msg, [], "bot"))
    monkeypatch.setattr(inbox_codec, "MAX_PAYLOAD", 1000)
    with pytest.raises(CodecError, match="over the limit"):
        decode_event("message", raw)
    monkeypatch.setattr(inbox_codec, "MAX_PAYLOAD", 10**6)
    monkeypatch.setattr(inbox_codec, "MAX_TEXT", 100)
    with pytest.raises(CodecError, match="text"):
        decode_event("message", raw)
    press = encode_press(ButtonPress(THREAD, SENDER, "1", "x" * 65), "bot")
    with pytest.raises(CodecError, match="data"):
        decode_event("press", json.dumps(press))
    many = encode_message(msg, [Fetched("file", "f", "m", b"")] * 21, "bot")
    with pytest.raises(CodecError, match="files"):
        decode_event("message", json.dumps(many))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """A valid message or press payload with any of its fields replaced by junk."""
    base_msg = encode_message(
        UserMessage(THREAD, SENDER, "hi", "1"), [Fetched("file", "f", "m", b"ab")], "bot"
    )
    base_press = encode_press(ButtonPress(THREAD, SENDER, "1", "p:1:allow"), "bot")
    return st.sampled_from([base_msg, base_press]).flatmap(
        lambda base: st.dictionaries(st.sampled_from(sorted(base)), json_values, max_size=3).map(
            lambda junk: {**base, **junk}
        )
    )


@settings(max_examples=300, deadline=None)
@given(
    raw=st.text(max_size=200) | json_values.map(json.dumps),
    kind=st.sampled_from(["message", "press", "??"]),
)
def test_any_payload_decodes_or_is_a_codec_error(raw: str, kind: str) -> None:
    try:
        decode_event(kind, raw)
    except CodecError:
        pass


@settings(max_examples=300, deadline=None)
@given(payload=_mutations(), kind=st.sampled_from(["message", "press"]))
def test_a_damaged_event_decodes_or_is_a_codec_error(payload: dict[str, Any], kind: str) -> None:
    try:
        got = decode_event(kind, json.dumps(payload))
    except CodecError:
        return
    assert isinstance(got.event, UserMessage | ButtonPress)
