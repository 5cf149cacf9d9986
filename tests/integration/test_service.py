"""`threadline service`: the unit it writes, the environment it captures, the commands it runs.

systemctl, loginctl and launchctl are stand-ins on PATH that record their arguments
(this machine has no user service manager to talk to); the unit file itself is checked
by the real `systemd-analyze verify` where it is installed.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli.service import Service, install

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _stubs(tmp_path: Path) -> tuple[Path, Path]:
    """systemctl/loginctl/launchctl that log `name args…` and succeed."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name in ("systemctl", "loginctl", "launchctl"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        stub.chmod(0o755)
    return bin_dir, log


def _config(tmp_path: Path, token_ref: str = "${TELEGRAM_BOT_TOKEN}") -> Path:
    config = tmp_path / "conf dir" / "config.toml"  # a space: quoting is exercised
    config.parent.mkdir()
    config.write_text(
        f'[storage]\nurl = "sqlite:///{tmp_path}/t.db"\n'
        f'[agent]\nallowed_roots = ["{tmp_path}"]\n'
        f'[telegram]\nenabled = true\ntoken = "{token_ref}"\n'
    )
    return config


def _threadline(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip


def test_install_writes_a_valid_unit_and_a_private_environment_then_uninstall(
    tmp_path: Path,
) -> None:
    bin_dir, log = _stubs(tmp_path)
    config = _config(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "UNRELATED_SECRET": "do-not-copy",
    }
    done = _threadline(["service", "install", "--config", str(config)], env)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "xdg" / "systemd" / "user" / "threadline.service"
    text = unit.read_text()
    assert f'"{config}"' in text  # the path with a space, quoted for systemd
    assert "After=network-online.target" in text and "Restart=on-failure" in text
    env_file = config.with_name("threadline.env")
    assert env_file.stat().st_mode & 0o777 == 0o600
    lines = env_file.read_text().splitlines()
    assert f'TELEGRAM_BOT_TOKEN="{TOKEN}"' in lines
    assert 'ANTHROPIC_API_KEY="sk-ant-test"' in lines
    assert any(line.startswith("PATH=") for line in lines)
    assert "UNRELATED_SECRET" not in env_file.read_text()
    calls = log.read_text().splitlines()
    assert "systemctl --user daemon-reload" in calls
    assert "systemctl --user enable --now threadline.service" in calls
    assert "enable-linger" in done.stdout  # the stand-in loginctl reports no lingering
    assert TOKEN not in done.stdout + done.stderr
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    gone = _threadline(["service", "uninstall", "--config", str(config)], env)
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists() and not env_file.exists()
    assert "systemctl --user disable --now threadline.service" in log.read_text()


def test_a_variable_the_config_needs_but_the_shell_lacks_is_one_line(tmp_path: Path) -> None:
    bin_dir, log = _stubs(tmp_path)
    config = _config(tmp_path)
    config.write_text(config.read_text() + '[daemon]\nlog_file = "${LOG_DIR}/t.log"\n')
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "TELEGRAM_BOT_TOKEN": TOKEN,
    }
    env.pop("LOG_DIR", None)
    done = _threadline(["service", "install", "--config", str(config)], env)
    assert done.returncode in (1, 2)
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "LOG_DIR" in done.stderr
    assert not (tmp_path / "xdg" / "systemd").exists() and not log.exists()


def test_launchd_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, log = _stubs(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config = _config(tmp_path)
    service = Service(
        "launchd", config, tmp_path, {"TELEGRAM_BOT_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    )
    from bridge.cli.service import run_command

    shown = install(service, run_command)
    plist = tmp_path / "Library" / "LaunchAgents" / "dev.threadline.daemon.plist"
    assert plist.stat().st_mode & 0o777 == 0o600
    data = plistlib.loads(plist.read_bytes())
    assert data["ProgramArguments"][-4:] == ["bridge.cli", "run", "--config", str(config)]
    assert data["EnvironmentVariables"] == {"TELEGRAM_BOT_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    assert data["KeepAlive"] == {"SuccessfulExit": False, "NetworkState": True}
    assert f"launchctl bootstrap gui/{os.getuid()} {plist}" in log.read_text()
    assert any("Logs:" in line for line in shown)
