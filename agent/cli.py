"""The Claude Code CLI itself: which binary runs (the one bundled with claude-agent-sdk
unless `[agent] cli_path` names another) and its version, for `threadline doctor` and
the benchmarks' record of what they measured."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def claude_cli_path(configured: str) -> str | None:
    if configured:
        return configured if Path(configured).exists() else shutil.which(configured)
    try:
        import claude_agent_sdk

        bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        return None
    return shutil.which("claude")


def claude_version(path: str) -> str | None:
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
