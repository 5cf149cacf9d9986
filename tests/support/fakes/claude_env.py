"""The environment for running the real Claude Code CLI against ``FakeAnthropic``.

``claude_env(tmp_path / "claude", base_url)`` gives a dict to pass as
``ClaudeAgentOptions.env`` (or ``AgentHost(env=...)``): it is laid over ``os.environ`` by
the SDK, so it also blanks the variables that would send the CLI elsewhere (Bedrock,
Vertex, an OAuth token, a proxy). Found by experiment with CLI 2.1.330 under ``strace``:
with these settings the only socket the CLI opens is to the fake (no DNS lookups); without
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` it also sends ``HEAD /api/hello`` to the base
URL and telemetry to the internet. ``CLAUDE_CODE_MAX_RETRIES=0`` makes an HTTP 500/529
end the turn at once (each retry costs a ~0.5–1 s back-off); a broken stream is still
retried once by the CLI as a non-streaming call. Pass ``CLAUDE_CODE_MAX_RETRIES="1"`` to
see retries.
"""

from __future__ import annotations

from pathlib import Path

# Variables that, inherited from the developer's shell, would route the CLI away from the
# fake or change what it sends. The CLI treats an empty value as unset.
_BLANKED = (
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def claude_env(home: Path, base_url: str, **extra: str) -> dict[str, str]:
    """Env for one CLI (or a group of CLIs sharing transcripts) under ``home``.

    ``home`` is created; the CLI keeps its config and session transcripts in
    ``home/.claude`` — sessions that should resume each other must share ``home``.
    """
    config = home / ".claude"
    config.mkdir(parents=True, exist_ok=True)
    tmp = home / "tmp"  # else the CLI's scratch files (images, tool output) go to /tmp/claude-UID
    tmp.mkdir(mode=0o700, exist_ok=True)
    env = dict.fromkeys(_BLANKED, "")
    env.update(
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_API_KEY="test-key",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_MAX_RETRIES="0",
        HOME=str(home),
        CLAUDE_CONFIG_DIR=str(config),
        CLAUDE_CODE_TMPDIR=str(tmp),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env
