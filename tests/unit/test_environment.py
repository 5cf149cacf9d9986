"""Claude Code's environment (`agent/environment.py`, H3): the daemon's environment
minus Threadline's secrets and its own virtualenv, everything Claude Code needs kept.

The end-to-end proof — the daemon as a process, the real CLI running an approved
`env` — is in `tests/e2e/test_e2e_env.py`."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from agent.environment import agent_environment, own_virtualenvs, without_venvs
from bridge.config import parse_config

TOKEN = "123456:" + "A" * 35
SIGNING = "8f14e45fceea167a5a36dedd4bea2543"
DAEMON_ENV = {
    "PATH": "/opt/threadline/.venv/bin:/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/me",
    "LANG": "en_GB.UTF-8",
    "LC_ALL": "en_GB.UTF-8",
    "ANTHROPIC_API_KEY": "sk-ant-xyz",
    "ANTHROPIC_BASE_URL": "https://proxy.example",
    "CLAUDE_CONFIG_DIR": "/home/me/.claude",
    "CLAUDE_CODE_USE_BEDROCK": "",
    "HTTPS_PROXY": "http://proxy:3128",
    "NO_PROXY": "localhost",
    "TELEGRAM_BOT_TOKEN": TOKEN,
    "TELEGRAM_CHAT": "12345",
    "SLACK_APP_TOKEN": "xapp-1-abc",
    "matrix_password": "whatever",
    "MY_SIGNING": SIGNING,  # a name Threadline does not know, holding a secret
    "WEBHOOK_URL": f"https://api.telegram.org/bot{TOKEN}/sendMessage",
    "VIRTUAL_ENV": "/opt/threadline/.venv",
    "VIRTUAL_ENV_PROMPT": "(.venv)",
    "EDITOR": "vim",
}


def test_secrets_and_threadlines_venv_are_removed_and_the_rest_is_kept() -> None:
    env = agent_environment(
        DAEMON_ENV, secrets=[TOKEN, SIGNING, ""], venvs=["/opt/threadline/.venv"]
    )
    for gone in (
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_CHAT",
        "SLACK_APP_TOKEN",
        "matrix_password",
        "MY_SIGNING",
        "WEBHOOK_URL",
        "VIRTUAL_ENV",
        "VIRTUAL_ENV_PROMPT",
    ):
        assert gone not in env, gone
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    for kept in (
        "HOME",
        "LANG",
        "LC_ALL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "CLAUDE_CONFIG_DIR",
        "CLAUDE_CODE_USE_BEDROCK",  # an empty secret ("") removes no empty variable
        "HTTPS_PROXY",
        "NO_PROXY",
        "EDITOR",
    ):
        assert env[kept] == DAEMON_ENV[kept], kept
    assert TOKEN not in str(env) and SIGNING not in str(env)


def test_every_configured_secret_counts_literal_or_from_the_environment() -> None:
    """The config's values are what counts, not where they came from: a token written
    into the file and a Matrix password from `${DEPLOY_PW}` are both removed, under
    whatever name the environment holds them."""
    os.environ["DEPLOY_PW"] = "correct horse battery"
    try:
        config = parse_config(
            f"""
[telegram]
enabled = true
token = "{TOKEN}"
[matrix]
password = "${{DEPLOY_PW}}"
access_token = "syt_short"
[slack]
signing_secret = "{SIGNING}"
"""
        )
    finally:
        del os.environ["DEPLOY_PW"]
    daemon_env = {
        "A": TOKEN,
        "DEPLOY_PW": "correct horse battery",
        "B": "syt_short",
        "C": SIGNING,
        "HOME": "/home/me",
    }
    assert agent_environment(daemon_env, secrets=config.secrets(min_chars=1)) == {
        "HOME": "/home/me"
    }


def test_own_virtualenvs() -> None:
    assert own_virtualenvs("/v", "/usr", {}) == ["/v"]
    assert own_virtualenvs("/usr", "/usr", {}) == []
    assert own_virtualenvs("/usr", "/usr", {"VIRTUAL_ENV": "/act"}) == ["/act"]
    assert without_venvs("/v/bin/:/usr/bin::/v/binx", ["/v"]) == "/usr/bin::/v/binx"


def test_a_path_of_only_the_venv_falls_back_to_the_default_path() -> None:
    env = agent_environment({"PATH": "/v/bin"}, secrets=[], venvs=["/v"])
    assert env["PATH"] == os.defpath


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
values = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40
)
secret_values = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(
    environ=st.dictionaries(names, values, max_size=12),
    secrets=st.lists(secret_values, max_size=4),
    leaked_as=st.lists(names, max_size=4),
)
def test_no_secret_survives_and_nothing_else_is_lost(
    environ: dict[str, str], secrets: list[str], leaked_as: list[str]
) -> None:
    environ = dict(environ)
    for name, secret in zip(leaked_as, secrets, strict=False):
        environ[name] = secret
    environ.pop("PATH", None)
    env = agent_environment(environ, secrets=secrets)
    for name, value in env.items():
        assert value not in secrets
        assert not name.upper().startswith(("TELEGRAM_", "SLACK_", "MATRIX_"))
        assert name not in ("VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT")
        assert environ[name] == value
    for name, value in environ.items():
        # what is removed is removed for a reason
        if name not in env:
            assert (
                value in secrets
                or any(len(s) >= 8 and s in value for s in secrets)
                or name.upper().startswith(("TELEGRAM_", "SLACK_", "MATRIX_"))
                or name in ("VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT")
            )
