"""The chat command parser: prefixes, bot addressing, arguments, typed accessors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.commands.parse import COMMAND_NAMES, HELP, Command, parse_command


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
    assert COMMAND_NAMES == {
        "new", "stop", "mode", "model", "diff", "cost", "end", "resume", "sessions", "import",
        "get", "handoff", "schedule", "schedules", "unschedule", "trust", "untrust", "pair", "rules",
        "help",
    }  # fmt: skip
    for usage, description in HELP:
        name = usage.split()[0]
        assert name.islower() and len(name) <= 32 and name.replace("_", "").isalnum()
        assert 3 <= len(description) <= 256
        assert parse_command("/" + usage).name == name  # type: ignore[union-attr]


@settings(max_examples=500)
@given(
    st.text(),
    st.sampled_from(["", "/", "!", "/new ", "/schedule ", "/get ", '/new "', "/x@"]),
    st.text(max_size=10),
)
def test_never_raises(text: str, prefix: str, bot: str) -> None:
    cmd = parse_command(prefix + text, bot_username=bot)
    if cmd is not None:
        assert cmd.name in COMMAND_NAMES | {"unknown", "ignored"}
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
