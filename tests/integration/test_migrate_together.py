"""Several hosts starting at once on one new PostgreSQL database (`Database.migrate`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from storage.db import MIGRATIONS, Database


def test_hosts_migrating_together_on_postgresql_all_start(postgres_url: str) -> None:
    """Three daemons starting at once on a new database: one migrates under the
    advisory lock, the others wait and find the schema current (without the lock two
    `CREATE TABLE`s race and one start fails)."""
    dbs = [Database(postgres_url) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            versions = list(pool.map(lambda db: db.migrate(), dbs))
        assert versions == [len(MIGRATIONS)] * 3
    finally:
        for db in dbs:
            db.close()
