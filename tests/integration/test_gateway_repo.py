"""Gateway leases on both databases (`storage/gateway_repo.py`): acquire, renew,
expiry and takeover with a growing epoch, release, and two threads racing for a free
lease — exactly one wins, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage.db import Database

T0 = datetime(2026, 12, 7, 22, 0, 0, tzinfo=UTC)
ACCOUNT = "telegram:123456"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/t.db"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.migrate()
    yield database
    database.close()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_first_acquire_wins_and_others_wait_until_it_expires(db: Database) -> None:
    leases = db.gateways
    assert leases.holder(ACCOUNT) is None
    assert leases.acquire(ACCOUNT, "laptop", at(0), 8) == 1
    assert leases.acquire(ACCOUNT, "box", at(1), 8) is None
    assert leases.acquire(ACCOUNT, "box", at(7.9), 8) is None
    row = leases.holder(ACCOUNT)
    assert row is not None
    assert (row.holder, row.epoch, row.expires_at) == ("laptop", 1, at(8))
    # expired: another host takes it over under a new epoch
    assert leases.acquire(ACCOUNT, "box", at(8.5), 8) == 2
    row = leases.holder(ACCOUNT)
    assert row is not None and (row.holder, row.epoch, row.expires_at) == ("box", 2, at(16.5))
    # other accounts are independent
    assert leases.acquire("slack:T1", "laptop", at(9), 8) == 1


def test_renew_only_while_ours_under_that_epoch(db: Database) -> None:
    leases = db.gateways
    epoch = leases.acquire(ACCOUNT, "laptop", at(0), 8)
    assert epoch == 1
    assert leases.renew(ACCOUNT, "laptop", 1, at(2), 8)
    assert leases.acquire(ACCOUNT, "box", at(9), 8) is None, "renewed: still held"
    assert leases.renew(ACCOUNT, "laptop", 1, at(4), 8)
    # laptop stalls; box takes over after the lease lapsed
    assert leases.acquire(ACCOUNT, "box", at(12.5), 8) == 2
    assert not leases.renew(ACCOUNT, "laptop", 1, at(13), 8), "deposed"
    assert not leases.renew(ACCOUNT, "box", 1, at(13), 8), "an old epoch never renews"
    assert leases.renew(ACCOUNT, "box", 2, at(13), 8)
    assert leases.acquire(ACCOUNT, "laptop", at(14), 8) is None
    # and back: laptop takes it after box lapses, under epoch 3
    assert leases.acquire(ACCOUNT, "laptop", at(21.5), 8) == 3


def test_acquire_again_when_ours_keeps_or_bumps_the_epoch(db: Database) -> None:
    leases = db.gateways
    assert leases.acquire(ACCOUNT, "laptop", at(0), 8) == 1
    # a restarted daemon of the same host within the TTL: the same epoch, renewed
    assert leases.acquire(ACCOUNT, "laptop", at(3), 8) == 1
    row = leases.holder(ACCOUNT)
    assert row is not None and row.expires_at == at(11)
    # ours but lapsed: a new epoch (a stalled holder's sends are fenced off)
    assert leases.acquire(ACCOUNT, "laptop", at(20), 8) == 2


def test_release_lets_another_host_take_over_at_once(db: Database) -> None:
    leases = db.gateways
    assert leases.acquire(ACCOUNT, "laptop", at(0), 8) == 1
    assert not leases.release(ACCOUNT, "box", 1), "not box's to release"
    assert not leases.release(ACCOUNT, "laptop", 2), "not under that epoch"
    assert leases.release(ACCOUNT, "laptop", 1)
    assert leases.acquire(ACCOUNT, "box", at(1), 8) == 2
    assert not leases.renew(ACCOUNT, "laptop", 1, at(2), 8)


@pytest.mark.parametrize("lapsed", [False, True], ids=["free", "expired"])
def test_two_threads_racing_for_the_lease_exactly_one_wins(db: Database, lapsed: bool) -> None:
    leases = db.gateways
    if lapsed:
        assert leases.acquire(ACCOUNT, "old", at(0), 8) == 1
    now = at(100)
    for round_ in range(5):
        account = f"{ACCOUNT}-{round_}"
        if lapsed:
            assert leases.acquire(account, "old", at(0), 8) == 1
        start = threading.Barrier(2)
        results: dict[str, int | None] = {}

        def race(
            host: str,
            account: str = account,
            start: threading.Barrier = start,
            results: dict[str, int | None] = results,
        ) -> None:
            start.wait()
            results[host] = leases.acquire(account, host, now, 8)

        threads = [threading.Thread(target=race, args=(h,)) for h in ("laptop", "box")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [h for h, epoch in results.items() if epoch is not None]
        assert len(results) == 2 and len(winners) == 1, results
        row = leases.holder(account)
        assert row is not None and row.holder == winners[0]
        assert results[winners[0]] == row.epoch == (2 if lapsed else 1)
