"""Configuration: load the TOML file, substitute `${NAME}` from the environment,
validate everything at start and report every problem as one clear line.

The keys are the contract in SPEC.md §2 (see `config.example.toml`).  Validation is
pydantic (already a dependency through sqlmodel); `load_config` turns its errors into
`ConfigError` with lines like ``telegram.token: environment variable
TELEGRAM_BOT_TOKEN is not set``.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.permissions import OfferedMode

DEFAULT_CONFIG = Path("~/.config/threadline/config.toml")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """Invalid configuration; `lines` holds one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageConfig(_Section):
    url: str = "sqlite:///~/.local/share/threadline/threadline.db"
    encrypt: bool = False
    key_file: str = "~/.local/share/threadline/secret.key"


class AgentConfig(_Section):
    allowed_roots: list[str] = Field(default_factory=lambda: ["~/code"])
    permission_mode: OfferedMode = "default"
    allow_bypass: bool = False
    permission_timeout_s: float = Field(default=600, gt=0)
    max_concurrent_sessions: int = Field(default=8, ge=1)
    model: str = ""
    cli_path: str = ""  # empty: the CLI bundled with claude-agent-sdk
    # The owner's time zone (IANA name, e.g. "Europe/Berlin") for schedules and for
    # "today" / "this month" in `cost`; empty: the machine's local time zone.
    timezone: str = ""
    # A scheduled run missed while the daemon was down: run it once when the daemon is
    # back ("run_once", several missed runs coalesced), or only say so ("report").
    schedule_missed: Literal["run_once", "report"] = "run_once"
    # Attachments an owner sends are downloaded up to this size (streamed, cut at the
    # cap) and documents saved to <session dir>/.threadline/inbox/; `get PATH` sends
    # files up to this size.
    max_file_mb: float = Field(default=20, gt=0)

    @field_validator("allowed_roots")
    @classmethod
    def _roots(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one directory is needed")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        if v:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {v!r} (use an IANA name such as 'Europe/Berlin')"
                ) from None
        return v

    def tz(self) -> tzinfo:
        """The owner's time zone."""
        if self.timezone:
            return ZoneInfo(self.timezone)
        from tzlocal import get_localzone

        return get_localzone()


class AccessConfig(_Section):
    owners: list[str] = Field(default_factory=list)

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        for o in v:
            platform, _, ident = o.partition(":")
            if platform not in ("telegram", "slack", "matrix") or not ident:
                raise ValueError(f"{o!r} is not 'telegram:ID', 'slack:ID' or 'matrix:@user:server'")
        return v


class TelegramConfig(_Section):
    enabled: bool = False
    token: str = ""
    base_url: str = ""
    chat_id: int = 0
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    webhook_secret: str = ""
    use_drafts: bool = True  # sendMessageDraft streaming in private chats


class SlackConfig(_Section):
    enabled: bool = False
    bot_token: str = ""
    app_token: str = ""
    signing_secret: str = ""
    mode: Literal["socket", "http"] = "socket"
    http_port: int = 3000
    base_url: str = ""
    channel: str = ""


class MatrixConfig(_Section):
    enabled: bool = False
    homeserver: str = "https://matrix.example.org"
    user_id: str = ""
    password: str = ""
    access_token: str = ""
    device_id: str = ""
    store_path: str = "~/.local/share/threadline/matrix-store"
    encryption: Literal["required", "optional", "off"] = "required"
    room: str = ""
    # The homeserver's per-user message limit (Synapse's rc_message): the bot paces
    # every event it sends (messages, edits, reactions) to stay within it.
    rate_per_second: float = Field(default=0.2, gt=0)
    rate_burst: int = Field(default=10, ge=1)


class DaemonConfig(_Section):
    log_level: str = "INFO"
    log_file: str = ""
    # Where the daemon keeps its runtime files (the attach socket, the list of Claude
    # Code processes it started).  Empty: the SQLite database's directory, or
    # ~/.local/share/threadline for other databases.
    data_dir: str = ""


class Config(_Section):
    storage: StorageConfig = Field(default_factory=StorageConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)

    def data_dir(self) -> Path:
        """The daemon's data directory (see `DaemonConfig.data_dir`)."""
        if self.daemon.data_dir:
            return Path(self.daemon.data_dir).expanduser()
        url = self.storage.url
        if url.startswith("sqlite:///") and url[len("sqlite:///") :] not in ("", ":memory:"):
            return Path(url[len("sqlite:///") :]).expanduser().parent
        return Path("~/.local/share/threadline").expanduser()

    def attach_socket(self) -> Path:
        """The Unix socket `threadline attach` and `threadline import ID` talk to."""
        return self.data_dir() / "run" / "attach.sock"

    def secrets(self, min_chars: int = 6) -> list[str]:
        """Every configured secret value at least `min_chars` long (log redaction
        skips shorter ones; the agent's environment is cleared of every one)."""
        values = [
            self.telegram.token,
            self.telegram.webhook_secret,
            self.slack.bot_token,
            self.slack.app_token,
            self.slack.signing_secret,
            self.matrix.password,
            self.matrix.access_token,
        ]
        return [v for v in values if v and len(v) >= max(min_chars, 1)]


def _substitute(value: Any, path: str, errors: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else k, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                errors.append(f"{path}: environment variable {name} is not set")
                return ""
            return os.environ[name]

        return _ENV_RE.sub(repl, value)
    return value


def _enabled_sections(raw: dict[str, Any]) -> set[str]:
    return {
        name
        for name in ("telegram", "slack", "matrix")
        if isinstance(raw.get(name), dict) and raw[name].get("enabled")
    }


def parse_config(text: str, *, source: str = "config") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{source}: not valid TOML: {e}"]) from None
    errors: list[str] = []
    enabled = _enabled_sections(raw)
    # A placeholder only matters in a section that is in use.
    substituted: dict[str, Any] = {}
    for key, value in raw.items():
        sink: list[str] = []
        substituted[key] = _substitute(value, key, sink)
        if key not in ("telegram", "slack", "matrix") or key in enabled:
            errors.extend(sink)
    try:
        cfg = Config.model_validate(substituted)
    except ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            errors.append(f"{loc}: {err['msg']}")
        raise ConfigError(errors) from None
    errors.extend(_semantic_errors(cfg))
    if errors:
        raise ConfigError(errors)
    return cfg


def _semantic_errors(cfg: Config) -> list[str]:
    errors: list[str] = []
    if cfg.agent.permission_mode == "bypassPermissions" and not cfg.agent.allow_bypass:
        errors.append("agent.permission_mode: bypassPermissions needs agent.allow_bypass = true")
    if cfg.telegram.enabled:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]{20,}", cfg.telegram.token):
            errors.append(
                "telegram.token: not a bot token (expected '123456:ABC…' from @BotFather)"
            )
        if cfg.telegram.mode == "webhook" and not cfg.telegram.webhook_url:
            errors.append("telegram.webhook_url: needed when telegram.mode = 'webhook'")
    # No owners is fine: `threadline pair` adds them (kept in the database).
    if not (cfg.telegram.enabled or cfg.slack.enabled or cfg.matrix.enabled):
        errors.append(
            "no chat platform enabled: set enabled = true in [telegram], [slack] or [matrix]"
        )
    return errors


def config_path(explicit: str | Path | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("THREADLINE_CONFIG")
    return Path(env).expanduser() if env else DEFAULT_CONFIG.expanduser()


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (create one with `threadline init`)"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    return parse_config(text, source=str(path))
