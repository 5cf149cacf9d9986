"""The `threadline` command: the daemon process, doctor, logs, and the attach client."""
