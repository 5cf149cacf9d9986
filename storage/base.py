"""What every repository is built on: the engine it queries and the cipher it seals with.

Repositories take these two, not the `Database` that composes them, so `storage/db.py`
imports the repositories and nothing imports back.  Each call opens one short session
(or Core connection) and closes it, so no caller holds a transaction across an `await`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage.crypto import BodyCipher


@contextmanager
def open_session(engine: Engine) -> Iterator[Session]:
    """A sqlmodel session whose objects stay readable after commit and close."""
    with Session(engine, expire_on_commit=False) as s:
        yield s


class Repo:
    def __init__(self, engine: Engine, cipher: BodyCipher) -> None:
        self._engine = engine
        self._cipher = cipher

    def _session(self) -> AbstractContextManager[Session]:
        return open_session(self._engine)
