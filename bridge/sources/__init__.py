"""Side doors into sessions: the terminal (attach), schedules, and import from disk."""
