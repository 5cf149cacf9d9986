"""`get PATH` and the upload inbox cannot be pointed outside the session directory
by what a repository plants in it: symlinks (also swapped in while `get` runs),
hard links to outside files, directories, FIFOs; and `.threadline` or
`.threadline/inbox` as a symlink."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from adapters.messages import Attachment
from bridge.files import FileRefused, prepare_prompt, read_inside, save_to_inbox


@pytest.fixture()
def session(tmp_path: Path) -> tuple[Path, Path]:
    """(session directory, a secret file outside it on the same filesystem)."""
    cwd = tmp_path / "app"
    cwd.mkdir()
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY")
    return cwd, secret


def test_get_refuses_a_symlink_at_the_path_or_on_the_way(session: tuple[Path, Path]) -> None:
    cwd, secret = session
    (cwd / "notes.txt").symlink_to(secret)
    (cwd / "inner.txt").write_text("inside")
    (cwd / "alias.txt").symlink_to(cwd / "inner.txt")  # even one pointing inside
    (cwd / "d").symlink_to(secret.parent)
    for raw in ("notes.txt", "alias.txt", "d/id_ed25519", f"{cwd}/notes.txt"):
        with pytest.raises(FileRefused, match="symbolic link"):
            read_inside(str(cwd), raw, max_bytes=1000)


def test_get_refuses_a_hard_link_to_an_outside_file(session: tuple[Path, Path]) -> None:
    cwd, secret = session
    os.link(secret, cwd / "README.md")
    with pytest.raises(FileRefused, match="hard link"):
        read_inside(str(cwd), "README.md", max_bytes=1000)


def test_get_refuses_a_directory_and_a_fifo_without_hanging(session: tuple[Path, Path]) -> None:
    cwd, _ = session
    (cwd / "build").mkdir()
    os.mkfifo(cwd / "pipe")
    with pytest.raises(FileRefused, match="not a regular file"):
        read_inside(str(cwd), "build", max_bytes=1000)
    done = threading.Event()
    outcome: list[BaseException] = []

    def get_pipe() -> None:
        try:
            read_inside(str(cwd), "pipe", max_bytes=1000)
        except BaseException as e:  # noqa: BLE001 — handed to the test thread
            outcome.append(e)
        done.set()

    threading.Thread(target=get_pipe, daemon=True).start()
    if not done.wait(10):
        # unblock the reader so the thread can end, then fail
        with open(cwd / "pipe", "wb"):
            pass
        pytest.fail("get blocked on a FIFO")
    assert isinstance(outcome[0], FileRefused) and "not a regular file" in str(outcome[0])


def test_get_swapping_the_file_for_a_symlink_never_sends_the_target(
    session: tuple[Path, Path],
) -> None:
    """Whoever controls the directory flips `data.txt` between a regular file and a
    symlink to the secret as fast as it can while `get` runs; no read ever returns
    the secret (a check-then-read would, now and then)."""
    cwd, secret = session
    (cwd / "plain").write_text("harmless")
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.symlink(secret, cwd / "tmp-link")
            os.replace(cwd / "tmp-link", cwd / "data.txt")
            os.link(cwd / "plain", cwd / "tmp-file")  # a second name, then the first goes
            os.replace(cwd / "tmp-file", cwd / "data.txt")

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    seen: set[bytes] = set()
    try:
        for _ in range(3000):
            try:
                data, _ = read_inside(str(cwd), "data.txt", max_bytes=1000)
            except FileRefused:
                continue
            seen.add(data)
    finally:
        stop.set()
        flipper.join()
    assert b"PRIVATE KEY" not in seen


@pytest.mark.parametrize("planted", [".threadline", ".threadline/inbox"])
def test_an_upload_never_follows_a_planted_threadline_symlink(
    session: tuple[Path, Path], planted: str
) -> None:
    cwd, secret = session
    outside = secret.parent / "ssh"
    outside.mkdir()
    (cwd / planted).parent.mkdir(parents=True, exist_ok=True)
    (cwd / planted).symlink_to(outside)
    with pytest.raises(FileRefused, match="symbolic link"):
        save_to_inbox(cwd, "authorized_keys", b"ssh-ed25519 AAAA attacker")
    assert list(outside.iterdir()) == []
    # through a chat message: the prompt says the file could not be saved
    data = b"ssh-ed25519 AAAA attacker"
    doc = Attachment.of("file", "authorized_keys", "text/plain", data)
    prepared = prepare_prompt("here", [(doc, data)], cwd, max_bytes=1000)
    assert not prepared.saved and "could not be saved" in prepared.text
    assert "symbolic link" in prepared.text  # the person is told why
    assert list(outside.iterdir()) == []


def test_an_upload_refuses_a_threadline_file(session: tuple[Path, Path]) -> None:
    cwd, _ = session
    (cwd / ".threadline").write_text("not a directory")
    with pytest.raises(FileRefused, match="not a directory"):
        save_to_inbox(cwd, "a.txt", b"x")
