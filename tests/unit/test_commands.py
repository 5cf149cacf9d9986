"""Chat commands: one declaration in the registry feeds the parser, `help`, Telegram's
"/" menu and Slack's `/threadline`; the parser's prefixes, bot addressing, arguments and
typed accessors."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.messages import Markdown, Outbound, Sender, ThreadRef, UserMessage
from adapters.slack.inbound import parse_slash_command
from adapters.telegram import client as telegram_client
from agent.permissions import MODES, OFFERED_MODES
from bridge import render
from bridge.commands.context import CommandContext, Services
from bridge.commands.dispatch import Commands, menu, parse_command
from bridge.commands.help import cmd_help, help_message
from bridge.commands.parse import Command
from bridge.commands.registry import REGISTRY, Registry, Section, command
from bridge.commands.turn import MODE_LABELS


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "fix the failing test",
        "/",
        "!",
        "/ new",
        "!!!",
        "/home/me/app is broken",
        "/etc/hosts?",
        "//new",
    ],
)
def test_plain_text_is_not_a_command(text: str) -> None:
    assert parse_command(text) is None


@pytest.mark.parametrize("text", ["/stop", "!stop", "/STOP", "!Stop", "  /stop  ", "/stop\n"])
def test_prefixes_and_case(text: str) -> None:
    cmd = parse_command(text)
    assert cmd is not None and cmd.name == "stop" and cmd.args == ()


def test_prefix_is_kept() -> None:
    assert parse_command("!help") == Command("help", (), "", "help", "!")


def test_bot_addressing() -> None:
    assert parse_command("/stop@ThreadlineBot", bot_username="threadlinebot").name == "stop"  # type: ignore[union-attr]
    assert parse_command("/stop@threadlinebot", bot_username="@ThreadlineBot").name == "stop"  # type: ignore[union-attr]
    other = parse_command("/stop@OtherBot", bot_username="threadlinebot")
    assert other is not None and other.name == "ignored" and other.original == "stop"
    assert parse_command("/stop@anybot").name == "stop"  # type: ignore[union-attr]  # name unknown: accept


def test_unknown_command_keeps_original_name() -> None:
    cmd = parse_command("/Frobnicate now please")
    assert cmd is not None
    assert (cmd.name, cmd.original, cmd.args, cmd.rest) == (
        "unknown",
        "frobnicate",
        ("now", "please"),
        "now please",
    )


def test_start_deep_link_pairs() -> None:
    assert parse_command("/start").name == "help"  # type: ignore[union-attr]
    cmd = parse_command("/start ABC123")
    assert cmd is not None and cmd.name == "pair" and cmd.arg == "ABC123"


@pytest.mark.parametrize(
    "text, path, prompt",
    [
        ("/new ~/code/app fix the failing test", "~/code/app", "fix the failing test"),
        ("/new fix the failing test", None, "fix the failing test"),
        ("/new", None, ""),
        ("/new .", ".", ""),
        ("/new ./app", "./app", ""),
        ("/new /srv/app  run   it", "/srv/app", "run   it"),
        ("/new code/app hi", "code/app", "hi"),
        ('/new "~/My Projects/app" what does main do?', "~/My Projects/app", "what does main do?"),
        ("/new '~/a b' x", "~/a b", "x"),
        ("/new ~/app don't break it", "~/app", "don't break it"),
        ("/new ~/app first line\nsecond line", "~/app", "first line\nsecond line"),
        ("/new https://example.com is down, why?", None, "https://example.com is down, why?"),
        ("/new app", None, "app"),
    ],
)
def test_new_path_and_prompt(text: str, path: str | None, prompt: str) -> None:
    cmd = parse_command(text)
    assert cmd is not None and cmd.name == "new"
    assert (cmd.path, cmd.prompt) == (path, prompt)


@pytest.mark.parametrize(
    "text, cron, prompt",
    [
        ('/schedule "0 9 * * 1-5" run the tests', "0 9 * * 1-5", "run the tests"),
        ("/schedule 0 9 * * 1-5 run the tests", "0 9 * * 1-5", "run the tests"),
        ("/schedule */15 * * * MON-FRI check CI", "*/15 * * * MON-FRI", "check CI"),
        ("/schedule @daily summarize yesterday", "0 0 * * *", "summarize yesterday"),
        ("/schedule every day at 9 run tests", None, "every day at 9 run tests"),
        ('/schedule "0 9 * *" run', None, "run"),
        ("/schedule", None, ""),
    ],
)
def test_schedule(text: str, cron: str | None, prompt: str) -> None:
    cmd = parse_command(text)
    assert cmd is not None and cmd.name == "schedule"
    assert (cmd.cron, cmd.prompt) == (cron, prompt)


def test_get_path_with_spaces() -> None:
    assert parse_command('/get "docs/My Notes.md"').path == "docs/My Notes.md"  # type: ignore[union-attr]
    assert parse_command("/get docs/My Notes.md").path == "docs/My Notes.md"  # type: ignore[union-attr]
    assert parse_command("/get").path is None  # type: ignore[union-attr]


def test_single_argument_commands() -> None:
    assert parse_command("/mode acceptEdits").arg == "acceptEdits"  # type: ignore[union-attr]
    assert parse_command("/model claude-opus-4").arg == "claude-opus-4"  # type: ignore[union-attr]
    assert parse_command("!resume 7f3a").arg == "7f3a"  # type: ignore[union-attr]
    assert parse_command("/unschedule 4").arg == "4"  # type: ignore[union-attr]
    assert parse_command("/mode").arg is None  # type: ignore[union-attr]
    assert parse_command("/stop").path is None and parse_command("/stop").cron is None  # type: ignore[union-attr]


def test_unbalanced_quotes_fall_back_to_whitespace() -> None:
    assert parse_command('/model "opus').args == ('"opus',)  # type: ignore[union-attr]


def test_help_covers_every_command_and_fits_the_telegram_menu() -> None:
    assert REGISTRY.names() == {
        "new", "stop", "mode", "model", "diff", "cost", "end", "resume", "sessions", "import",
        "get", "handoff", "schedule", "schedules", "unschedule", "trust", "untrust", "pair", "rules",
        "hosts",
        "help",
    }  # fmt: skip
    for spec in REGISTRY.commands():
        name = spec.name
        assert name.islower() and len(name) <= 32 and name.replace("_", "").isalnum()
        assert 3 <= len(spec.help) <= 256
        assert parse_command("/" + spec.synopsis).name == name  # type: ignore[union-attr]
    assert {c.name for c in menu()} == REGISTRY.names() - {"pair", "trust", "untrust", "rules"}
    kinds = {"p", "x", "m", "n", "i", "t", "r", "q", "l", "rp", "nd", "nh", "sas"}
    assert REGISTRY.button_kinds() == kinds


def test_permission_modes_have_one_source() -> None:
    assert set(OFFERED_MODES) <= MODES
    assert tuple(MODE_LABELS) == OFFERED_MODES  # a mode button carries its index
    mode = REGISTRY.get("mode")
    # help names every mode but bypassPermissions (offered only where allow_bypass)
    safe = tuple(m for m in OFFERED_MODES if m != "bypassPermissions")
    assert mode is not None and mode.help.endswith(", ".join(safe))


def test_help_message() -> None:
    text = md(help_message("!", [c.chat_command() for c in REGISTRY.commands()]))
    assert (
        "`!new [HOST:][PATH] [PROMPT]` — start a session" in text and "`!help` — this list" in text
    )
    lines = text.splitlines()[1:]
    assert len(lines) == len(REGISTRY.names())
    assert lines[0].startswith("`!new ") and lines[-1].startswith("`!help`")


class _Replies:
    """The one service `help` uses: what it replied, and where."""

    def __init__(self) -> None:
        self.sent: list[tuple[ThreadRef, Outbound]] = []

    def reply(
        self, thread: ThreadRef, msg: Outbound, *, session_id: str | None = None
    ) -> list[int]:
        self.sent.append((thread, msg))
        return [len(self.sent)]


def md(msg: Outbound) -> str:
    assert isinstance(msg.blocks[0], Markdown)
    return msg.blocks[0].text


async def test_one_declaration_feeds_parser_help_and_both_menus() -> None:
    """A command declared once (here in a registry of its own, next to `help`) is parsed,
    run, listed by `help`, offered in Telegram's "/" menu and reachable — with its help —
    through Slack's `/threadline`."""
    registry = Registry()
    ran: list[Command] = []

    @command(
        "ping",
        usage="[N]",
        help="answer pong N times",
        section=Section.TURN,
        registry=registry,
    )
    async def ping(ctx: CommandContext) -> None:
        ran.append(ctx.command)
        ctx.reply(render.notice("pong"))

    command("help", help="this list", section=Section.HELP, registry=registry)(cmd_help)
    replies = _Replies()
    commands = Commands(cast(Services, replies), registry=registry)

    # the parser
    cmd = parse_command("/PING 3", registry=registry)
    assert cmd is not None and cmd.name == "ping" and cmd.arg == "3"
    assert parse_command("/ping 3").name == "unknown"  # type: ignore[union-attr]
    owner = Sender("telegram", "1", "Ada")
    here = ThreadRef("telegram", "1")
    await commands.command(cmd, UserMessage(here, owner, "/PING 3", "m1"), None)
    assert [c.args for c in ran] == [("3",)] and md(replies.sent[-1][1]) == "pong"

    # help (on Telegram, "/" commands)
    asked = parse_command("/help", registry=registry)
    assert asked is not None
    await commands.command(asked, UserMessage(here, owner, "/help", "m2"), None)
    assert md(replies.sent[-1][1]).splitlines() == [
        "**Commands**",
        "`/ping [N]` — answer pong N times",
        "`/help` — this list",
    ]

    # Telegram's "/" menu
    offered = telegram_client.menu(menu(registry))
    assert [(c.command, c.description) for c in offered] == [
        ("ping", "[N] — answer pong N times"),
        ("help", "this list"),
    ]

    # Slack's `/threadline ping 3`, and `/threadline` alone for the help
    slack = {"command": "/threadline", "user_id": "U1", "channel_id": "C1", "trigger_id": "t"}
    typed = parse_slash_command({**slack, "text": "ping 3"})
    assert typed is not None
    cmd = parse_command(typed.text, registry=registry)
    assert cmd is not None and cmd.name == "ping" and cmd.prefix == "!"
    await commands.command(cmd, typed, None)
    assert [c.args for c in ran] == [("3",), ("3",)]
    bare = parse_slash_command({**slack, "text": ""})
    assert bare is not None
    asked = parse_command(bare.text, registry=registry)
    assert asked is not None and asked.name == "help"
    await commands.command(asked, bare, None)
    assert "`!ping [N]` — answer pong N times" in md(replies.sent[-1][1])


@settings(max_examples=500)
@given(
    st.text(),
    st.sampled_from(["", "/", "!", "/new ", "/schedule ", "/get ", '/new "', "/x@"]),
    st.text(max_size=10),
)
def test_never_raises(text: str, prefix: str, bot: str) -> None:
    cmd = parse_command(prefix + text, bot_username=bot)
    if cmd is not None:
        assert cmd.name in REGISTRY.names() | {"unknown", "ignored"}
        cmd.path, cmd.prompt, cmd.cron, cmd.arg  # noqa: B018 - accessors must not raise either


def test_huge_and_control_input() -> None:
    huge = "/new ~/app " + "word \x00\x1b\u202e " * 100_000
    cmd = parse_command(huge)
    assert cmd is not None and cmd.path == "~/app" and len(cmd.prompt) > 500_000
    assert parse_command("/" + "a" * 1_000_000).name == "unknown"  # type: ignore[union-attr]
    assert parse_command('/schedule "' + "x" * 200_000).cron is None  # type: ignore[union-attr]


def test_long_single_token_is_fast() -> None:
    import time

    start = time.perf_counter()
    cmd = parse_command("/new ~/a " + "x" * 5_000_000)
    assert cmd is not None and cmd.path == "~/a" and len(cmd.args) == 2
    assert parse_command('/new "' + "x" * 5_000_000).path is None  # type: ignore[union-attr]
    assert time.perf_counter() - start < 5
