"""The built wheel holds what the code reads at run time, and works outside the checkout.

`pip install .`, pipx and `uv tool install` install the wheel, not the source tree: a file
the code opens (`threadline init` copies the example config, `doctor` reads the Slack
app manifest) must be inside it.  The wheel is built from this checkout, unpacked into a
directory of its own, and run from elsewhere with that directory first on the path; the
test checks that the modules really came from the wheel, not from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (built,) = out.glob("threadline-*.whl")
    return built


def test_the_wheel_holds_the_files_read_at_run_time(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "bridge/config.example.toml" in names
    assert "adapters/slack/manifest.yaml" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)


def test_init_and_the_manifest_work_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("THREADLINE_CONFIG", None)
    probe = (
        "import bridge, adapters.slack.client as c; print(bridge.__file__); "
        "print(len(c.manifest_scopes()))"
    )
    where = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert where.returncode == 0, where.stderr
    origin, scopes = where.stdout.split()
    assert Path(origin).is_relative_to(target)  # not the checkout's copy
    assert int(scopes) > 0
    config = tmp_path / "config" / "config.toml"
    init = subprocess.run(
        [
            sys.executable, "-m", "bridge.cli.main", "init", "--config", str(config),
            "--platform", "telegram", "--set", "token=123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "--root", str(tmp_path), "--no-check",
        ],  # fmt: skip
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    # The example's comments came along: it was read from the installed package.
    assert "# From @BotFather" in config.read_text()
    assert config.stat().st_mode & 0o777 == 0o600
