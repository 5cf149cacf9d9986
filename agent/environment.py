"""The environment Claude Code runs in: the daemon's, minus what is Threadline's own.

Everything Claude Code starts — each Bash command, hook and MCP server — inherits the
CLI's environment, and the SDK builds that as ``{**os.environ, **options.env}``: a
variable can be kept from the CLI only by not being in the daemon's ``os.environ``.
So the daemon reduces its own environment to ``agent_environment(...)`` once, right
after loading its config, and nothing it spawns later (the CLI, ``git``) sees more.

Removed:

- **Threadline's secrets**: every variable whose value is one of the secrets the
  config holds (wherever the value came from: a literal in the file or ``${NAME}``),
  or contains one (a URL with the token in it), and every ``TELEGRAM_*``, ``SLACK_*``
  and ``MATRIX_*`` variable — the names Threadline and its chat libraries read.
- **Threadline's own Python**: ``VIRTUAL_ENV`` (and ``VIRTUAL_ENV_PROMPT``), and the
  ``bin`` directory of each given virtualenv from ``PATH`` — a daemon started from its
  virtualenv would otherwise hand the person's project that venv's ``python3``/``pip``.

Everything else is kept as it is: ``ANTHROPIC_*`` and ``CLAUDE_*`` (how the CLI
reaches the model), proxies, ``HOME``, locale, ``PATH``'s other entries. By Claude
Code's design its API key stays visible to the tools it runs.

Pure functions of explicit inputs; the composition root (``bridge/cli/daemon.py``)
applies them to the process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

THREADLINE_PREFIXES = ("TELEGRAM_", "SLACK_", "MATRIX_")
VENV_NAMES = ("VIRTUAL_ENV", "VIRTUAL_ENV_PROMPT")
# A secret this short is compared whole only: as a substring it would match too much
# (a Matrix password "hunter2" inside an unrelated value). Every token Threadline
# holds is far longer.
CONTAINED_MIN_CHARS = 8


def own_virtualenvs(prefix: str, base_prefix: str, environ: Mapping[str, str]) -> list[str]:
    """The virtualenvs whose ``bin`` must leave ``PATH``: the one this Python runs from
    (``sys.prefix`` differs from ``sys.base_prefix`` in a venv) and the activated one."""
    venvs = [prefix] if prefix != base_prefix else []
    if environ.get("VIRTUAL_ENV"):
        venvs.append(environ["VIRTUAL_ENV"])
    return venvs


def is_secret(name: str, value: str, secrets: Iterable[str]) -> bool:
    """Whether the variable ``name=value`` is (or carries) one of Threadline's secrets."""
    if name.upper().startswith(THREADLINE_PREFIXES):
        return True
    for secret in secrets:
        if not secret:
            continue
        if value == secret or (len(secret) >= CONTAINED_MIN_CHARS and secret in value):
            return True
    return False


def without_venvs(path: str, venvs: Iterable[str]) -> str:
    """``PATH`` without the ``bin`` directories of ``venvs`` (order otherwise kept)."""
    dropped = {os.path.normpath(os.path.join(v, "bin")) for v in venvs if v}
    kept = [p for p in path.split(os.pathsep) if not p or os.path.normpath(p) not in dropped]
    return os.pathsep.join(kept)


def agent_environment(
    environ: Mapping[str, str], *, secrets: Iterable[str], venvs: Iterable[str] = ()
) -> dict[str, str]:
    """What Claude Code's environment is, given the daemon's (see the module docstring)."""
    held = [s for s in secrets if s]
    env = {
        name: value
        for name, value in environ.items()
        if name not in VENV_NAMES and not is_secret(name, value, held)
    }
    if "PATH" in env:
        env["PATH"] = without_venvs(env["PATH"], venvs) or os.defpath
    return env
