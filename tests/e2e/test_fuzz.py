"""Hostile input, fuzzed (hypothesis): every place where platform JSON or chat text
first enters our code.

- Telegram: fuzzed update dicts through python-telegram-bot's own `Update.de_json`,
  then our `inbound.parse_message` / `parse_callback`.
- Slack: fuzzed Events API / interactivity / slash command bodies through the
  adapter's `Receiver` listeners (what Bolt hands them) and the pure parsers.
- Matrix: fuzzed timeline events inside a sync response, parsed by matrix-nio
  (`SyncResponse.from_dict`, applied by a real `AsyncClient`), then our `Receiver`.
- The command parser with arbitrary text.
- End to end through the real bridge on Telegram: arbitrary text and button data from
  the owner and from a stranger, malformed raw updates, a 1 MB message and binary
  junk — the bot keeps answering.

Payloads are a valid template mutated field by field: fields dropped, values replaced
by other JSON (wrong types, deeply nested), strings replaced by hostile text (huge,
control characters, lone surrogates — what ``"\\ud800"`` in JSON decodes to, the
closest a JSON payload gets to invalid UTF-8), ids replaced by odd numbers.  The
outcome asked for: nothing raises out of a parser or a listener (no ERROR logged: a
malformed payload is dropped cleanly, not by the catch-all), and whatever is handed to
the bridge is well formed (strings that can be stored and sent as UTF-8).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.commands.dispatch import parse_command
from bridge.commands.parse import Command
from bridge.commands.registry import REGISTRY

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- hostile values ---------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


HUGE = "x" * 1_000_000
DEEP = _nested(300)
ODD_TEXT = (
    HUGE,
    "\x00" * 8,
    "\ud800",
    "a\udfff\ud83d",
    "\u202e\u200b\ufeff",
    "<b>&amp;</b>",
    "```",
    "/new ../../etc",
    "\r\n\t\x1b[31m",
    "",
)
hostile_text = st.one_of(
    st.text(st.characters(blacklist_categories=()), max_size=40),
    st.sampled_from(ODD_TEXT),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    hostile_text,
)
json_any = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
junk = st.one_of(json_any, st.just(DEEP), st.sampled_from([[], {}, 0, -1, 2**63, 1e308]))


@st.composite
def mutated(draw: st.DrawFn, template: Any) -> Any:
    """`template` with fields dropped, retyped, or filled with hostile values."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                op = draw(st.integers(0, 11))
                if op == 0:
                    continue  # a missing field
                out[key] = draw(junk) if op == 1 else walk(item)
            if draw(st.integers(0, 9)) == 0:
                out[draw(st.text(max_size=8))] = draw(junk)
            return out
        if isinstance(value, list):
            return [walk(item) for item in value]
        op = draw(st.integers(0, 6))
        if op == 0:
            return draw(junk)
        if op == 1 and isinstance(value, str):
            return draw(hostile_text)
        if op == 2 and isinstance(value, int) and not isinstance(value, bool):
            return draw(st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**30]))
        return value

    return walk(template)


def well_formed(obj: Any) -> None:
    """Every string in what reaches the bridge can be stored and sent as UTF-8."""
    if obj is None:
        return
    if isinstance(obj, str):
        obj.encode("utf-8")
    elif isinstance(obj, bytes | int | float):
        return
    elif isinstance(obj, tuple | list):
        for item in obj:
            well_formed(item)
    elif isinstance(obj, dict):
        for key, item in obj.items():
            well_formed(key)
            well_formed(item)
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            well_formed(getattr(obj, f.name))
    else:
        raise AssertionError(f"unexpected {type(obj).__name__} handed to the bridge")


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_errors_logged(logger: str) -> Iterator[None]:
    """Fail if `logger` logs an ERROR (a listener's catch-all caught something)."""
    handler = _Errors()
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield
    finally:
        target.removeHandler(handler)
    if handler.records:
        r = handler.records[0]
        text = r.getMessage() + (
            "\n" + logging.Formatter().formatException(r.exc_info) if r.exc_info else ""
        )
        raise AssertionError(f"{r.name}: {text}")


# --- the command parser ---------------------------------------------------------------


@FUZZ
@given(text=st.one_of(hostile_text, st.from_regex(r"\A[/!][a-z_]{1,12}(@\w{0,6})?( .{0,40})?\Z")))
def test_parse_command_never_raises_and_names_a_known_command(text: str) -> None:
    cmd = parse_command(text, bot_username="threadline_bot")
    if cmd is None:
        return
    assert cmd.name in REGISTRY.names() | {"unknown", "ignored"}
    assert isinstance(cmd, Command) and cmd.prefix in "/!"
    # the properties the handlers read must not raise either
    for value in (cmd.arg, cmd.path, cmd.prompt, cmd.cron):
        assert value is None or isinstance(value, str)


def test_parse_command_on_a_megabyte() -> None:
    """No quadratic splitting: a megabyte of arguments parses at once."""
    texts = (HUGE, "/new " + HUGE, '/new "' + HUGE, "/schedule " + "* " * 300_000, "!get " + HUGE)
    for text in texts:
        cmd = parse_command(text)
        if cmd is not None:
            assert all(v is None or v in text for v in (cmd.path, cmd.prompt, cmd.arg))


# --- Telegram -----------------------------------------------------------------------------

TG_USER = {"id": 1001, "is_bot": False, "first_name": "Ada", "username": "ada"}
TG_CHAT = {"id": -100123, "type": "supergroup", "title": "Team", "is_forum": True}
TG_MESSAGE = {
    "update_id": 7,
    "message": {
        "message_id": 42,
        "date": 1_700_000_000,
        "chat": TG_CHAT,
        "from": TG_USER,
        "message_thread_id": 5,
        "is_topic_message": True,
        "text": "/new ~/code/app fix it",
        "entities": [{"type": "bot_command", "offset": 0, "length": 4}],
        "reply_to_message": {
            "message_id": 5,
            "date": 1_700_000_000,
            "chat": TG_CHAT,
            "forum_topic_created": {"name": "app", "icon_color": 7322096},
        },
        "document": {
            "file_id": "BQAD",
            "file_unique_id": "u1",
            "file_name": "../../etc/passwd",
            "mime_type": "text/plain",
            "file_size": 12,
        },
        "photo": [
            {"file_id": "AgAD", "file_unique_id": "p1", "width": 90, "height": 60, "file_size": 9},
        ],
    },
}
TG_CALLBACK = {
    "update_id": 8,
    "callback_query": {
        "id": "4382",
        "from": TG_USER,
        "chat_instance": "-77",
        "data": "p:abcdefghijklmnop:a",
        "message": {
            "message_id": 43,
            "date": 1_700_000_000,
            "chat": TG_CHAT,
            "message_thread_id": 5,
            "is_topic_message": True,
            "text": "🔐 Allow Write?",
        },
    },
}


def test_telegram_templates_parse() -> None:
    from telegram import Update

    from adapters.telegram import inbound

    parsed = inbound.parse_message(Update.de_json(TG_MESSAGE, None))
    assert parsed is not None and len(parsed.files) == 2 and parsed.message.thread.thread_id == "5"
    query = Update.de_json(TG_CALLBACK, None).callback_query
    assert query is not None and inbound.parse_callback(query) is not None


@FUZZ
@given(data=st.one_of(mutated(TG_MESSAGE), mutated(TG_CALLBACK)))
def test_telegram_updates(data: dict[str, Any]) -> None:
    from telegram import Update

    from adapters.telegram import inbound

    try:
        update = Update.de_json(data, None)
    except Exception:
        return  # refused by python-telegram-bot itself, before our code (see the e2e test)
    well_formed(inbound.parse_message(update))
    if update.callback_query is not None:
        well_formed(inbound.parse_callback(update.callback_query))


# --- Slack ----------------------------------------------------------------------------------

SL_MESSAGE = {
    "event_id": "Ev1",
    "event": {
        "type": "message",
        "channel": "C0THREADS1",
        "channel_type": "channel",
        "user": "U0ADA00001",
        "text": "<@UBOT> !new ~/code/app &lt;fix&gt; <https://x.org|x>",
        "ts": "1700000000.000100",
        "thread_ts": "1700000000.000001",
        "subtype": "file_share",
        "files": [
            {
                "id": "F1",
                "name": "../../x.txt",
                "mimetype": "text/plain",
                "size": 3,
                "url_private_download": "http://127.0.0.1:9/files/F1",
            }
        ],
    },
}
SL_ACTION = {
    "type": "block_actions",
    "trigger_id": "1.2",
    "user": {"id": "U0ADA00001", "username": "ada", "name": "ada"},
    "container": {
        "type": "message",
        "message_ts": "1700000000.000200",
        "channel_id": "C0THREADS1",
        "thread_ts": "1700000000.000001",
    },
    "channel": {"id": "C0THREADS1", "name": "threadline"},
    "message": {"ts": "1700000000.000200", "thread_ts": "1700000000.000001"},
    "actions": [{"action_id": "tl:0", "type": "button", "value": "p:abcdefghijklmnop:a"}],
}
SL_COMMAND = {
    "command": "/threadline",
    "text": "new ~/code/app hi",
    "user_id": "U0ADA00001",
    "user_name": "ada",
    "channel_id": "C0THREADS1",
    "trigger_id": "3.4",
}


class _Ack:
    """Stands in for Bolt's `ack` (the listener must call it first; not under test)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1


def _slack_receiver(delivered: list[Any]) -> Any:
    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.config import SlackConfig
    from adapters.slack.errors import SlackErrors
    from adapters.slack.receiver import Receiver

    def spawn(coro: Any) -> None:
        coro.close()  # display-name look-ups: not what is fuzzed here

    def no_web() -> AsyncWebClient:
        raise ConnectionRefusedError("no Slack Web API in this test")

    receiver = Receiver(
        SlackConfig(enabled=True, channel="C0THREADS1"), SlackErrors(["xoxb-x"]), no_web, spawn
    )
    receiver.bot_user_id = "UBOT"

    async def sink(event: Any) -> None:
        delivered.append(event)

    receiver.sink = sink
    return receiver


def _run_slack(message: Any, action: Any, command: Any) -> list[Any]:
    delivered: list[Any] = []
    receiver = _slack_receiver(delivered)
    receiver.names = {"U0ADA00001": "Ada"}

    async def run() -> None:
        ack = _Ack()
        await receiver.on_message(message)
        await receiver.on_action(ack, action)
        await receiver.on_command(ack, command)
        assert ack.calls == 2, "acknowledged before anything else"

    with no_errors_logged("adapters.slack"):
        asyncio.run(run())
    return delivered


def test_slack_templates_are_delivered() -> None:
    """The unmutated payloads reach the sink: the fuzz below is not vacuous."""
    message = {**SL_MESSAGE, "event": {**SL_MESSAGE["event"], "files": []}}
    got = _run_slack(message, SL_ACTION, SL_COMMAND)
    assert [type(e).__name__ for e in got] == ["UserMessage", "ButtonPress", "UserMessage"]


@FUZZ
@given(message=mutated(SL_MESSAGE), action=mutated(SL_ACTION), command=mutated(SL_COMMAND))
def test_slack_listeners(
    message: dict[str, Any], action: dict[str, Any], command: dict[str, Any]
) -> None:
    from adapters.slack import inbound

    delivered = _run_slack(message, action, command)
    for body in (message, action, command):
        well_formed(inbound.parse_block_actions(body))
        well_formed(inbound.parse_slash_command(body))
        well_formed(inbound.dedupe_key(body))
        well_formed(inbound.parse_message_event(body, bot_user_id="UBOT"))
    event = message.get("event")
    if isinstance(event, dict):
        well_formed(inbound.parse_message_event(event, bot_user_id="UBOT"))
    well_formed(delivered)


# --- Matrix -------------------------------------------------------------------------------

MX_BOT = "@bot:localhost"
MX_OWNER = "@ada:localhost"
MX_ROOM = "!room:localhost"


def _mx_message(now_ms: int, msgtype: str = "m.text") -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": "$msg1",
        "sender": MX_OWNER,
        "origin_server_ts": now_ms,
        "unsigned": {"age": 1},
        "content": {
            "msgtype": msgtype,
            "body": "> <@x:y> quoted\n\nnew ~/code/app",
            "filename": "../../etc/passwd",
            "url": "mxc://localhost/abc",
            "info": {"mimetype": "text/plain", "size": 3},
            "file": {"url": "mxc://localhost/abc", "key": {"k": "x"}, "iv": "y", "hashes": {}},
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": "$root",
                "is_falling_back": False,
                "m.in_reply_to": {"event_id": "$prompt"},
            },
        },
    }


def _mx_reaction(now_ms: int) -> dict[str, Any]:
    return {
        "type": "m.reaction",
        "event_id": "$re1",
        "sender": MX_OWNER,
        "origin_server_ts": now_ms,
        "content": {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": "$prompt", "key": "✅"}
        },
    }


def _mx_sync(events: list[Any], room: str = MX_ROOM) -> dict[str, Any]:
    member = {
        "type": "m.room.member",
        "state_key": MX_OWNER,
        "sender": MX_OWNER,
        "event_id": "$m1",
        "origin_server_ts": 1,
        "content": {"membership": "join"},
    }
    bot_member = dict(member, state_key=MX_BOT, sender=MX_BOT, event_id="$m2")
    return {
        "next_batch": "s1",
        "rooms": {
            "join": {
                room: {
                    "state": {"events": [member, bot_member]},
                    "timeline": {"events": events, "limited": False, "prev_batch": "p0"},
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


# A day ahead: "after the receiver started" however late in a long run a test is.
_NOW_MS = int(time.time() * 1000) + 86_400_000


@FUZZ
@given(
    event=st.one_of(
        mutated(_mx_message(_NOW_MS, "m.file")),
        mutated(_mx_message(_NOW_MS, "m.image")),
        mutated(_mx_reaction(_NOW_MS)),
    )
)
def test_matrix_event_parsers(event: dict[str, Any]) -> None:
    from adapters.matrix import inbound

    well_formed(inbound.parse_message(MX_ROOM, event, own_user=MX_BOT))
    well_formed(inbound.parse_reaction(MX_ROOM, event, own_user=MX_BOT))


@settings(FUZZ, max_examples=60)
@given(
    events=st.lists(
        st.one_of(mutated(_mx_message(_NOW_MS)), mutated(_mx_reaction(_NOW_MS))),
        min_size=1,
        max_size=3,
    )
)
def test_matrix_sync_events(events: list[Any]) -> None:
    """Timeline events as nio parses them from a sync, then our receiver (text
    messages and reactions: attachments would be downloaded, so files are fuzzed at
    the parser only)."""
    well_formed(_run_matrix(events))


def test_matrix_templates_are_delivered() -> None:
    got = _run_matrix([_mx_message(_NOW_MS), _mx_reaction(_NOW_MS)])
    assert [type(e).__name__ for e in got] == ["UserMessage", "ButtonPress"]


def _run_matrix(events: list[Any], room: str = MX_ROOM) -> list[Any]:
    """`events` in one sync of `room` through nio and our receiver, which knows one
    prompt (``$prompt`` in `MX_ROOM`, ✅ → Allow); what it delivered."""
    from nio import AsyncClient, AsyncClientConfig, SyncResponse

    from adapters.matrix.buttons import ButtonMap, Entry
    from adapters.matrix.errors import MatrixErrors
    from adapters.matrix.receiver import Receiver

    delivered: list[Any] = []

    async def run() -> None:
        client = AsyncClient(
            "http://127.0.0.1:9",
            MX_BOT,
            device_id="BOTDEV",
            config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False),
        )
        buttons = ButtonMap(None)
        buttons.set("$prompt", Entry(MX_ROOM, "$root", (("✅", "p:abcdefghijklmnop:a"),)))

        async def deliver(event: Any) -> None:
            delivered.append(event)

        async def pace() -> None:
            return None

        receiver = Receiver(
            client,
            owners=[MX_OWNER],
            encryption="optional",
            buttons=buttons,
            errors=MatrixErrors(),
            deliver=deliver,
            notify=lambda room, text: None,
            pace=pace,
        )
        try:
            resp = SyncResponse.from_dict(_mx_sync(events, room))
        except Exception:
            return  # refused by matrix-nio as a whole response
        try:
            await client.receive_response(resp)
            await receiver.handle(resp)
        finally:
            await client.close()

    with no_errors_logged("adapters.matrix"):
        asyncio.run(run())
    return delivered


# --- end to end: the real bridge on Telegram ----------------------------------------------------


@pytest.fixture()
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """The Telegram harness with no room for sessions (so a fuzzed `/new .` is
    answered, not run) and rate limits out of the way (so replies don't queue)."""
    from adapters.telegram import limits
    from tests.support.harness import start_harness, stop_harness

    fast = dataclasses.replace(limits.CAPABILITIES, per_chat_rate=200.0, per_chat_burst=200)
    monkeypatch.setattr(limits, "CAPABILITIES", fast)
    harness = await start_harness(tmp_path, agent_extra={"max_concurrent_sessions": 0})
    harness.tg.set_rate_limits(enabled=False)
    yield harness
    await stop_harness(harness)


def _inbound_events() -> st.SearchStrategy[Any]:
    from adapters.messages import ButtonPress, Sender, ThreadRef, UserMessage
    from tests.support.harness import OWNER, STRANGER

    people = st.sampled_from([OWNER, OWNER, STRANGER, 4242])
    commands = st.builds(
        lambda prefix, name, rest: f"{prefix}{name} {rest}",
        st.sampled_from("/!"),
        st.sampled_from(sorted(REGISTRY.names()) + ["nope", "NEW", "help@other_bot", "start"]),
        hostile_text,
    )
    texts = st.one_of(hostile_text, commands)
    data = st.one_of(
        hostile_text,
        st.builds(
            lambda k, rest: f"{k}:{rest}", st.sampled_from(list("pxmni") + ["", "zz"]), hostile_text
        ),
    )

    def message(user: int, text: str, thread: int | None) -> UserMessage:
        return UserMessage(
            ThreadRef("telegram", str(user), str(thread) if thread else None),
            Sender("telegram", str(user), "Fuzz"),
            text,
            message_id="1",
        )

    def press(user: int, value: str, thread: int | None) -> ButtonPress:
        return ButtonPress(
            ThreadRef("telegram", str(user), str(thread) if thread else None),
            Sender("telegram", str(user), "Fuzz"),
            message_id="1",
            data=value,
        )

    threads = st.one_of(st.none(), st.none(), st.integers(1, 5))
    return st.one_of(
        st.builds(message, people, texts, threads), st.builds(press, people, data, threads)
    )


def _outbox_rows(h: Any) -> int:
    from sqlmodel import func, select

    from storage.models import OutboxRow

    with h.db.session() as s:
        return int(s.exec(select(func.count()).select_from(OutboxRow)).one())


async def test_arbitrary_input_through_the_bridge(h: Any) -> None:
    """Owner and strangers send arbitrary text and button data: each is answered
    (an outbox row) or refused and audited, nothing escapes, and `/help` still works."""
    from adapters import payload
    from adapters.messages import ButtonPress, Sender, ThreadRef, UserMessage
    from tests.support.harness import OWNER

    loop = asyncio.get_running_loop()
    bot = h.bridge.adapters["telegram"].username

    def told(needle: str) -> list[Any]:
        return [m for m in h.bot_messages() if needle in (m.visible_text or "")]

    def trace() -> tuple[int, int]:
        return _outbox_rows(h), len([r for r in h.db.audit.recent(1000) if not r.allowed])

    async def one(event: UserMessage | ButtonPress) -> None:
        event = payload.clean(event)  # as every adapter's inbound.py hands it over
        before = trace()
        await h.bridge.on_inbound(event)
        owner = event.sender.user_id == str(OWNER)
        if isinstance(event, UserMessage) and owner:
            cmd = parse_command(event.text, bot_username=bot)
            if cmd is not None and cmd.name == "ignored":
                return
            if cmd is not None and cmd.name == "unknown" and event.thread.thread_id is None:
                unknown = len(told("Unknown command"))

                # a malformed command is told so, in the chat it came from
                def answered() -> bool:
                    return len(told("Unknown command")) > unknown
            else:
                # the owner is always answered: a reply, a refusal, a notice
                def answered() -> bool:
                    return trace()[0] > before[0]
        else:
            # a button (anyone's) or a stranger: answered or refused with an audit row
            def answered() -> bool:
                return trace() != before

        try:
            await h.tg.wait_until(lambda: answered() or None, timeout=10)
        except TimeoutError:
            raise AssertionError(f"no answer and no audit row for {event!r}") from None

    def owner_says(text: str) -> UserMessage:
        owner = Sender("telegram", str(OWNER), "Ada")
        return UserMessage(ThreadRef("telegram", str(OWNER)), owner, text, message_id="1")

    @settings(FUZZ, max_examples=60)
    @given(event=_inbound_events())
    @example(event=owner_says("/nope --x"))
    @example(event=owner_says("!NEW\x00 \ud800"))
    @example(event=owner_says("/help@other_bot"))
    @example(event=owner_says("x" * 1_000_000))
    def run(event: UserMessage | ButtonPress) -> None:
        asyncio.run_coroutine_threadsafe(one(event), loop).result(timeout=60)

    with no_errors_logged("bridge"), no_errors_logged("adapters"):
        await asyncio.to_thread(run)
        h.say("/help")
        await h.wait_text("interrupt the running turn")


async def test_malformed_updates_oversized_text_and_binary_junk(h: Any) -> None:
    """Through python-telegram-bot's polling: updates it cannot parse, a 1 MB
    message, a document of random bytes and control characters — then `/help`."""
    import os

    from tests.support.harness import OWNER

    with no_errors_logged("bridge"), no_errors_logged("adapters"):
        for raw in (
            {"message": {"message_id": 1, "date": 1, "chat": "not a chat"}},
            {"message": {"message_id": "x", "chat": {"id": OWNER, "type": "private"}}},
            {"callback_query": {"id": 5, "from": None, "data": {"a": 1}}},
            {"message": DEEP},
            {"edited_message": {"message_id": 1}},
            {"unknown_kind": [1, 2, 3]},
        ):
            h.tg.push_update(raw)
        h.say("x" * 1_000_000)
        h.tg.user_document(OWNER, OWNER, os.urandom(4096), file_name="../../\x00junk.bin")
        h.say("\x00\x01\x02\x7f\x1b[2J" + bytes(range(256)).decode("latin-1"))
        await h.tg.wait_until(
            lambda: (
                len([m for m in h.bot_messages() if "Start a session" in m.visible_text]) >= 3
                or None
            ),
            timeout=30,
        )
        h.say("/help")
        await h.wait_text("interrupt the running turn")


def test_matrix_display_names_are_scrubbed_on_presses_too() -> None:
    """A reaction's presser is named from room state (receiver.py builds the press):
    a lone surrogate in a display name must not reach the database."""
    from adapters.matrix import inbound

    sender = inbound.sender_of("@ada:localhost", "Ada\ud800")
    assert sender.display_name == "Ada\ufffd"
    well_formed(sender)
