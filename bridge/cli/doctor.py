"""`threadline doctor`: check each part a running daemon needs and say how to fix
what is wrong.  The core checks (host name, database, allowed roots, Claude Code and its login)
are here; each enabled platform's come from its spec (`adapters/<p>/doctor.py`) as
results, printed here one line each, and for a problem the fix on the next line.  `run_checks` returns
the number of failed checks (the CLI exits 1 if any).

A PostgreSQL `[storage] url` on a host that is not this machine gets a warning unless
it requires TLS with the server's certificate checked (`sslmode=verify-full` or
`verify-ca`, in the URL or `PGSSLMODE`): hosts outside one private network must not
send prompts and answers to the database in clear text."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from rich.console import Console
from rich.text import Text

from adapters.registry import BY_NAME
from adapters.spec import CheckResult, fail, ok, warn
from bridge.config import Config, ConfigError, load_config

_LABEL = {"ok": ("ok  ", "green"), "fail": ("FAIL", "red"), "warn": ("warn", "yellow")}


def show(out: Console, result: CheckResult) -> None:
    """Print one result: its status and what, and the fix on the next line.  As text, not
    markup: a check names config sections (`[telegram]`) and paths that markup would eat."""
    fix = f"\n     → {result.fix}" if result.status != "ok" else ""
    out.print(Text.assemble(_LABEL[result.status], f" {result.what}{fix}"), highlight=False)


def _report(out: Console, results: list[CheckResult]) -> int:
    for result in results:
        show(out, result)
    return sum(r.status == "fail" for r in results)


def diagnose(path: Path, out: Console) -> int:
    """`threadline doctor` on the config at `path`: every check that can run, even when
    the config has errors (each error is a failed check; the checks that need only the
    core sections still run, the platforms' are skipped).  The exit status: 0, 1 for
    failed checks, 2 when the config itself is wrong."""
    try:
        cfg = load_config(path)
    except ConfigError as e:
        for line in e.lines:
            show(out, fail(f"config: {line}", f"fix it in {path}"))
        try:
            core = load_config(path, chat=False)
        except ConfigError:
            return 2  # nothing else can be checked against a config that does not load
        _report(out, _core_checks(core))
        out.print("Chat platform checks skipped until the config is fixed.", highlight=False)
        return 2
    show(out, ok(f"config {path}"))
    return 1 if run_checks(cfg, out) else 0


def run_checks(cfg: Config, out: Console) -> int:
    failures = _report(out, _core_checks(cfg))
    for name in cfg.enabled_platforms():
        failures += asyncio.run(check_platform(cfg, name, out))
    return failures


async def check_platform(cfg: Config, name: str, out: Console) -> int:
    """Run the platform `name`'s checks and print them; the number of failures."""
    from bridge.cli.daemon import all_owners

    spec = BY_NAME[name]
    return _report(out, await spec.doctor(cfg.platform(name), all_owners(cfg)))


def _credentials(cli: str) -> CheckResult:
    """Whether Claude Code can log in, as the CLI itself sees it in this environment
    (the daemon's, when doctor runs as it does): no network is used."""
    from agent.credentials import auth_status, login_command

    status = auth_status(cli, os.environ)
    if status is None:
        return warn(
            "could not ask Claude Code whether it is logged in",
            f"run `{cli} auth status` to see why",
        )
    if status.logged_in:
        how = status.method + (f" from {status.source}" if status.source else "")
        return ok(f"Claude Code credentials: {how}")
    return fail(
        f"Claude Code is not logged in (no ANTHROPIC_API_KEY, no login in {status.config_dir})",
        "set ANTHROPIC_API_KEY in the daemon's environment (or its service file), or log in"
        f" once as the user the daemon runs as: {login_command(cli, os.environ)}",
    )


VERIFIED_TLS = ("verify-full", "verify-ca")


def _is_local(host: str) -> bool:
    """A Unix socket directory, `localhost` or a loopback address."""
    host = host.strip().strip("[]")
    if host in ("", "localhost") or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def storage_tls(url: str, env: Mapping[str, str] = os.environ) -> CheckResult | None:
    """A warning for a PostgreSQL URL to another machine that does not require checked
    TLS; None when there is nothing to say (SQLite, loopback, verified TLS)."""
    if not url.startswith("postgres"):
        return None
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        netloc_host = parts.hostname or ""
    except ValueError:
        return None  # the database check says what is wrong with the URL
    hosts = [h for value in query.get("host", []) for h in value.split(",")]
    hosts += [h.rsplit(":", 1)[0] if h.count(":") == 1 else h for h in netloc_host.split(",")]
    remote = [h for h in hosts if not _is_local(h)]
    if not remote:
        return None
    mode = (query.get("sslmode") or [env.get("PGSSLMODE", "")])[-1]
    if mode in VERIFIED_TLS:
        return None
    return warn(
        f"database on {remote[0]} is reached without verified TLS"
        f" (sslmode={mode or 'prefer'}): prompts and answers may cross the network readable",
        "hosts outside one private network reach PostgreSQL over TLS: add"
        " ?sslmode=verify-full&sslrootcert=/path/to/root.crt to [storage] url,"
        " with a role of its own for each host",
    )


def _core_checks(cfg: Config) -> list[CheckResult]:
    from agent.cli import claude_cli_path, claude_version
    from bridge.cli.daemon import open_database

    results: list[CheckResult] = [ok(f"host {cfg.daemon.host}")]
    try:
        db = open_database(cfg)
        db.check()
        results.append(ok(f"database {db.url.split('@')[-1]}"))
        db.close()
    except Exception as e:  # any driver error is a failed check, not a crash
        results.append(
            fail(
                f"database: {type(e).__name__}: {str(e)[:200]}",
                "check [storage] url and that its directory is writable",
            )
        )
    tls = storage_tls(cfg.storage.url)
    if tls is not None:
        results.append(tls)

    for root in cfg.agent.allowed_roots:
        path = Path(os.path.expanduser(root))
        if path.is_dir():
            results.append(ok(f"allowed root {path}"))
        else:
            results.append(
                fail(
                    f"allowed root {root} does not exist",
                    f"create it (mkdir -p {root}) or fix [agent] allowed_roots",
                )
            )

    cli = claude_cli_path(cfg.agent.cli_path)
    version = claude_version(cli) if cli else None
    if version:
        results.append(ok(f"Claude Code CLI {version} ({cli})"))
    else:
        results.append(
            fail(
                "Claude Code CLI not found or not runnable",
                "reinstall claude-agent-sdk (it bundles the CLI) or set [agent] cli_path",
            )
        )
    if cli and version:
        results.append(_credentials(cli))
    return results
