"""M6: `/diff` runs git so the repository's own config cannot run programs.

The repository is one a stranger could have written: its `.git/config` names a
`core.fsmonitor` hook, `diff.external`, a diff driver's command, a textconv driver, a
clean filter and a long-running filter process (one required), its `.gitattributes`
uses them, and each is a script that leaves a marker file.  Plain `git diff HEAD`
runs them (checked first, so the repository is a real trap); `/diff` shows the diff
and no marker appears.  Also: a partial clone's lazy fetch over `ext::`, and a
submodule with its own fsmonitor."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge import gitsafe
from tests.support.harness import Harness, start_harness, stop_harness

pytestmark = pytest.mark.e2e


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=a@b", "-c", "user.name=a", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def plain_diff(repo: Path) -> None:
    """What `/diff` ran before: plain `git diff HEAD`."""
    subprocess.run(["git", "diff", "HEAD"], cwd=repo, capture_output=True, check=False)


def trap_repo(base: Path) -> tuple[Path, Path]:
    """(repository, marker directory)."""
    markers = base / "markers"
    markers.mkdir()
    scripts = base / "scripts"
    scripts.mkdir()
    for name in ("fsmonitor", "external", "command", "textconv", "clean", "process"):
        script = scripts / f"{name}.sh"
        script.write_text(f"#!/bin/sh\ntouch '{markers}/{name}'\ncat\n")
        script.chmod(0o755)
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitattributes").write_text(
        "a.txt diff=tc filter=cl\nb.txt filter=pr\nc.txt diff=cmd\n"
    )
    for name in ("a", "b", "c"):
        (repo / f"{name}.txt").write_text(f"{name} before\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    for key, script in (
        ("core.fsmonitor", "fsmonitor"),
        ("diff.external", "external"),
        ("diff.cmd.command", "command"),
        ("diff.tc.textconv", "textconv"),
        ("filter.cl.clean", "clean"),
        ("filter.pr.process", "process"),
    ):
        git(repo, "config", key, str(scripts / f"{script}.sh"))
    for name in ("a", "b", "c"):
        (repo / f"{name}.txt").write_text(f"{name} before\n{name} after\n")
    return repo, markers


def test_the_trap_is_real_plain_git_diff_runs_every_program(tmp_path: Path) -> None:
    repo, markers = trap_repo(tmp_path)
    plain_diff(repo)
    assert {p.name for p in markers.iterdir()} >= {"fsmonitor", "external", "clean", "process"}


async def test_diff_head_runs_nothing_the_repository_names(tmp_path: Path) -> None:
    repo, markers = trap_repo(tmp_path)
    result = await gitsafe.diff_head(str(repo))
    assert result.code == 0, result.err
    for name in ("a", "b", "c"):
        assert f"+{name} after" in result.out
    assert not list(markers.iterdir())


async def test_a_lazy_fetch_cannot_start_a_transport(tmp_path: Path) -> None:
    """A "partial clone" missing HEAD's blob, its promisor remote an `ext::` command."""
    markers = tmp_path / "markers"
    markers.mkdir()
    repo = tmp_path / "partial"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "f").write_text("one\n")
    git(repo, "add", "f")
    git(repo, "commit", "-qm", "one")
    blob = git(repo, "rev-parse", "HEAD:f").strip()
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    for key, value in (
        ("core.repositoryformatversion", "1"),
        ("extensions.partialClone", "origin"),
        ("remote.origin.promisor", "true"),
        ("remote.origin.url", f"ext::sh -c touch% {markers}/transport"),
        ("protocol.ext.allow", "always"),
    ):
        git(repo, "config", key, value)
    (repo / "f").write_text("two\n")
    plain_diff(repo)
    assert (markers / "transport").exists(), "plain git diff runs the transport"
    (markers / "transport").unlink()
    result = await gitsafe.diff_head(str(repo))
    assert result.code != 0 and not list(markers.iterdir())


async def test_a_submodule_is_not_entered(tmp_path: Path) -> None:
    repo, markers = trap_repo(tmp_path)
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q")
    (sub / "s").write_text("s\n")
    git(sub, "add", "s")
    git(sub, "commit", "-qm", "s")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sm")
    # the submodule's own clean filter: not in the listing of the outer repo's config
    git(repo / "sm", "config", "filter.sub.clean", str(tmp_path / "scripts" / "clean.sh"))
    (repo / "sm" / ".gitattributes").write_text("s filter=sub\n")
    (repo / "sm" / "s").write_text("t\n")  # same size: only its cleaned content tells
    os.utime(repo / "sm" / "s", (1e9, 1e9))
    for marker in markers.iterdir():  # left by `git submodule add` in the trap
        marker.unlink()
    result = await gitsafe.diff_head(str(repo))
    assert result.code == 0, result.err
    assert "+a after" in result.out
    assert not list(markers.iterdir())


def test_filter_overrides_cover_every_driver_name() -> None:
    listing = b"filter.cl.clean\n/x\x00filter.a.b=c.process\n/y\x00filter.flag.required\x00"
    assert gitsafe.filter_overrides(listing) == [
        ("filter.cl.clean", ""),
        ("filter.cl.smudge", ""),
        ("filter.cl.process", ""),
        ("filter.cl.required", "false"),
        ("filter.a.b=c.clean", ""),
        ("filter.a.b=c.smudge", ""),
        ("filter.a.b=c.process", ""),
        ("filter.a.b=c.required", "false"),
        ("filter.flag.clean", ""),
        ("filter.flag.smudge", ""),
        ("filter.flag.process", ""),
        ("filter.flag.required", "false"),
    ]


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await start_harness(tmp_path)
    yield harness
    await stop_harness(harness)


async def test_diff_command_shows_the_diff_and_runs_nothing(h: Harness, tmp_path: Path) -> None:
    repo, markers = trap_repo(h.root)
    topic, _ = await h.new_session(str(repo))  # no prompt: no Claude Code started
    h.say("/diff", thread_id=topic)
    shown = await h.wait_text("+a after", thread_id=topic)
    assert "+b after" in shown.visible_text and "+c after" in shown.visible_text
    assert not list(markers.iterdir()), "no program of the repository ran"
