"""Claude Code's credentials: whether the CLI can log in, and what to tell a person
whose CLI cannot.

The CLI itself is the authority on what counts as a login (an ``ANTHROPIC_API_KEY``,
``CLAUDE_CODE_OAUTH_TOKEN`` or ``ANTHROPIC_AUTH_TOKEN``, an ``apiKeyHelper`` in its user
settings, a ``.credentials.json`` from ``claude auth login`` in its config directory,
Bedrock/Vertex…), so ``auth_status`` asks it: ``claude auth status --json`` reads only
local files and the environment — with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` set it
opens no socket at all (checked under strace with CLI 2.1.337). A turn without
credentials ends with the CLI's "Not logged in · Please run /login", which names a
command of the CLI's own terminal UI, not of the chat: ``login_help`` says instead what
the person can do on the machine the daemon runs on.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

# AssistantMessage.error of the CLI's synthetic "Not logged in" answer.
AUTH_FAILED = "authentication_failed"


@dataclass(frozen=True, slots=True)
class AuthStatus:
    logged_in: bool
    method: str  # the CLI's authMethod: "api_key", "oauth_token", "claude.ai", "none", …
    source: str  # where an API key came from ("ANTHROPIC_API_KEY", "apiKeyHelper"), or ""
    config_dir: str


def auth_status(cli: str, env: Mapping[str, str]) -> AuthStatus | None:
    """What ``cli`` says about its login in ``env``; None if it could not tell."""
    quiet = {**env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    try:
        done = subprocess.run(
            [cli, "auth", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=quiet,
        )
        data = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("loggedIn"), bool):
        return None
    return AuthStatus(
        data["loggedIn"],
        str(data.get("authMethod") or ""),
        str(data.get("apiKeySource") or ""),
        str(data.get("configDirectory") or ""),
    )


def login_command(cli: str | None, env: Mapping[str, str]) -> str:
    """The shell command that logs the daemon's Claude Code in, with the config
    directory the daemon gives it (if it sets one)."""
    prefix = ""
    if config_dir := env.get("CLAUDE_CONFIG_DIR"):
        prefix = f"CLAUDE_CONFIG_DIR={shlex.quote(config_dir)} "
    return f"{prefix}{shlex.quote(cli or 'claude')} auth login"


def login_help(cli: str | None, env: Mapping[str, str]) -> str:
    """What a person is told when a turn failed for want of credentials (Markdown)."""
    login = login_command(cli, env)
    return (
        "🔑 Claude Code is not logged in, so Claude cannot answer. On the machine "
        "Threadline runs on, either:\n"
        "• set `ANTHROPIC_API_KEY` in the daemon's environment (or its service file) "
        "and restart it, or\n"
        f"• log in once, as the user the daemon runs as: `{login}` "
        "(or `setup-token` instead of `auth login` for a long-lived token to set as "
        "`CLAUDE_CODE_OAUTH_TOKEN`).\n"
        "Then send your message again. `threadline doctor` checks the login."
    )
