"""`[daemon] host`: the default made from the machine's hostname, what a valid name is
(each problem one plain line), `threadline doctor`'s line for it, and how `hosts` and
`sessions` word hosts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.messages import Markdown, Outbound
from bridge import render
from bridge.cli.doctor import _core_checks
from bridge.commands.hosts import ago, hosts_message
from bridge.config import ConfigError, parse_config
from bridge.host_name import clean_host_name, default_host_name
from bridge.hosts import HostStatus

TELEGRAM = '[telegram]\nenabled = true\ntoken = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ"\n'
NOW = datetime(2026, 12, 7, 22, 0, 0, tzinfo=UTC)


def test_host_is_kept_as_written() -> None:
    cfg = parse_config('[daemon]\nhost = "laptop"\n' + TELEGRAM)
    assert cfg.daemon.host == "laptop"
    assert parse_config('[daemon]\nhost = "build-box-2"\n' + TELEGRAM).daemon.host == "build-box-2"
    assert parse_config('[daemon]\nhost = "' + "a" * 32 + '"\n' + TELEGRAM).daemon.host == "a" * 32


def test_the_default_is_the_hostname_cleaned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "Ada's-MacBook-Pro.local")
    assert default_host_name() == "ada-s-macbook-pro"
    assert parse_config(TELEGRAM).daemon.host == "ada-s-macbook-pro"


@pytest.mark.parametrize(
    ("hostname", "name"),
    [
        ("laptop", "laptop"),
        ("WORKSTATION", "workstation"),
        ("ip-10-0-1-17.eu-west-1.compute.internal", "ip-10-0-1-17"),
        ("my_box", "my-box"),
        ("--odd--", "odd"),
        ("", "localhost"),
        ("...", "localhost"),
        ("ünïcode", "n-code"),
        ("x" * 40 + "-y", "x" * 32),
        ("a" * 31 + "_b", "a" * 31),  # never ends in '-' after the cut
    ],
)
def test_clean_host_name(hostname: str, name: str) -> None:
    assert clean_host_name(hostname) == name


@pytest.mark.parametrize(
    "value",
    ['"Laptop"', '"my_box"', '""', '"laptop:1"', '"' + "a" * 33 + '"', '"two words"'],
)
def test_a_bad_host_is_one_clear_line(value: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(f"[daemon]\nhost = {value}\n" + TELEGRAM)
    [line] = e.value.lines
    assert line.startswith(f"daemon.host: {value.replace(chr(34), chr(39))} is not a host name")
    assert "1–32 characters of a-z, 0-9 and '-'" in line and "\n" not in line
    assert "Value error" not in line


def test_a_host_that_is_not_a_string_is_one_line() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("[daemon]\nhost = 5\n" + TELEGRAM)
    assert e.value.lines == ["daemon.host: Input should be a valid string (got 5)"]


def test_doctor_names_the_host(tmp_path: Path) -> None:
    cfg = parse_config(
        f'[storage]\nurl = "sqlite:///{tmp_path}/t.db"\n'
        f'[agent]\nallowed_roots = ["{tmp_path}"]\n[daemon]\nhost = "laptop"\n' + TELEGRAM
    )
    results = _core_checks(cfg)
    assert [(r.status, r.what) for r in results if r.what.startswith("host")] == [
        ("ok", "host laptop")
    ]


def md(out: Outbound) -> str:
    return "\n".join(b.text for b in out.blocks if isinstance(b, Markdown))


def test_ago() -> None:
    assert ago(NOW, NOW) == "0 s ago"
    assert ago(NOW - timedelta(seconds=12.7), NOW) == "12 s ago"
    assert ago(NOW - timedelta(minutes=5, seconds=3), NOW) == "5 min ago"
    assert ago(NOW - timedelta(hours=3), NOW) == "3 h ago"
    assert ago(NOW - timedelta(days=2, hours=1), NOW) == "2 d ago"
    assert ago(NOW + timedelta(seconds=2), NOW) == "0 s ago"  # a clock slightly ahead
    assert ago(NOW.replace(tzinfo=None) - timedelta(seconds=3), NOW) == "3 s ago"


def test_hosts_message() -> None:
    hosts = [
        HostStatus("laptop", ("/home/ada/code",), NOW, None, online=True, this=True),
        HostStatus("box", ("/srv", "/b`x"), NOW - timedelta(seconds=40), None, False, False),
        HostStatus("old_vm", (), NOW - timedelta(days=3), NOW - timedelta(days=2), False, False),
    ]
    gateways = {"laptop": ["slack:T1-B1", "telegram:42"]}
    text = md(
        hosts_message(
            hosts, Counter(laptop=2, box=1), Counter(laptop=1), now=NOW, gateways=gateways
        )
    )
    assert text.splitlines() == [
        "**Hosts** (3)",
        "🟢 **laptop** · online · heartbeat 0 s ago · this host · 2 sessions (1 running)"
        " · gateway for `slack:T1-B1`, `telegram:42` · roots `/home/ada/code`",
        "🔴 **box** · offline · last heartbeat 40 s ago · 1 session · roots `/srv`, `/bx`",
        "⚫ **old\\_vm** · offline (stopped 2 d ago) · 0 sessions · roots none",
    ]
    assert "No hosts" in md(hosts_message([], Counter(), Counter(), now=NOW))


def test_sessions_name_the_host_only_when_given() -> None:
    row = render.SessionSummary("abc123", "t", "/srv/app", "active", NOW, 0.0)
    assert " on " not in md(render.sessions_message([row], platform="telegram", now=NOW))
    on = render.SessionSummary("abc123", "t", "/srv/app", "active", NOW, 0.0, host="box")
    assert "· on box · `/srv/app`" in md(
        render.sessions_message([on], platform="telegram", now=NOW)
    )
    off = render.SessionSummary(
        "abc123", "t", "/srv/app", "active", NOW, 0.0, host="box", host_online=False
    )
    text = md(render.sessions_message([off], platform="telegram", now=NOW))
    assert "· on box (host offline) · `/srv/app`" in text
