"""End-to-end tests: the whole daemon and/or the real Claude Code CLI against the fake
Anthropic API."""
