"""`git diff HEAD` in a repository Threadline does not control, without running its programs.

A repository's own config names programs that a plain `git diff HEAD` runs: the
`core.fsmonitor` hook, `diff.external` and `diff.<driver>.command`, textconv drivers,
the `clean`/`process` filters of its `.gitattributes` (run on every worktree file whose
stat data changed), and — for a partial clone missing an object — a lazy fetch over any
transport, `ext::<command>` included when the repo allows it.  Measured with git 2.39:
each of these ran a marker script from `/diff` before this module existed.

So git is run with:

- ``--no-ext-diff --no-textconv`` (external diffs, diff drivers' commands, textconv);
- ``core.fsmonitor=false`` and, for every filter driver the config defines (listed first
  with ``git config --get-regexp``, which runs nothing), ``filter.<name>.clean``,
  ``.smudge`` and ``.process`` emptied and ``.required=false`` — git has no switch
  that turns filters off, and an empty command is "no filter";
- ``--ignore-submodules=dirty --submodule=short``: no `git status` in a submodule,
  whose own config would not be covered;
- ``GIT_ALLOW_PROTOCOL=none``: no transport at all, so a lazy fetch cannot start one;
- no ``GIT_*`` variable from the daemon's environment (``GIT_EXTERNAL_DIFF``,
  ``GIT_PAGER``, ``GIT_DIR`` …), ``--no-pager``, stdin closed, ``GIT_OPTIONAL_LOCKS=0``
  (the index is not rewritten under Claude's feet); a run past its time is killed.

The overrides travel as ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``
(they beat every config file, and a driver name may hold ``=`` or ``.``). The config
could change between the listing and the diff; whoever can write `.git/config` then
already runs code as the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TIMEOUT_S = 30.0
BASE_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("diff.external", ""),
    ("diff.submodule", "short"),
    ("core.pager", "cat"),
)
DIFF_ARGS = (
    "diff",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--ignore-submodules=dirty",
    "--submodule=short",
    "HEAD",
)


@dataclass(frozen=True, slots=True)
class GitResult:
    code: int
    out: str
    err: str


def filter_overrides(listing: bytes) -> list[tuple[str, str]]:
    """Overrides that disable every filter driver in ``git config -z --get-regexp
    '^filter\\.'`` output (entries ``key\\nvalue\\0``, or ``key\\0`` without a value)."""
    names: list[str] = []
    for entry in listing.decode("utf-8", errors="surrogateescape").split("\0"):
        key = entry.split("\n", 1)[0]
        if not key.startswith("filter.") or key.count(".") < 2:
            continue
        name = key[len("filter.") : key.rindex(".")]
        if name not in names:
            names.append(name)
    out: list[tuple[str, str]] = []
    for name in names:
        out += [(f"filter.{name}.{var}", "") for var in ("clean", "smudge", "process")]
        out.append((f"filter.{name}.required", "false"))
    return out


def git_env(environ: Mapping[str, str], overrides: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The environment git runs with (see the module docstring)."""
    env = {k: v for k, v in environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_ALLOW_PROTOCOL="none",
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
        GIT_CONFIG_COUNT=str(len(overrides)),
    )
    for i, (key, value) in enumerate(overrides):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


async def run_git(
    cwd: str, args: Sequence[str], overrides: Sequence[tuple[str, str]], timeout: float
) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "git",
        "--no-pager",
        *args,
        cwd=cwd,
        env=git_env(os.environ, overrides),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out, err


async def diff_head(cwd: str, *, timeout: float = TIMEOUT_S) -> GitResult:
    """``git diff HEAD`` in ``cwd``, run so the repository cannot run a program.

    Raises ``OSError`` (no git, no directory) or ``TimeoutError``."""
    code, listing, _ = await run_git(
        cwd, ("config", "-z", "--get-regexp", r"^filter\."), BASE_OVERRIDES, timeout
    )
    overrides = [*BASE_OVERRIDES, *(filter_overrides(listing) if code == 0 else ())]
    code, out, err = await run_git(cwd, DIFF_ARGS, overrides, timeout)
    return GitResult(code, out.decode(errors="replace"), err.decode(errors="replace"))
