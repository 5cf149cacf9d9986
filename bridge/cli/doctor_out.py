"""How `threadline doctor` prints a check: one line per result, and for a problem
the fix on the next line.  Shared by the core checks and each platform's."""

from __future__ import annotations

from rich.console import Console


def _ok(out: Console, what: str) -> None:
    out.print(f"[green]ok[/green]   {what}", highlight=False)


def _fail(out: Console, what: str, fix: str) -> None:
    out.print(f"[red]FAIL[/red] {what}\n     → {fix}", highlight=False)


def _warn(out: Console, what: str, fix: str) -> None:
    out.print(f"[yellow]warn[/yellow] {what}\n     → {fix}", highlight=False)
