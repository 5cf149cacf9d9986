"""Access control: owners only, one refusal an hour, and allowed_roots for paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.messages import Sender
from bridge.access.control import AccessControl, PathRefused, resolve_session_dir
from storage.db import Database


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "code"
    (root / "app" / "src").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "file.txt").write_text("x")
    return root, outside


def test_inside_root_resolves(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    assert resolve_session_dir(str(root / "app"), [str(root)]) == (root / "app").resolve()
    assert resolve_session_dir("app/src", [str(root)]) == (root / "app" / "src").resolve()
    assert resolve_session_dir(str(root), [str(root)]) == root.resolve()


def test_home_expansion(roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = roots
    monkeypatch.setenv("HOME", str(root.parent))
    assert resolve_session_dir("~/code/app", ["~/code"]) == (root / "app").resolve()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("{root}/../secret", "`..`"),
        ("{root}/app/../../secret", "`..`"),
        ("{root}/escape", "outside"),
        ("{outside}", "outside"),
        ("/etc", "outside"),
        ("~root/x", "~user"),
        ("{root}/app\x00/x", "control"),
        ("{root}/missing", "does not exist"),
        ("{root}/file.txt", "not a directory"),
        ("{root}/" + "a" * 2000, "too long"),
        ("", "no directory"),
    ],
)
def test_refused(roots: tuple[Path, Path], raw: str, why: str) -> None:
    root, outside = roots
    with pytest.raises(PathRefused) as e:
        resolve_session_dir(raw.format(root=root, outside=outside), [str(root)])
    assert why in str(e.value)


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=300))
def test_any_text_is_inside_or_refused(raw: str) -> None:
    root = Path(os.environ.get("TMPDIR", "/tmp")).resolve()
    try:
        got = resolve_session_dir(raw, [str(root)])
    except PathRefused:
        return
    assert got == root or root in got.parents


def test_strangers_refused_once_per_hour(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/a.db")
    db.migrate()
    access = AccessControl(db, ["telegram:1"])
    assert access.is_owner(Sender("telegram", "1"))
    stranger = Sender("telegram", "666", "Mallory")
    assert not access.is_owner(stranger)
    assert not access.is_owner(Sender("slack", "1"))
    assert access.refuse(stranger, "message", "hi") is True
    assert access.refuse(stranger, "message", "hi again") is False
    rows = db.audit.recent()
    assert [r.allowed for r in rows] == [False, False]
    assert all(r.user == "telegram:666" for r in rows)
