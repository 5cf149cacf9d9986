"""The `threadline` command line: init, run, doctor, pair, unpair, sessions, audit, attach,
import.

Every command takes `--config FILE` (default `$THREADLINE_CONFIG`, then
`~/.config/threadline/config.toml`).  Errors are one line each and exit non-zero;
no traceback for a user's mistake.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from adapters.registry import BY_NAME, PLATFORMS
from bridge.cli import service
from bridge.cli.consoles import err, out
from bridge.cli.consoles import load_config_or_exit as _load
from bridge.cli.verify import verify_app
from bridge.config import Config, config_path

# Plain help (no rich panels): rich's help shows `--help <bool>` and rewraps docstrings.
app = typer.Typer(
    help="Claude Code sessions as chat threads.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Config file (default: $THREADLINE_CONFIG, then ~/.config/threadline/config.toml)",
    ),
]
_NAMES = ", ".join(p.name for p in PLATFORMS[:-1]) + f" or {PLATFORMS[-1].name}"


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("threadline")
        except metadata.PackageNotFoundError:  # run from a checkout that was never installed
            version = "unknown (not installed)"
        out.print(f"threadline {version}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Claude Code sessions as chat threads."""


@app.command()
def init(
    config: ConfigOpt = None,
    platform: Annotated[
        str | None, typer.Option(metavar="NAME", help=f"The chat platform: {_NAMES}")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A key of the platform's section, e.g. --set token=123:ABC (repeatable)",
        ),
    ] = None,
    root: Annotated[
        str | None, typer.Option(metavar="DIR", help="Directory sessions may start in")
    ] = None,
    create_root: Annotated[
        bool | None,
        typer.Option("--create-root/--no-create-root", help="Create DIR if it does not exist"),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Check the credentials live first")
    ] = True,
) -> None:
    """Write a config that `threadline run` accepts: asks for (or takes) the platform,
    its token and the sessions' directory, checks the token, never overwrites."""
    from bridge.cli import first_run
    from bridge.cli.doctor import show

    path = config_path(config)
    if path.exists():
        err.print(f"{path} exists already; not overwriting it.")
        raise typer.Exit(1)
    given: dict[str, str] = {}
    for item in set_ or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            err.print(f"--set {item!r}: expected KEY=VALUE")
            raise typer.Exit(2)
        given[key.strip()] = value

    def ask(question: str, default: str, hide: bool) -> str:
        try:
            answer: str = typer.prompt(
                question, default=default or None, hide_input=hide, show_default=not hide
            )
        except (typer.Abort, EOFError):
            raise first_run.InitError(
                f"{question}: no answer (no terminal to ask on; pass it as a flag)"
            ) from None
        return answer

    def confirm(question: str) -> bool:
        try:
            return bool(typer.confirm(question, default=True))
        except (typer.Abort, EOFError):
            return False

    try:
        answers = first_run.gather(
            platform=platform,
            given=given,
            root=root,
            create_root=create_root,
            ask=ask,
            confirm=confirm,
        )
        text = first_run.render(answers)
    except first_run.InitError as e:
        err.print(f"threadline init: {e}", highlight=False)
        raise typer.Exit(2) from None
    spec = BY_NAME[answers.platform]
    if check:
        results = first_run.live_check(spec, answers, text)
        for result in results:
            show(out, result)
        if any(r.status == "fail" for r in results):
            err.print("Nothing written: fix the above and run `threadline init` again.")
            raise typer.Exit(1)
    first_run.write(path, text)
    prefix = "" if path == config_path(None) else f" --config {path}"
    out.print(
        f"Wrote {path} (mode 0600: it holds the {spec.title} credentials).\n"
        f"Sessions may start under {answers.root}.\n"
        f"Next:\n"
        f"  threadline run{prefix}        # or: threadline service install{prefix}\n"
        f"  threadline pair{prefix}       # then send the code to the bot: you become its owner\n"
        "Claude Code needs ANTHROPIC_API_KEY in the daemon's environment, or a login:"
        f" threadline claude{prefix} auth login",
        highlight=False,
    )


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the daemon: every enabled adapter, the Claude Code host, the scheduler."""
    from bridge.cli.daemon import run as run_daemon

    run_daemon(_load(config))


@app.command()
def doctor(config: ConfigOpt = None) -> None:
    """Check config, database, Claude Code and each platform's credentials."""
    from bridge.cli.doctor import diagnose

    status = diagnose(config_path(config), out)
    if status:
        err.print("Problems found: the lines marked FAIL say how to fix each.")
        raise typer.Exit(status)
    out.print("All checks passed.")


@app.command()
def pair(
    platform: Annotated[
        str | None,
        typer.Option(metavar="NAME", help=f"Only valid on this platform: {_NAMES}"),
    ] = None,
    list_owners: Annotated[
        bool, typer.Option("--list", help="List the owners instead (revoke with `unpair`)")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Print a one-time pairing code (and link, and QR code) that makes whoever uses
    it an owner.  Single use, valid for 10 minutes.  `pair --list` lists the owners;
    `unpair KEY` revokes a paired one."""
    import asyncio

    from bridge.access.pairing import Pairing, key_path, load_signing_key
    from bridge.cli.daemon import open_database

    cfg = _load(config, chat=not list_owners)
    if list_owners:
        _list_owners(cfg)
        return
    enabled = cfg.enabled_platforms()
    if platform is not None and platform not in BY_NAME:
        err.print(f"--platform must be one of {', '.join(BY_NAME)}")
        raise typer.Exit(2)
    if platform is not None and platform not in enabled:
        err.print(f"{platform} is not enabled in the config; no code issued.")
        raise typer.Exit(1)
    if not enabled:
        err.print("No chat platform is enabled in the config; no code issued.")
        raise typer.Exit(1)
    db = open_database(cfg)
    issued = Pairing(db, load_signing_key(key_path(cfg))).issue(platform or "")
    db.close()
    code, until = issued.code, issued.expires.strftime("%H:%M UTC")
    scope = f"on {BY_NAME[platform].title} only" if platform else "on any platform"
    out.print(
        Text.assemble(
            "Pairing code: ", (code, "bold"), f"  (single use, {scope}, valid until {until})"
        )
    )
    link = None
    for name in [platform] if platform else enabled:
        hint = asyncio.run(BY_NAME[name].pairing(cfg.platform(name), code))
        for line in hint.lines:
            # The line with the link is never wrapped (a broken link cannot be opened).
            plain = hint.link is not None and hint.link in line
            # Hints are the specs' own lines, in rich markup (`[bold]`).
            out.print(Text.from_markup(line), highlight=not plain, soft_wrap=plain)
        link = link or hint.link
    if link:  # a QR code only of something a phone can open
        _print_qr(link)


def _list_owners(cfg: Config) -> None:
    from bridge.access.pairing import Pairing, key_path, load_signing_key
    from bridge.cli.daemon import open_database

    table = Table("owner", "how", "since (UTC)", "status")
    for key in cfg.access.owners:
        table.add_row(key, "config [access] owners", "-", "owner")
    db = open_database(cfg)
    try:
        listed = Pairing(db, load_signing_key(key_path(cfg))).owners.listing()
    finally:
        db.close()
    for o in listed:
        status = (
            Text("owner")
            if o.valid
            else Text.assemble(("NOT an owner", "red"), ": unsigned row; pair again")
        )
        table.add_row(o.key, "paired", o.paired_at, status)
    out.print(table)
    out.print("Revoke a paired owner: threadline unpair KEY", highlight=False)


@app.command()
def unpair(
    key: Annotated[str, typer.Argument(help="The owner as listed by `pair --list`")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a paired owner (as `pair --list` shows it, e.g. telegram:12345).

    The running daemon refuses their next message at once; no restart needed.
    Owners in the config file's [access] owners are removed there instead."""
    from bridge.access.pairing import Pairing, key_path, load_signing_key
    from bridge.cli.daemon import open_database

    cfg = _load(config, chat=False)
    db = open_database(cfg)
    try:
        removed = Pairing(db, load_signing_key(key_path(cfg))).owners.remove(key, by="cli")
    finally:
        db.close()
    if removed:
        out.print(f"{key} is no longer an owner.", highlight=False)
        if key in cfg.access.owners:
            out.print("It is still listed in [access] owners of the config file.")
        return
    if key in cfg.access.owners:
        err.print(
            f"{key} is an owner through the config file: remove it from [access] owners.",
            markup=False,
        )
    else:
        err.print(f"{key} is not a paired owner (see `threadline pair --list`).")
    raise typer.Exit(1)


def _print_qr(text: str) -> None:
    import segno

    out.print(f"QR code of {text}:", highlight=False)
    segno.make(text, error="l").terminal(out=sys.stdout, compact=True)
    sys.stdout.flush()


@app.command()
def sessions(config: ConfigOpt = None) -> None:
    """List sessions: id, thread, directory, state, last activity, cost."""
    from bridge.cli.daemon import open_database

    db = open_database(_load(config, chat=False))
    table = Table("id", "thread", "directory", "state", "last activity (UTC)", "cost")
    for row in db.sessions.list():
        binding = db.bindings.for_session(row.id)
        where = (
            f"{binding.platform}:{binding.chat_id}/{binding.thread_id or '-'}" if binding else "-"
        )
        table.add_row(
            row.id,
            where,
            row.cwd,
            row.state,
            row.last_activity.strftime("%Y-%m-%d %H:%M"),
            f"${row.cost_usd:.4f}",
        )
    out.print(table)


@app.command()
def hosts(config: ConfigOpt = None) -> None:
    """Every host on this database: online or not, last heartbeat, sessions, the chat
    accounts it is the gateway for, roots."""
    from datetime import UTC, datetime

    from bridge.cli.daemon import open_database
    from bridge.commands.hosts import ago
    from bridge.hosts import HEARTBEAT_S, is_online
    from storage.host_repo import host_roots
    from storage.types import OPEN_SESSION_STATES

    cfg = _load(config, chat=False)
    db = open_database(cfg)
    try:
        rows, open_rows = db.hosts.list(), db.sessions.list(states=OPEN_SESSION_STATES)
        gateways = db.gateways.held(datetime.now(UTC))
    finally:
        db.close()
    if not rows:
        out.print("No host has started a daemon on this database yet.")
        return
    now = datetime.now(UTC)
    table = Table("host", "state", "last heartbeat", "sessions", "gateway for", "roots")
    for row in rows:
        online = is_online(row, now, HEARTBEAT_S)
        state = "online" if online else ("stopped" if row.stopped_at else "offline")
        count = sum(1 for r in open_rows if (r.host or cfg.daemon.host) == row.name)
        name = row.name + (" (this machine)" if row.name == cfg.daemon.host else "")
        table.add_row(
            name,
            Text(state, style="green" if online else "red"),
            ago(row.last_heartbeat, now),
            str(count),
            ", ".join(gateways.get(row.name, [])),
            ", ".join(host_roots(row)),
        )
    out.print(table)


def _styled(result: str) -> Text:
    """A refusal or a denial stands out in the audit table."""
    return Text(result, style="red" if result in ("refused", "denied") else "")


@app.command()
def audit(
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(metavar="N", help="How many entries")] = 100,
) -> None:
    """Print the audit log: who, what, when, allowed or refused."""
    from bridge.approvals.audit_words import audit_result
    from bridge.cli.daemon import open_database

    db = open_database(_load(config, chat=False))
    table = Table("when (UTC)", "who", "what", "detail", "result")
    for row in reversed(db.audit.recent(limit)):
        table.add_row(
            row.at.strftime("%Y-%m-%d %H:%M:%S"),
            row.user,
            row.action,
            row.detail,
            _styled(audit_result(row.action, row.detail, row.allowed)),
        )
    out.print(table)


@app.command()
def attach(
    session: Annotated[str, typer.Argument(help="Session id (threadline or Claude session id)")],
    config: ConfigOpt = None,
) -> None:
    """Join a running session from this terminal (Ctrl-C detaches).

    Shows the session's recent history, then its live stream; a line typed is a
    prompt, or answers an open permission prompt (allow / always / deny)."""
    import asyncio

    from bridge.cli.attach_client import run_terminal, stdin_lines

    cfg = _load(config, chat=False)
    tty = sys.stdin.isatty()
    try:
        code = asyncio.run(
            run_terminal(cfg.attach_socket(), session, out, stdin_lines(), detach_on_eof=tty)
        )
    except KeyboardInterrupt:
        out.print("\nDetached; the session keeps running.", style="dim")
        code = 0
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.set_blocking(sys.stdin.fileno(), True)
    raise typer.Exit(code)


@app.command("import")
def import_(
    claude_session_id: Annotated[
        str | None, typer.Argument(help="The Claude session id (or its first 8 characters)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """List Claude Code sessions on disk, or continue one (ID) in a new chat thread.

    Without ID: the sessions under allowed_roots, newest first, with their first
    prompt.  With ID: the running daemon opens a thread for it, with a recap."""
    import asyncio

    from bridge.cli.attach_client import DaemonUnavailable, request_import
    from bridge.sources.importer import ClaudeSessions

    cfg = _load(config, chat=False)
    if claude_session_id is None:
        found = ClaudeSessions(cfg.agent.allowed_roots).recent()
        if not found:
            out.print("No Claude Code sessions on disk under the allowed roots.")
            return
        table = Table("id", "directory", "last activity (UTC)", "first prompt")
        for s in found:
            prompt = s.first_prompt or s.title
            table.add_row(s.id, s.cwd, s.modified.strftime("%Y-%m-%d %H:%M"), prompt[:80])
        out.print(table)
        out.print("Continue one in a chat thread: threadline import ID")
        return
    try:
        ok, message = asyncio.run(request_import(cfg.attach_socket(), claude_session_id))
    except DaemonUnavailable as e:
        err.print(str(e))
        raise typer.Exit(1) from None
    (out if ok else err).print(message.replace("`", ""), highlight=False)
    raise typer.Exit(0 if ok else 1)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def claude(
    ctx: typer.Context,
    # No `-c`: that is claude's own --continue.
    config: Annotated[
        str | None, typer.Option("--config", metavar="FILE", help="Config file")
    ] = None,
) -> None:
    """Run the Claude Code CLI the daemon runs (bundled with claude-agent-sdk, or
    [agent] cli_path) with the environment its sessions get, e.g. `threadline claude
    --resume ID` to continue a session at the desk.  Arguments go to claude as given."""
    from agent.cli import claude_cli_path
    from bridge.cli.daemon import claude_environment

    cfg = _load(config, chat=False)
    cli = claude_cli_path(cfg.agent.cli_path)
    if cli is None:
        err.print(
            "Claude Code was not found: reinstall claude-agent-sdk (it bundles the CLI) "
            "or set [agent] cli_path"
        )
        raise typer.Exit(1)
    sys.stdout.flush()
    os.execve(cli, [cli, *ctx.args], claude_environment(cfg))


service_app = typer.Typer(
    help="Run the daemon as a service: a systemd user unit (Linux) or a launchd agent (macOS).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(service_app, name="service")
app.add_typer(verify_app, name="verify")


def _service(config: str | None) -> service.Service:
    path = config_path(config).expanduser().resolve()
    _load(str(path))  # a service of a config that does not load would only fail
    return service.Service(service.default_kind(), path, Path.home(), dict(os.environ))


def _service_step(step: Callable[[], list[str]]) -> None:
    try:
        for line in step():
            out.print(line, highlight=False)
    except service.ServiceError as e:
        err.print(f"threadline service: {e}", highlight=False)
        raise typer.Exit(1) from None


@service_app.command("install")
def service_install(config: ConfigOpt = None) -> None:
    """Write the service (with the environment the daemon needs) and start it."""
    s = _service(config)
    _service_step(lambda: service.install(s, service.run_command))


@service_app.command("uninstall")
def service_uninstall(config: ConfigOpt = None) -> None:
    """Stop the service and remove its files."""
    s = _service(config)
    _service_step(lambda: service.uninstall(s, service.run_command))


@service_app.command("status")
def service_status(config: ConfigOpt = None) -> None:
    """Is the service running (systemctl status / launchctl print)."""
    s = _service(config)
    raise typer.Exit(_passthrough(service.status_command(s)))


@service_app.command("logs")
def service_logs(
    config: ConfigOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", metavar="N", help="How many")] = 100,
) -> None:
    """The service's log (journalctl / the launchd log file)."""
    s = _service(config)
    raise typer.Exit(_passthrough(service.logs_command(s, follow, lines)))


def _passthrough(args: list[str]) -> int:
    try:
        return subprocess.call(args)
    except FileNotFoundError:
        err.print(f"threadline service: {args[0]} is not installed on this machine")
        return 1


def main() -> None:
    """The console script: a failure the person can meet is one line and exit status 1."""
    from bridge.startup import StartupError
    from storage.db import StorageError

    try:
        app()
    except (StartupError, StorageError) as e:
        err.print(f"threadline: {e}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
