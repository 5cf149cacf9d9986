"""Configuration: load the TOML file, substitute `${NAME}` from the environment,
validate everything at start and report every problem as one clear line.

The keys are documented in `config.example.toml`.  The core sections are declared
here; each chat platform's section (``[telegram]`` …) is its package's config model,
composed in from `adapters.registry`.  Validation is pydantic (already a dependency
through sqlmodel); `load_config` turns its errors into `ConfigError` with lines like
``telegram.token: environment variable TELEGRAM_BOT_TOKEN is not set``.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import tzinfo
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from adapters.registry import PLATFORMS
from adapters.spec import PlatformConfig
from agent.permissions import OfferedMode
from bridge.config_errors import plain_lines
from bridge.host_name import check_host_name, default_host_name

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


# Owner values that old example configs carried: not anybody's id.
_PLACEHOLDER_OWNERS = frozenset({"telegram:123456789"})


class AccessConfig(_Section):
    owners: list[str] = Field(default_factory=list)

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        names = [p.name for p in PLATFORMS]
        for o in v:
            if o in _PLACEHOLDER_OWNERS:
                raise ValueError(f"{o!r} is the example's placeholder: use your own id, or pair")
            platform, _, ident = o.partition(":")
            if platform not in names or not ident:
                shapes = _one_of([f"'{p.owner_example}'" for p in PLATFORMS])
                raise ValueError(f"{o!r} is not {shapes}")
        return v


def _one_of(items: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return " or ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class DaemonConfig(_Section):
    log_level: str = "INFO"
    log_file: str = ""
    # Where the daemon keeps its runtime files (the attach socket, the list of Claude
    # Code processes it started).  Empty: the SQLite database's directory, or
    # ~/.local/share/threadline for other databases.
    data_dir: str = ""
    # This machine's name among the hosts sharing the database (`bridge/host_name.py`);
    # default: the hostname, cleaned.
    host: str = Field(default_factory=default_host_name)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return check_host_name(v)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        # Checked here, not at logging set-up: a typo must fail `doctor`, not `run`.
        if v.upper() not in LOG_LEVELS:
            raise ValueError(f"{v!r} is not one of {', '.join(LOG_LEVELS)}")
        return v.upper()


class _CoreConfig(_Section):
    """The sections the core owns; `Config` adds one per platform."""

    storage: StorageConfig = Field(default_factory=StorageConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    if TYPE_CHECKING:  # declared by `Config`, after the platforms (see there)
        daemon: DaemonConfig

    def platform(self, name: str) -> PlatformConfig:
        """The section of the platform `name` (``[telegram]`` …)."""
        section = getattr(self, name, None)
        if not isinstance(section, PlatformConfig):
            raise KeyError(name)
        return section

    def enabled_platforms(self) -> list[str]:
        """The names of the enabled platforms, in registry order."""
        return [p.name for p in PLATFORMS if self.platform(p.name).enabled]

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
        values = [v for p in PLATFORMS for v in self.platform(p.name).secrets()]
        return [v for v in values if v and len(v) >= max(min_chars, 1)]


# The whole file: the core sections plus one per platform, each its package's model.
# Built from the registry so that a new platform needs no line here; for the type
# checker it is the core (platform sections are reached through `platform(name)`).
if TYPE_CHECKING:
    Config = _CoreConfig
else:
    Config = create_model(
        "Config",
        __base__=_CoreConfig,
        **{p.name: (p.config_model, Field(default_factory=p.config_model)) for p in PLATFORMS},
        # Last, after the platforms: errors come in the order the sections always had.
        daemon=(DaemonConfig, Field(default_factory=DaemonConfig)),
    )


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
        for name in (p.name for p in PLATFORMS)
        if isinstance(raw.get(name), dict) and raw[name].get("enabled")
    }


def parse_config(text: str, *, source: str = "config", chat: bool = True) -> Config:
    """The config in `text`.  With `chat=False` (commands that only read the local
    database: sessions, audit, attach, import, unpair) the chat platforms' credentials
    are not required: an unset `${TOKEN}` or a malformed token there is no error."""
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
        if key not in {p.name for p in PLATFORMS} or (chat and key in enabled):
            errors.extend(sink)
    try:
        cfg = Config.model_validate(substituted)
    except ValidationError as e:
        errors.extend(plain_lines(e, Config))
        raise ConfigError(errors) from None
    errors.extend(_semantic_errors(cfg, chat=chat))
    if errors:
        raise ConfigError(errors)
    return cfg


def _semantic_errors(cfg: Config, *, chat: bool = True) -> list[str]:
    errors: list[str] = []
    if cfg.agent.permission_mode == "bypassPermissions" and not cfg.agent.allow_bypass:
        errors.append("agent.permission_mode: bypassPermissions needs agent.allow_bypass = true")
    if not chat:
        return errors
    for name in cfg.enabled_platforms():
        errors.extend(cfg.platform(name).problems())
    # No owners is fine: `threadline pair` adds them (kept in the database).
    if not cfg.enabled_platforms():
        sections = _one_of([f"[{p.name}]" for p in PLATFORMS])
        errors.append(f"no chat platform enabled: set enabled = true in {sections}")
    return errors


def example_config() -> str:
    """The commented example config `threadline init` writes.  It lives at the top of
    the checkout (`config.example.toml`); `bridge/config.example.toml` is a link to it,
    which the wheel carries as a file, so an installed package has it too."""
    return resources.files("bridge").joinpath("config.example.toml").read_text(encoding="utf-8")


def config_path(explicit: str | Path | None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("THREADLINE_CONFIG")
    return Path(env).expanduser() if env else DEFAULT_CONFIG.expanduser()


def load_config(path: Path, *, chat: bool = True) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (create one with `threadline init`)"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    return parse_config(text, source=str(path), chat=chat)
