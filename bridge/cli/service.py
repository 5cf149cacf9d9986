"""`threadline service`: run the daemon as the person's own background service.

Linux gets a **systemd user unit** (`~/.config/systemd/user/threadline.service`), macOS
a **launchd agent** (`~/Library/LaunchAgents/dev.threadline.daemon.plist`); both start
the same interpreter that runs this command (so the installed virtualenv is used),
restart it when it fails, and start it after the network is up — the daemon also
waits for its chat platform on its own (`bridge/startup.py`).

A service does not inherit the shell's environment.  What the daemon needs from it is
written to an environment file next to the config, mode 0600: every ``${NAME}`` the
config refers to, and Claude Code's credentials and endpoint (`CLAUDE_VARS`) when they
are set; `PATH` is kept so Claude Code's tools (git, node …) are found.  The unit names
the file with ``EnvironmentFile=``; the launchd plist (0600 too) carries the values.

`install` writes and starts it, `status` and `logs` show it, `uninstall` stops it and
removes the unit and the environment file.  Commands run through `Runner`, so tests
can use stand-ins for systemctl and launchctl on PATH.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

UNIT_NAME = "threadline.service"
LAUNCHD_LABEL = "dev.threadline.daemon"
# Claude Code reads these from its environment (credentials, endpoint, model).
CLAUDE_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CONFIG_DIR",
)
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Kind = Literal["systemd", "launchd"]
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class ServiceError(Exception):
    """One line: what failed and what to do."""


def default_kind() -> Kind:
    return "launchd" if sys.platform == "darwin" else "systemd"


def run_command(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ServiceError(f"{args[0]} is not installed on this machine") from None


@dataclass(frozen=True, slots=True)
class Service:
    """Where one service's files go and what it runs."""

    kind: Kind
    config: Path  # absolute
    home: Path
    environ: Mapping[str, str]
    python: str = sys.executable

    @property
    def unit_path(self) -> Path:
        if self.kind == "launchd":
            return self.home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        base = self.environ.get("XDG_CONFIG_HOME") or str(self.home / ".config")
        return Path(base) / "systemd" / "user" / UNIT_NAME

    @property
    def env_path(self) -> Path:
        return self.config.with_name("threadline.env")

    @property
    def log_path(self) -> Path:
        return self.home / "Library" / "Logs" / "threadline.log"

    @property
    def command(self) -> list[str]:
        return [self.python, "-m", "bridge.cli", "run", "--config", str(self.config)]

    def environment(self) -> dict[str, str]:
        """What the daemon needs from this shell: the config's ``${NAME}``s, Claude
        Code's variables, PATH.  A referenced name that is not set is an error."""
        wanted = dict.fromkeys(_REF.findall(self.config.read_text(encoding="utf-8")))
        missing = [name for name in wanted if name not in self.environ]
        if missing:
            raise ServiceError(
                f"the config uses ${{{missing[0]}}} but it is not set in this shell; "
                "set it and run this again"
            )
        names = [*wanted, *(v for v in CLAUDE_VARS if v in self.environ), "PATH"]
        return {name: self.environ[name] for name in dict.fromkeys(names) if name in self.environ}

    def unit_text(self) -> str:
        return _systemd_unit(self)

    def plist_bytes(self) -> bytes:
        return plistlib.dumps(
            {
                "Label": LAUNCHD_LABEL,
                "ProgramArguments": self.command,
                "EnvironmentVariables": self.environment(),
                "RunAtLoad": True,
                "KeepAlive": {"SuccessfulExit": False, "NetworkState": True},
                "ThrottleInterval": 10,
                "WorkingDirectory": str(self.home),
                "StandardOutPath": str(self.log_path),
                "StandardErrorPath": str(self.log_path),
            }
        )


def _systemd_quote(word: str) -> str:
    """A word of ExecStart= (systemd splits on spaces and honours double quotes;
    `%` and `$` would be expanded)."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    escaped = escaped.replace("$", "$$")
    return f'"{escaped}"' if re.search(r'[\s"\\]', word) or not word else escaped


def _env_line(name: str, value: str) -> str:
    """A line of an EnvironmentFile: double-quoted, with systemd's escapes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def _systemd_unit(s: Service) -> str:
    return "\n".join(
        [
            "[Unit]",
            "Description=Threadline: Claude Code sessions as chat threads",
            "Wants=network-online.target",
            "After=network-online.target",
            # A daemon that keeps failing (a revoked token) stops being restarted.
            "StartLimitIntervalSec=300",
            "StartLimitBurst=5",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={' '.join(_systemd_quote(w) for w in s.command)}",
            # Paths here are taken as written (no quotes; only `%` specifiers expand).
            f"EnvironmentFile={str(s.env_path).replace('%', '%%')}",
            f"WorkingDirectory={str(s.home).replace('%', '%%')}",
            "Restart=on-failure",
            "RestartSec=10",
            # SIGTERM: running turns are marked interrupted, the outbox gets a few
            # seconds to deliver; what is left is sent on the next start.
            "TimeoutStopSec=30",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` mode 0600 (it holds secrets), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def install(s: Service, run: Runner) -> list[str]:
    """Write the service's files and start it; the lines to show."""
    if s.kind == "launchd":
        write_private(s.unit_path, s.plist_bytes())
        s.log_path.parent.mkdir(parents=True, exist_ok=True)
        domain = f"gui/{os.getuid()}"
        run(["launchctl", "bootout", f"{domain}/{LAUNCHD_LABEL}"])  # an older copy, if any
        _check(run(["launchctl", "bootstrap", domain, str(s.unit_path)]), "launchctl bootstrap")
        return [
            f"Wrote {s.unit_path} (0600: it carries the daemon's environment).",
            f"Started {LAUNCHD_LABEL}; it starts again at login. Logs: {s.log_path}",
        ]
    env = s.environment()
    write_private(s.env_path, "".join(_env_line(k, v) + "\n" for k, v in env.items()).encode())
    s.unit_path.parent.mkdir(parents=True, exist_ok=True)
    s.unit_path.write_text(s.unit_text(), encoding="utf-8")
    _check(run(["systemctl", "--user", "daemon-reload"]), "systemctl --user daemon-reload")
    _check(run(["systemctl", "--user", "enable", "--now", UNIT_NAME]), "systemctl --user enable")
    lines = [
        f"Wrote {s.unit_path} and {s.env_path} (0600: {', '.join(env)}).",
        f"Started {UNIT_NAME}; `threadline service status` shows it, `threadline service logs` its log.",
    ]
    user = s.environ.get("USER", "")
    linger = run(["loginctl", "show-user", user or str(os.getuid()), "--property=Linger"])
    if "Linger=yes" not in linger.stdout:
        lines.append(
            "It runs while you are logged in. To keep it running after logout and start it "
            f"at boot: sudo loginctl enable-linger {shlex.quote(user or '$USER')}"
        )
    return lines


def uninstall(s: Service, run: Runner) -> list[str]:
    """Stop the service and remove its files (the environment file holds secrets)."""
    if s.kind == "launchd":
        run(["launchctl", "bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"])
        removed = [p for p in (s.unit_path,) if p.exists()]
    else:
        run(["systemctl", "--user", "disable", "--now", UNIT_NAME])
        removed = [p for p in (s.unit_path, s.env_path) if p.exists()]
    for path in removed:
        path.unlink()
    if s.kind == "systemd":
        run(["systemctl", "--user", "daemon-reload"])
    if not removed:
        return ["No Threadline service was installed."]
    return [f"Stopped and removed {', '.join(str(p) for p in removed)}."]


def status_command(s: Service) -> list[str]:
    if s.kind == "launchd":
        return ["launchctl", "print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}"]
    return ["systemctl", "--user", "status", "--no-pager", UNIT_NAME]


def logs_command(s: Service, follow: bool, lines: int) -> list[str]:
    if s.kind == "launchd":
        return ["tail", f"-n{lines}", *(["-f"] if follow else []), str(s.log_path)]
    return [
        "journalctl", "--user", "-u", UNIT_NAME, f"--lines={lines}", "--no-pager",
        *(["--follow"] if follow else []),
    ]  # fmt: skip


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise ServiceError(f"{what} failed: {reason[-1] if reason else f'exit {done.returncode}'}")
