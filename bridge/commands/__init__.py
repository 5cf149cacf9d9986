"""Chat commands: the parser and the handlers."""
