"""`threadline verify`: emoji (SAS) verifications of the bot, compared and answered on
the machine, where the homeserver cannot alter what is shown.

The daemon records each run waiting for its person (`bridge/verify_desk.py`, table
`sas_verifications`); this command lists them (who, which device, the emoji with their
names, since when), and writes "confirm" or "cancel" for one, which the daemon reads
and acts on: the bot sends its "they match" (its MAC) only after a confirm, and
cancels with `m.mismatched_sas` on a cancel.  It uses the database only (chat=False).
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from storage.db import Database
    from storage.models import SasVerificationRow

verify_app = typer.Typer(
    help="Compare and answer the emoji of verifications of the bot (Matrix).",
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", metavar="PATH", help="The config file")
]


def _db(config: str | None) -> Database:
    from bridge.cli.consoles import load_config_or_exit as _load
    from bridge.cli.daemon import open_database

    return open_database(_load(config, chat=False))


def describe(row: SasVerificationRow) -> str:
    """One verification as the person reads it, the emoji with their names."""
    from storage.sas_repo import emoji_of

    since = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
    pairs = emoji_of(row)
    return (
        f"#{row.id}  {row.user_id} (device {row.device_id}) on {row.platform}, since {since} UTC\n"
        f"    {'  '.join(e for e, _ in pairs)}\n"
        f"    {', '.join(n for _, n in pairs)}\n"
        f"    transaction {row.transaction_id}"
    )


def decide(db: Database, key: str, decision: str) -> str:
    """Write a decision; the line to print (raises typer.Exit(1) when it cannot)."""
    from bridge.cli.consoles import err

    row = db.sas.get(key)
    if row is None or row.id is None:
        err.print(f"no verification {key} (see `threadline verify`)")
        raise typer.Exit(1)
    if not db.sas.decide(row.id, decision, by=f"cli:{getpass.getuser()}"):
        why = f"answered already: {row.decision} by {row.decided_by}" if row.decision else row.state
        err.print(f"verification #{row.id} is not waiting any more ({why})")
        raise typer.Exit(1)
    if decision == "confirm":
        return f"#{row.id} confirmed: the bot now tells {row.user_id}'s device they match."
    return f"#{row.id} cancelled: {row.user_id}'s device is told the emoji do not match."


@verify_app.callback(invoke_without_command=True)
def verify(
    ctx: typer.Context,
    config: ConfigOpt = None,
    interactive: Annotated[
        bool, typer.Option("--interactive", "-i", help="Ask y/n for each pending one")
    ] = False,
) -> None:
    """List the verifications waiting for you, with their emoji."""
    if ctx.invoked_subcommand is not None:
        return
    from bridge.cli.consoles import out

    db = _db(config)
    try:
        rows = db.sas.pending()
        if not rows:
            out.print("No verification is waiting.")
            return
        for row in rows:
            out.print(describe(row), highlight=False)
            if interactive:
                match = typer.confirm("Do these emoji match the ones on your device?")
                out.print(decide(db, str(row.id), "confirm" if match else "cancel"))
        if not interactive:
            out.print("Answer with `threadline verify confirm N` or `threadline verify cancel N`.")
    finally:
        db.close()


def _answer(key: str, config: str | None, decision: str) -> None:
    from bridge.cli.consoles import out

    db = _db(config)
    try:
        out.print(decide(db, key, decision), highlight=False)
    finally:
        db.close()


@verify_app.command("confirm")
def confirm(
    key: Annotated[str, typer.Argument(help="The number (#N) or transaction id")],
    config: ConfigOpt = None,
) -> None:
    """The emoji match: the bot confirms the verification."""
    _answer(key.lstrip("#"), config, "confirm")


@verify_app.command("cancel")
def cancel(
    key: Annotated[str, typer.Argument(help="The number (#N) or transaction id")],
    config: ConfigOpt = None,
) -> None:
    """The emoji do not match: the bot cancels (m.mismatched_sas)."""
    _answer(key.lstrip("#"), config, "cancel")
