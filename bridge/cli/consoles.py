"""What every `threadline` subcommand module shares: the two consoles and loading the
config with its errors printed one line each (so `main.py` and the subcommand modules
it registers, e.g. `verify.py`, import this instead of each other)."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text

from bridge.config import Config, ConfigError, config_path, load_config

# Piped output (scripts, tests) gets wide lines instead of a table squeezed to 80 columns.
# No rich markup: every line may carry text from config, chats or Claude (`[telegram]`,
# a regex like `[/a-z]`), which markup would eat or choke on.  Styles are given as styles.
out = Console(width=None if sys.stdout.isatty() else 200, markup=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200, markup=False)


def load_config_or_exit(config: str | None, *, chat: bool = True) -> Config:
    """The config, or its errors one line each and exit status 2.  `chat=False`: the
    command only uses the local database, so chat credentials are not required."""
    path = config_path(config)
    try:
        return load_config(path, chat=chat)
    except ConfigError as e:
        for line in e.lines:
            err.print(Text.assemble(("config error:", "red"), " ", line), highlight=False)
        raise typer.Exit(2) from None
