"""`python -m bridge.cli`: the `threadline` command."""

from bridge.cli.main import main

main()
