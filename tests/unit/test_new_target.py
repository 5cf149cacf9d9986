"""`new [--worktree] [HOST:][PATH] [PROMPT]`: which part is a host, which a path.

The rule (`bridge/commands/parse.py` `split_host`): `HOST:` is a host only when HOST
is a known host name; a ":" after a "/" is part of a path; an unknown name before a
path-like rest (`~`, `/`, `.`) was meant as a host and is reported; a quoted first
word or `./a:b` is always a path."""

from __future__ import annotations

import pytest

from bridge.commands.dispatch import parse_command
from bridge.commands.parse import NewTarget

HOSTS = ("laptop", "box")


def target(text: str) -> NewTarget:
    cmd = parse_command(text)
    assert cmd is not None and cmd.name == "new"
    return cmd.new_target(HOSTS)


@pytest.mark.parametrize(
    ("text", "host", "path", "prompt"),
    [
        ("/new box:~/code/app fix the test", "box", "~/code/app", "fix the test"),
        ("/new BOX:app fix it", "box", "app", "fix it"),
        ("/new box: hello", "box", None, "hello"),  # that host's picker
        ("/new box:", "box", None, ""),
        ("/new laptop:/srv/a:b go", "laptop", "/srv/a:b", "go"),
        ("/new ~/code/a:b go", None, "~/code/a:b", "go"),  # ":" after "/": a path
        ("/new /tmp/x:y", None, "/tmp/x:y", ""),
        ("/new ./a:b go", None, "./a:b", "go"),
        ('/new "box:app" go', None, "box:app", "go"),  # quoted: a path as typed
        ("/new note: remember this", None, None, "note: remember this"),  # a prompt
        ("/new https://x.example/a is down", None, None, "https://x.example/a is down"),
        ("/new ~/code/app", None, "~/code/app", ""),
    ],
)
def test_host_or_path(text: str, host: str | None, path: str | None, prompt: str) -> None:
    got = target(text)
    assert (got.host, got.path, got.prompt, got.unknown_host) == (host, path, prompt, None)


def test_an_unknown_host_before_a_path_is_reported() -> None:
    got = target("/new bxo:~/code fix")
    assert got.unknown_host == "bxo" and got.host is None


def test_worktree_flag_is_parsed_and_the_rest_stays_the_same() -> None:
    got = target("/new --worktree box:~/code/app go on")
    assert got.worktree and (got.host, got.path, got.prompt) == ("box", "~/code/app", "go on")
    assert not target("/new --worktreeish").worktree
