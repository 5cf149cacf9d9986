"""Config loading: env substitution, validation errors as one clear line each."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config

GOOD = """
[access]
owners = ["telegram:42"]
[telegram]
enabled = true
token = "${TL_TEST_TOKEN}"
"""


def test_env_substitution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_TEST_TOKEN", "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    cfg = parse_config(GOOD)
    assert cfg.telegram.token == "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert cfg.agent.permission_timeout_s == 600
    assert cfg.telegram.token in cfg.secrets()


def test_missing_env_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TL_TEST_TOKEN", raising=False)
    with pytest.raises(ConfigError) as e:
        parse_config(GOOD)
    assert "telegram.token: environment variable TL_TEST_TOKEN is not set" in e.value.lines


def test_placeholders_in_disabled_sections_are_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TL_TEST_TOKEN", "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    cfg = parse_config(GOOD + '\n[slack]\nenabled = false\nbot_token = "${NOT_SET_ANYWHERE}"\n')
    assert cfg.slack.enabled is False


def test_every_problem_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
[agent]
permission_mode = "bypassPermissions"
permission_timeout_s = -1
[access]
owners = ["irc:bob"]
[telegram]
enabled = true
token = "nope"
colour = "blue"
"""
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    joined = "\n".join(e.value.lines)
    assert "agent.permission_timeout_s" in joined
    assert "access.owners" in joined
    assert "telegram.colour" in joined


def test_semantic_checks() -> None:
    text = """
[agent]
permission_mode = "bypassPermissions"
[access]
owners = []
[telegram]
enabled = true
token = "nope"
"""
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    joined = "\n".join(e.value.lines)
    assert "allow_bypass" in joined
    assert "telegram.token: not a bot token" in joined
    assert "access.owners" not in joined, "no owners is allowed: `threadline pair` adds them"


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("[agent\n")
    assert "not valid TOML" in e.value.lines[0]
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "nope.toml")
    assert "threadline init" in e.value.lines[0]


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    cfg = load_config(example)
    assert cfg.telegram.enabled and not cfg.slack.enabled


def test_matrix_rate_keys_reach_the_adapter(tmp_path: Path) -> None:
    """A homeserver with other limits than Synapse's default rc_message (0.2/s, burst
    10) is configured in `[matrix]`; the adapter paces by it."""
    from adapters.matrix.adapter import MatrixAdapter

    base = f"""
[access]
owners = ["matrix:@ada:example.org"]
[matrix]
enabled = true
homeserver = "http://127.0.0.1:9"
user_id = "@bot:example.org"
password = "pw"
store_path = "{tmp_path}/store"
"""
    default = MatrixAdapter(parse_config(base).matrix)
    assert (default.rate.per_second, default.rate.burst) == (0.2, 10)
    tuned = MatrixAdapter(parse_config(base + "rate_per_second = 2.5\nrate_burst = 30\n").matrix)
    assert (tuned.rate.per_second, tuned.rate.burst) == (2.5, 30)
    assert tuned.capabilities.per_chat_rate == 2.5
    with pytest.raises(ConfigError) as e:
        parse_config(base + "rate_per_second = 0\n")
    assert any("matrix.rate_per_second" in line for line in e.value.lines)


def test_platform_sections_come_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each platform's section is its package's config model; the core names none:
    errors, secrets and the "no platform" line are built from the registry."""
    from adapters.registry import PLATFORMS

    monkeypatch.setenv("TL_TEST_TOKEN", "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    cfg = parse_config(
        GOOD
        + '\n[slack]\nenabled = true\nbot_token = "xoxb-secret-1"\napp_token = "xapp-secret-2"\n'
        + '\n[matrix]\nenabled = true\nhomeserver = "https://hs.test"\nuser_id = "@bot:x"\n'
        + 'password = "matrix-secret-3"\n'
    )
    assert [p.name for p in PLATFORMS] == cfg.enabled_platforms() == ["telegram", "slack", "matrix"]
    for spec in PLATFORMS:
        section = cfg.platform(spec.name)
        assert type(section) is spec.config_model
        assert set(section.secrets()) <= set(cfg.secrets(min_chars=1)) | {""}
    assert {"xoxb-secret-1", "xapp-secret-2", "matrix-secret-3"} <= set(cfg.secrets())
    with pytest.raises(KeyError):
        cfg.platform("irc")
    with pytest.raises(ConfigError) as e:
        parse_config('[access]\nowners = ["irc:1"]\n[slack]\nenabled = true\n')
    assert any(
        "is not 'telegram:ID', 'slack:ID' or 'matrix:@user:server'" in x for x in e.value.lines
    )
    with pytest.raises(ConfigError) as e:
        parse_config("[slack]\nenabled = false\n")
    assert e.value.lines == [
        "no chat platform enabled: set enabled = true in [telegram], [slack] or [matrix]"
    ]


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        (
            '[agent]\nalowed_roots = ["/tmp"]\n',
            "agent.alowed_roots: unknown key (did you mean allowed_roots?)",
        ),
        (
            "[telegramm]\nenabled = true\n",
            "[telegramm]: unknown section (did you mean [telegram]?)",
        ),
        ("[agent]\nzzz = 1\n", "agent.zzz: unknown key; keys: allow_bypass, allowed_roots"),
        ("[agent]\nallowed_roots = []\n", "agent.allowed_roots: at least one directory is needed"),
        ('[agent]\npermission_mode = "yolo"\n', "(got 'yolo')"),
        ('[daemon]\nlog_level = "verbose"\n', "daemon.log_level: 'verbose' is not one of DEBUG"),
    ],
)
def test_config_errors_are_plain_lines_naming_what_was_meant(toml: str, line: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(toml + '[telegram]\nenabled = true\ntoken = "1:x"\n')
    shown = "\n".join(e.value.lines)
    assert line in shown
    assert "Extra inputs" not in shown and "Value error" not in shown


def test_the_examples_placeholders_are_refused_and_socket_mode_needs_no_signing_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    with pytest.raises(ConfigError) as e:
        parse_config(GOOD.replace("telegram:42", "telegram:123456789"))
    assert "the example's placeholder" in "\n".join(e.value.lines)
    with pytest.raises(ConfigError) as e:
        parse_config(
            '[matrix]\nenabled = true\nhomeserver = "https://matrix.example.org"\n'
            'user_id = "@threadline:example.org"\npassword = "pw"\n'
        )
    assert [line for line in e.value.lines if "placeholder" in line] == [
        "matrix.homeserver: still the example's placeholder ('https://matrix.example.org')",
        "matrix.user_id: still the example's placeholder ('@threadline:example.org')",
    ]
    slack = parse_config(
        '[slack]\nenabled = true\nbot_token = "xoxb-1"\napp_token = "xapp-1"\nmode = "socket"\n'
    )
    assert slack.slack.enabled and not slack.slack.signing_secret
    with pytest.raises(ConfigError) as e:
        parse_config('[slack]\nenabled = true\nbot_token = "xoxb-1"\nmode = "http"\n')
    assert "slack.signing_secret: needed when slack.mode = 'http'" in e.value.lines
