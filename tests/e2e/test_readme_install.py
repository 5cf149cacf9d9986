"""The README's install block, run as written, from the built wheel, outside the checkout.

The first fenced block under "Install and run" is read from README.md and run line by
line in bash, with a fresh HOME and pipx's homes in a temporary directory.  Only what a
test must add is changed: `./threadline` is the wheel built from this checkout, init
gets the fake Bot API's address (`--set base_url=…`) and its answers on stdin (the
platform, the token, the default directory and "yes, create it"), and the daemon is
stopped once it polls.  So the two lines a new user copies cannot drift from what works.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fakes.telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # installs every dependency into a new virtualenv


def install_block() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install and run", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "no ```sh block under 'Install and run'"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_the_block_is_two_commands() -> None:
    lines = install_block()
    assert len(lines) == 2
    assert lines[0].startswith("pipx install ./threadline")
    assert lines[1] == "threadline init && threadline run"


def _install(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The README's first line, with the wheel built from this checkout: the
    environment the person's shell would have afterwards, and its HOME."""
    wheels = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("threadline-*.whl")
    tools = tmp_path / "tools"
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True, timeout=120)
    if not shutil.which("pipx"):
        subprocess.run(
            [str(tools / "bin" / "pip"), "install", "-q", "pipx"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "PATH": f"{home}/.local/bin:{tools}/bin:/usr/local/bin:/usr/bin:/bin",
        "PIPX_HOME": str(home / ".local" / "pipx"),
        "PIPX_BIN_DIR": str(home / ".local" / "bin"),
        "PIPX_DEFAULT_PYTHON": sys.executable,
        "LANG": "C.UTF-8",
    }
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CACHE_DIR"):
        if name in os.environ:  # the machine's package index, as a user's pip would use
            env[name] = os.environ[name]
    install = install_block()[0]
    done = subprocess.run(
        ["bash", "-c", install.replace("./threadline", str(wheel), 1)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return env, home


async def test_the_readme_install_block_works_from_the_wheel(tmp_path: Path) -> None:
    env, home = await asyncio.to_thread(_install, tmp_path)
    start = install_block()[1]
    tg = await FakeTelegram().start()
    try:
        command = start.replace("threadline init", f"threadline init --set base_url={tg.base_url}")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=tmp_path, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(f"telegram\n{tg.token}\n\ny\n".encode())
        await proc.stdin.drain()
        proc.stdin.close()
        await tg.wait_until(lambda: tg.calls["getUpdates"] > 0 or None, timeout=120)
        os.killpg(proc.pid, signal.SIGTERM)  # bash and the daemon it started
        assert proc.stdout is not None
        output = (await asyncio.wait_for(proc.stdout.read(), timeout=60)).decode()
        await proc.wait()
    finally:
        await tg.stop()
    config = home / ".config" / "threadline" / "config.toml"
    assert config.stat().st_mode & 0o777 == 0o600, output
    assert (home / "code").is_dir()  # the default directory, created on "y"
    assert "Traceback" not in output
    # Installed outside the checkout: the package came from pipx's virtualenv.
    where = await asyncio.create_subprocess_exec(
        str(home / ".local" / "pipx" / "venvs" / "threadline" / "bin" / "python"), "-c",
        "import bridge; print(bridge.__file__)", cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    origin = (await where.communicate())[0].decode()
    assert str(ROOT) not in origin and "pipx" in origin
