"""`threadline init`: from nothing to a config that `threadline run` accepts.

It asks — or takes flags, for scripts — which chat platform, that platform's
credentials (the fields its spec declares; a secret is also read from its environment
variable, e.g. ``TELEGRAM_BOT_TOKEN``) and the directory sessions may start in
(created when the person agrees).  The credentials are checked live with the
platform's own doctor checks before anything is written; a rejected token writes
nothing.  The file is the commented example with those values filled in, owners left
empty (pairing is the next step, and the printed instructions say how), written 0600
because it holds the secret.  Every problem is one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from adapters.registry import BY_NAME
from adapters.spec import AnySpec, CheckResult
from bridge.config import ConfigError, example_config, parse_config

_KEY = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*=\s*)(.*)$")
_SECTION = re.compile(r"^\s*\[([A-Za-z_][A-Za-z0-9_.]*)\]\s*(#.*)?$")


class InitError(Exception):
    """`threadline init` cannot go on; `str()` is the one line to show."""


Ask = Callable[[str, str, bool], str]  # (question, default, hide input) → answer


@dataclass(frozen=True, slots=True)
class Answers:
    platform: str
    values: Mapping[str, str]  # the platform section's keys
    root: Path


def fill(example: str, values: Mapping[tuple[str, str], object]) -> str:
    """`example` with `key = …` in `[section]` set to each value (as TOML), comments
    and every other line kept.  A key the example lacks is added under its section."""
    out: list[str] = []
    section = ""
    pending = dict(values)

    def flush_missing(name: str) -> None:
        for (sec, key), value in list(pending.items()):
            if sec == name:
                out.append(f"{key} = {_toml(value)}")
                del pending[(sec, key)]

    for line in example.splitlines():
        header = _SECTION.match(line)
        if header:
            blanks = 0
            while out and not out[-1].strip():  # added keys go above the blank lines
                out.pop()
                blanks += 1
            flush_missing(section)
            out.extend([""] * blanks)
            section = header.group(1)
            out.append(line)
            continue
        match = _KEY.match(line)
        if match and not line.lstrip().startswith("#") and (section, match.group(2)) in pending:
            indent, key, eq, _ = match.groups()
            out.append(f"{indent}{key}{eq}{_toml(pending.pop((section, key)))}")
            continue
        out.append(line)
    flush_missing(section)
    for (sec, key), value in pending.items():  # a section the example lacks
        out.extend(["", f"[{sec}]", f"{key} = {_toml(value)}"])
    return "\n".join(out) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    # A JSON string is a valid TOML basic string (the same escapes).
    return json.dumps(str(value), ensure_ascii=False)


def gather(
    *,
    platform: str | None,
    given: Mapping[str, str],
    root: str | None,
    create_root: bool | None,
    ask: Ask,
    confirm: Callable[[str], bool],
    environ: Mapping[str, str] = os.environ,
) -> Answers:
    """What to write: from the flags, the environment, or the person's answers."""
    name = platform or ask(f"Chat platform ({', '.join(BY_NAME)})", "telegram", False)
    spec = BY_NAME.get(name.strip().lower())
    if spec is None:
        raise InitError(f"unknown platform {name!r}: choose {', '.join(BY_NAME)}")
    known = set(spec.config_model.model_fields)
    unknown = sorted(set(given) - known)
    if unknown:
        raise InitError(
            f"[{spec.name}] has no key {unknown[0]!r} (keys: {', '.join(sorted(known))})"
        )
    values = dict(given)
    for field in spec.setup:
        if values.get(field.key):
            continue
        from_env = environ.get(field.env, "") if field.env else ""
        values[field.key] = from_env or ask(field.question, field.default, field.secret).strip()
        if not values[field.key]:
            raise InitError(f"{spec.name}.{field.key} is needed ({field.question})")
    where = Path(root or ask("Directory sessions may start in", "~/code", False)).expanduser()
    if not where.is_dir():
        if where.exists():
            raise InitError(f"{where} is not a directory")
        agreed = (
            create_root
            if create_root is not None
            else confirm(f"{where} does not exist. Create it?")
        )
        if not agreed:
            raise InitError(f"{where} does not exist (create it, or pass --create-root)")
        where.mkdir(parents=True, mode=0o755)
    return Answers(spec.name, values, where.resolve())


def render(answers: Answers) -> str:
    """The config text for `answers`, validated as `threadline run` would."""
    values: dict[tuple[str, str], object] = {
        ("agent", "allowed_roots"): [str(answers.root)],
        ("access", "owners"): [],
    }
    for spec_name in BY_NAME:
        values[(spec_name, "enabled")] = spec_name == answers.platform
    for key, value in answers.values.items():
        values[(answers.platform, key)] = value
    text = fill(example_config(), values)
    try:
        parse_config(text, source="the new config")
    except ConfigError as e:
        raise InitError(e.lines[0]) from None
    return text


def live_check(spec: AnySpec, answers: Answers, text: str) -> list[CheckResult]:
    """The platform's doctor checks against its API with the new credentials.  Results
    about owners are left out: there are none yet, pairing comes next."""
    cfg = parse_config(text).platform(spec.name)
    results = asyncio.run(spec.doctor(cfg, []))
    return [r for r in results if "owner" not in r.what.lower()]


def write(path: Path, text: str) -> None:
    """Write the config 0600 (it holds the secret), its directory 0700, never over a file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
