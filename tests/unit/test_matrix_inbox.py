"""The Matrix inbox and catch-up rules: the saved sync position, handled event ids,
history before the bot's join, the "it waited" notice — through the real `Receiver`
fed sync responses that matrix-nio parses (no homeserver)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, AsyncClientConfig, Event, SyncResponse

from adapters.matrix import catchup, inbox
from adapters.matrix.buttons import ButtonMap
from adapters.matrix.errors import MatrixErrors
from adapters.matrix.inbox import Inbox
from adapters.matrix.receiver import Receiver
from adapters.messages import ThreadRef, UserMessage

BOT = "@bot:localhost"
OWNER = "@ada:localhost"
STRANGER = "@eve:localhost"
ROOM = "!room:localhost"


def message(event_id: str, text: str, *, sender: str = OWNER, age_s: float = 0) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": event_id,
        "sender": sender,
        "origin_server_ts": int((time.time() - age_s) * 1000),
        "content": {"msgtype": "m.text", "body": text},
    }


def member(user: str, event_id: str, *, prev: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "m.room.member",
        "state_key": user,
        "sender": user,
        "event_id": event_id,
        "origin_server_ts": int(time.time() * 1000),
        "content": {"membership": "join"},
    }
    if prev:
        event["unsigned"] = {"prev_content": {"membership": prev}}
    return event


def sync(
    events: list[dict[str, Any]], next_batch: str = "s1", *, limited: bool = False
) -> SyncResponse:
    resp = SyncResponse.from_dict(
        {
            "next_batch": next_batch,
            "rooms": {
                "join": {
                    ROOM: {
                        "state": {"events": [member(OWNER, "$m1"), member(BOT, "$m2")]},
                        "timeline": {"events": events, "limited": limited, "prev_batch": "p0"},
                        "ephemeral": {"events": []},
                        "account_data": {"events": []},
                        "summary": {},
                        "unread_notifications": {},
                    }
                },
                "invite": {},
                "leave": {},
            },
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
            "presence": {"events": []},
            "account_data": {"events": []},
        }
    )
    assert isinstance(resp, SyncResponse)
    return resp


class Bot:
    """A nio client (no homeserver, no encryption) and our receiver on one inbox."""

    def __init__(self, box: Inbox) -> None:
        self.client = AsyncClient(
            "http://127.0.0.1:9",
            BOT,
            device_id="BOTDEV",
            config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False),
        )
        self.client.user_id = BOT  # as a login would
        self.delivered: list[Any] = []
        self.notices: list[tuple[ThreadRef, str]] = []

        async def deliver(event: Any) -> None:
            self.delivered.append(event)

        async def pace() -> None:
            return None

        self.receiver = Receiver(
            self.client,
            owners=[OWNER],
            encryption="optional",
            buttons=ButtonMap(None),
            errors=MatrixErrors(),
            deliver=deliver,
            notify=lambda room, text: None,
            pace=pace,
            inbox=box,
            notify_in=lambda thread, text: self.notices.append((thread, text)),
        )

    async def take(self, resp: SyncResponse, **kwargs: Any) -> list[str]:
        """Texts delivered for `resp`."""
        before = len(self.delivered)
        await self.client.receive_response(resp)
        await self.receiver.handle(resp, **kwargs)
        return [e.text for e in self.delivered[before:] if isinstance(e, UserMessage)]


@pytest.fixture()
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    box = Inbox(tmp_path / "inbox.db")
    b = Bot(box)
    yield b
    await b.client.close()
    box.close()


async def test_a_new_devices_first_sync_is_history_and_sets_the_position(bot: Bot) -> None:
    got = await bot.take(sync([message("$a", "old news")], "s1"), history=True)
    assert got == [] and bot.receiver.inbox.position("BOTDEV") == "s1"
    assert bot.receiver.inbox.position("OTHERDEV") is None, "a new device starts afresh"
    assert await bot.take(sync([message("$b", "new")], "s2")) == ["new"]
    assert bot.receiver.inbox.position("BOTDEV") == "s2"


async def test_an_event_is_handed_on_once_even_by_a_new_process(bot: Bot, tmp_path: Path) -> None:
    resp = [message("$a", "do it"), message("$b", "and this")]
    assert await bot.take(sync(resp, "s1")) == ["do it", "and this"]
    assert await bot.take(sync(resp, "s2")) == []
    bot.receiver.inbox.close()
    again = Bot(Inbox(tmp_path / "inbox.db"))  # the restarted daemon, same store
    try:
        assert await again.take(sync([*resp, message("$c", "new")], "s3")) == ["new"]
    finally:
        await again.client.close()
        again.receiver.inbox.close()


async def test_events_before_the_bots_join_are_skipped(bot: Bot) -> None:
    timeline = [
        message("$a", "before the invite"),
        member(BOT, "$join", prev="invite"),
        message("$b", "after the join"),
    ]
    assert await bot.take(sync(timeline)) == ["after the join"]
    # a profile change is no join: nothing before it is skipped
    timeline = [message("$c", "first"), member(BOT, "$nick", prev="join"), message("$d", "second")]
    assert await bot.take(sync(timeline, "s2")) == ["first", "second"]


async def test_a_gap_is_filled_and_a_join_in_it_still_counts(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str | None, str]] = []
    gap = [
        message("$a", "before the join"),
        member(BOT, "$join", prev="invite"),
        message("$b", "in the gap"),
    ]

    async def fill_gap(client: Any, room: str, start: str | None, since: str) -> list[Any]:
        asked.append((room, start, since))
        return [Event.parse_event(e) for e in gap]

    monkeypatch.setattr(catchup, "fill_gap", fill_gap)
    got = await bot.take(sync([message("$c", "latest")], limited=True), since="s0")
    assert got == ["in the gap", "latest"] and asked == [(ROOM, "p0", "s0")]
    assert await bot.take(sync([message("$d", "more")], "s2", limited=True)) == ["more"], (
        "no position asked for: nothing to fill up to"
    )


async def test_a_message_that_waited_gets_a_notice_in_its_thread(bot: Bot) -> None:
    late = message("$a", "late", age_s=150)
    late["content"]["m.relates_to"] = {"rel_type": "m.thread", "event_id": "$root"}
    fresh = message("$b", "fresh", age_s=5)
    stranger = message("$c", "me too", sender=STRANGER, age_s=300)
    bot.receiver.catching_up = True
    assert await bot.take(sync([late, fresh, stranger])) == ["late", "fresh", "me too"]
    assert bot.notices == [
        (
            ThreadRef("matrix", ROOM, "$root"),
            "⏳ This message arrived while the daemon was down (2 min ago).",
        )
    ], "only the owner's late message, in its thread"
    bot.receiver.catching_up = False
    assert await bot.take(sync([message("$d", "slow sync", age_s=150)], "s2")) == ["slow sync"]
    assert len(bot.notices) == 1, "only when catching up after a start"


def test_waited_reads_naturally() -> None:
    assert catchup.waited(30) == "under a minute ago"
    assert catchup.waited(61) == "1 min ago"
    assert catchup.waited(119 * 60) == "119 min ago"
    assert catchup.waited(5 * 3600) == "5 h ago"
    assert catchup.waited(3 * 86400) == "3 days ago"
    assert catchup.age_s({"origin_server_ts": "x"}) == 0.0
    assert catchup.age_s({"origin_server_ts": 1_000}, now=61.0) == 60.0


def test_handled_ids_are_a_bounded_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "KEEP_HANDLED", 150)
    box = Inbox(tmp_path / "inbox.db")
    try:
        for n in range(400):
            assert box.claim(f"$e{n}")
        assert not box.claim("$e399") and box.seen("$e399")
        assert not box.seen("$e0"), "the oldest were let go"
        count = box._db.execute("SELECT COUNT(*) FROM handled").fetchone()[0]
        assert 150 <= count < 260
        assert (tmp_path / "inbox.db").stat().st_mode & 0o077 == 0
    finally:
        box.close()


def test_undecrypted_events_outlive_the_process(tmp_path: Path) -> None:
    box = Inbox(tmp_path / "inbox.db")
    raw = {"type": "m.room.encrypted", "event_id": "$x", "content": {"session_id": "s"}}
    first = box.keep_undecrypted(ROOM, "$x", raw)
    assert box.keep_undecrypted(ROOM, "$x", raw) == first, "first seen stays"
    box.close()
    box = Inbox(tmp_path / "inbox.db")
    try:
        assert box.undecrypted() == [(ROOM, raw, first)]
        box.drop_undecrypted("$x")
        assert box.undecrypted() == []
    finally:
        box.close()


def test_a_damaged_inbox_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "inbox.db").write_bytes(b"not a database at all" * 100)
    box = Inbox(tmp_path / "inbox.db")
    try:
        assert box.position("BOTDEV") is None and box.claim("$a")
        assert [p.name.split("-")[0] for p in tmp_path.glob("inbox.db.damaged-*")] == [
            "inbox.db.damaged"
        ]
    finally:
        box.close()


async def test_an_event_waiting_for_its_key_is_still_awaited_after_a_restart(
    tmp_path: Path,
) -> None:
    """Undecryptable now (its room key has not come): the position moves on, but the
    event is kept in the inbox and the next process goes on retrying it."""
    store = tmp_path / "store"
    store.mkdir()
    encrypted = {
        "type": "m.room.encrypted",
        "event_id": "$secret",
        "sender": OWNER,
        "origin_server_ts": int(time.time() * 1000),
        "content": {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "AwgAEnB4ZmFrZQ",
            "device_id": "PHONE",
            "sender_key": "a" * 43,
            "session_id": "b" * 43,
        },
    }
    box = Inbox(tmp_path / "inbox.db")
    first_seen: list[float] = []
    for timeline in ([encrypted], []):  # the first process, then the restarted one
        bot = Bot(box)
        await bot.client.close()
        bot.client = AsyncClient(
            "http://127.0.0.1:9",
            BOT,
            store_path=str(store),
            config=AsyncClientConfig(
                encryption_enabled=True, store_sync_tokens=False, max_timeouts=0
            ),
        )
        bot.client.restore_login(BOT, "BOTDEV", "token")  # loads an olm account
        bot.receiver = Receiver(
            bot.client,
            owners=[OWNER],
            encryption="required",
            buttons=ButtonMap(None),
            errors=MatrixErrors(),
            deliver=bot.receiver.deliver,
            notify=lambda room, text: None,
            pace=bot.receiver.pace,
            inbox=box,
        )
        try:
            await bot.take(sync(timeline))
            assert [e.event_id for _, e, _ in bot.receiver._undecrypted] == ["$secret"]
            assert [raw["event_id"] for _, raw, _ in box.undecrypted()] == ["$secret"]
            first_seen.extend(since for _, _, since in bot.receiver._undecrypted)
        finally:
            await bot.client.close()
    box.close()
    assert first_seen[0] == first_seen[1], "the wait counts from when it was first seen"
