"""Integration tests: one real library against one local server (an adapter against its
fake platform or a real Synapse, the outbox against a fake platform, the database)."""
