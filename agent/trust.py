"""Folder trust: what a folder's own Claude Code settings would run, and what the CLI is given.

Claude Code loads settings from the folder it runs in — hooks, MCP servers, ``env``
(``BASH_ENV`` is sourced by every Bash command), ``apiKeyHelper``, the status line,
plugins, allow rules — and each of them can run a program. Interactive ``claude`` asks
"Do you trust this folder?" first; the SDK never asks. So the CLI never reads the
folder's settings itself (``SETTING_SOURCES`` is ``["user"]``): for an untrusted folder
it gets none of them; for a trusted one it gets the *snapshot* the owner was shown and
trusted, as ``--settings`` JSON and ``--mcp-config`` servers, so a file changed after
trust (the CLI hot-reloads settings files it reads, measured) cannot run anything new.

- ``inspect_folder`` reads every file the CLI would load from the folder (measured with
  CLI 2.1.337: ``.claude/settings.json`` and ``.claude/settings.local.json`` of the folder,
  ``settings.local.json`` of the git root above it, ``.mcp.json`` of the folder *and of
  every folder above it*); to be safe it reads those three files in the folder and every
  folder above it (skipping the user's own config dir). It lists each item that would be
  enabled, the merged snapshot, and a fingerprint of everything read. Nothing it reads
  can crash it: a file that is not a small, regular, UTF-8 JSON object is an
  "unreadable" finding (and such a folder cannot be trusted until it is fixed).
- ``project_instructions`` is the folder's ``CLAUDE.md`` text, which every session gets
  through its system prompt (instructions are not code; ``@imports`` are not followed).
- ``claude_trusted`` reads Claude Code's own ``hasTrustDialogAccepted`` record.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_agent_sdk.types import SettingSource

MAX_FILE_BYTES = 512 * 1024
MAX_INSTRUCTIONS_CHARS = 64_000
_SETTINGS_FILES = (".claude/settings.json", ".claude/settings.local.json")
_HELPERS = (
    "apiKeyHelper",
    "awsAuthRefresh",
    "awsCredentialExport",
    "gcpAuthRefresh",
    "otelHeadersHelper",
)
_COMMAND_SETTINGS = ("statusLine", "subagentStatusLine", "fileSuggestion")
_INSTRUCTION_FILES = ("CLAUDE.md", "CLAUDE.local.md", ".claude/CLAUDE.md")


@dataclass(frozen=True, slots=True)
class Item:
    """One thing the folder's settings would enable. ``kind``: hook, mcp, env, helper,
    command, plugin, marketplace, mcp-approval, allow, mode, directory, other, unreadable."""

    kind: str
    source: str  # the file it comes from, relative to the folder where possible
    text: str


@dataclass(frozen=True, slots=True)
class FolderSettings:
    folder: Path  # resolved
    items: tuple[Item, ...]
    fingerprint: str  # sha256 of everything read; "" when there is nothing
    # What a trusted session's CLI is given: the settings files merged (outermost
    # first, settings.local.json over settings.json) and the .mcp.json servers.
    settings: dict[str, Any] = field(default_factory=dict, compare=False)
    mcp_servers: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def needs_trust(self) -> bool:
        return bool(self.items)

    @property
    def unreadable(self) -> bool:
        return any(i.kind == "unreadable" for i in self.items)


# The CLI reads the user's own settings, never the folder's (see above).
SETTING_SOURCES: list[SettingSource] = ["user"]


def claude_config_file(env: Mapping[str, str]) -> Path:
    """Where the CLI keeps ``hasTrustDialogAccepted`` (measured: ``$CLAUDE_CONFIG_DIR/
    .claude.json`` when that is set, else ``~/.claude.json``)."""
    config_dir = env.get("CLAUDE_CONFIG_DIR")
    if config_dir:
        return Path(config_dir).expanduser() / ".claude.json"
    return Path(env.get("HOME") or Path.home()).expanduser() / ".claude.json"


def user_config_dir(env: Mapping[str, str]) -> Path:
    config_dir = env.get("CLAUDE_CONFIG_DIR")
    home = Path(env.get("HOME") or Path.home()).expanduser()
    return (Path(config_dir).expanduser() if config_dir else home / ".claude").resolve()


def claude_trusted(folder: Path, env: Mapping[str, str]) -> bool:
    """Claude Code's own trust dialog was accepted for ``folder`` or a folder above it
    (as the CLI reads it), never counting the home directory or ``/``."""
    data = _read_json(claude_config_file(env))
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, dict):
        return False
    home = Path(env.get("HOME") or Path.home()).expanduser().resolve()
    for directory in (folder, *folder.parents):
        if directory in (home, Path(directory.anchor)):
            break
        entry = projects.get(str(directory))
        if isinstance(entry, dict) and entry.get("hasTrustDialogAccepted") is True:
            return True
    return False


def inspect_folder(cwd: Path, env: Mapping[str, str] | None = None) -> FolderSettings:
    """Everything ``cwd``'s own settings would enable if the folder were trusted."""
    folder = cwd.resolve()
    skip = user_config_dir(env or os.environ)
    found: list[tuple[str, Any]] = []  # (label, parsed content or unreadable marker)
    items: list[Item] = []
    settings: dict[str, Any] = {}
    servers: dict[str, Any] = {}
    for directory in reversed((folder, *folder.parents)):  # outermost first
        for name in (*_SETTINGS_FILES, ".mcp.json"):
            path = directory / name
            if _resolved(path.parent) == skip:
                continue  # the user's own settings: loaded either way
            label = name if directory == folder else str(path)
            content, error = _load(path)
            if error is not None:
                items.append(Item("unreadable", label, f"unreadable settings: {error}"))
                found.append((label, {"unreadable": error}))
                continue
            if content is None:
                continue
            found.append((label, content))
            if name == ".mcp.json":
                items.extend(_mcp_items(label, content.get("mcpServers"), content))
                if isinstance(content.get("mcpServers"), dict):
                    servers.update(content["mcpServers"])
            else:
                items.extend(_settings_items(label, content))
                settings = _merge(settings, content)
    if not items:
        return FolderSettings(folder, (), "")
    permissions = settings.get("permissions")
    if isinstance(permissions, dict):  # Threadline's own mode (and allow_bypass) decides
        settings["permissions"] = {k: v for k, v in permissions.items() if k != "defaultMode"}
    canonical = json.dumps(found, sort_keys=True, default=str)
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    return FolderSettings(folder, tuple(items), fingerprint, settings, servers)


def _merge(base: Any, over: Any) -> Any:
    """Settings merged as the CLI merges its sources: objects key by key, lists joined
    (without repeats), anything else replaced by the later file's value."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(over, list):
        return base + [v for v in over if v not in base]
    return over


def project_instructions(cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """The folder's CLAUDE.md files (and those of the folders above it), as the CLI would
    read them, for the session's system prompt; "" when there are none. The
    user's own ``~/.claude/CLAUDE.md`` is left out: the CLI loads it as a user setting."""
    folder = cwd.resolve()
    skip = user_config_dir(env or os.environ)
    parts: list[str] = []
    for directory in reversed((folder, *folder.parents)):  # outermost first, like the CLI
        for name in _INSTRUCTION_FILES:
            if _resolved((directory / name).parent) == skip:
                continue
            raw, error = _read_bytes(directory / name)
            if raw is None or error is not None:
                continue
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                parts.append(f"Contents of {directory / name}:\n\n{text}")
    if not parts:
        return ""
    text = "\n\n".join(parts)[:MAX_INSTRUCTIONS_CHARS]
    return "Instructions from this project's CLAUDE.md files:\n\n" + text


# --- reading, defensively -------------------------------------------------------------


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None


def _read_bytes(path: Path) -> tuple[bytes | None, str | None]:
    """(bytes, None), (None, None) if absent, or (None, why) — never blocks on a FIFO or
    device, never reads more than ``MAX_FILE_BYTES``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None, None
    except NotADirectoryError:
        return None, None
    except OSError as exc:
        return None, f"cannot open ({exc.strerror or type(exc).__name__})"
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return None, "a directory, not a file"
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file"
        if info.st_size > MAX_FILE_BYTES:
            return None, f"too large ({info.st_size} bytes)"
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return None, "too large"
        return data, None
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or type(exc).__name__})"
    finally:
        os.close(fd)


def _read_json(path: Path) -> Any:
    data, error = _read_bytes(path)
    if data is None or error is not None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _load(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    data, error = _read_bytes(path)
    if error is not None:
        return None, error
    if data is None:
        return None, None
    if not data.strip():
        return None, None  # an empty file enables nothing
    try:
        content = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except RecursionError:
        return None, "nested too deeply"
    except ValueError as exc:
        return None, f"not valid JSON ({str(exc)[:80]})"
    if not isinstance(content, dict):
        return None, "not a JSON object"
    return (content or None), None


def _text(value: object) -> str:
    """The whole value, never shortened: the owner must see all of what they trust (a
    long list goes to the chat as a file)."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _settings_items(source: str, content: Mapping[str, Any]) -> list[Item]:
    items: list[Item] = []
    for key, value in content.items():
        if key == "hooks":
            items.extend(_hook_items(source, value))
        elif key == "env":
            pairs = value.items() if isinstance(value, dict) else [("(malformed)", value)]
            items.extend(Item("env", source, f"env {name}={_text(v)}") for name, v in pairs)
        elif key in _HELPERS:
            items.append(Item("helper", source, f"{key}: {_text(value)}"))
        elif key in _COMMAND_SETTINGS:
            command = value.get("command", value) if isinstance(value, dict) else value
            items.append(Item("command", source, f"{key}: {_text(command)}"))
        elif key == "enabledPlugins" and isinstance(value, dict):
            items.extend(Item("plugin", source, f"plugin {name}") for name in value)
        elif key == "extraKnownMarketplaces" and isinstance(value, dict):
            items.extend(
                Item("marketplace", source, f"plugin marketplace {name}: {_text(spec)}")
                for name, spec in value.items()
            )
        elif key in ("enableAllProjectMcpServers", "enabledMcpjsonServers"):
            items.append(Item("mcp-approval", source, f"{key}: {_text(value)}"))
        elif key == "mcpServers":
            items.extend(_mcp_items(source, value, content))
        elif key == "permissions" and isinstance(value, dict):
            items.extend(_permission_items(source, value))
        else:
            items.append(Item("other", source, f"setting {key}: {_text(value)}"))
    return items


def _hook_items(source: str, hooks: object) -> list[Item]:
    if not isinstance(hooks, dict):
        return [Item("hook", source, f"hooks: {_text(hooks)}")]
    items: list[Item] = []
    for event, groups in hooks.items():
        for group in groups if isinstance(groups, list) else [groups]:
            matcher = group.get("matcher") if isinstance(group, dict) else None
            where = f"{event}" + (f" ({matcher})" if matcher else "")
            inner = group.get("hooks") if isinstance(group, dict) else None
            for hook in inner if isinstance(inner, list) else [group]:
                if isinstance(hook, dict):
                    what = next((hook[k] for k in ("command", "url", "prompt") if k in hook), hook)
                else:
                    what = hook
                items.append(Item("hook", source, f"hook {where}: {_text(what)}"))
    return items


def _mcp_items(source: str, servers: object, whole: Mapping[str, Any]) -> list[Item]:
    if not isinstance(servers, dict):
        return [Item("other", source, f"MCP settings: {_text(whole)}")]
    items: list[Item] = []
    for name, spec in servers.items():
        if isinstance(spec, dict) and "command" in spec:
            args = spec.get("args") or []
            words = [spec["command"], *(args if isinstance(args, list) else [args])]
            shown = " ".join(_text(w) for w in words)
            if isinstance(spec.get("env"), dict) and spec["env"]:
                shown += f" (env {', '.join(map(str, spec['env']))})"
        elif isinstance(spec, dict) and "url" in spec:
            shown = _text(spec["url"])
        else:
            shown = _text(spec)
        items.append(Item("mcp", source, f"MCP server {name}: {shown}"))
    return items


def _permission_items(source: str, permissions: Mapping[str, Any]) -> list[Item]:
    items: list[Item] = []
    for key, value in permissions.items():
        if key == "allow" and isinstance(value, list):
            items.extend(
                Item("allow", source, f"allow rule {_text(rule)} (runs without asking)")
                for rule in value
            )
        elif key == "defaultMode":
            shown = f"default mode {_text(value)} (not applied: Threadline's mode setting decides)"
            items.append(Item("mode", source, shown))
        elif key == "additionalDirectories":
            items.append(Item("directory", source, f"extra directories {_text(value)}"))
        else:
            items.append(Item("other", source, f"permissions.{key}: {_text(value)}"))
    return items
