"""pytest fixtures for the Matrix tests: one real Synapse per test session (rate limits
raised), and a second one, started only when a test asks for it, that keeps Synapse's
default `rc_message` (0.2/s, burst 10) for the test proving the bridge paces itself.

Both skip — with the reason — only when Synapse is not installed (run
`scripts/install-synapse`; CI does).  With THREADLINE_REQUIRE_SYNAPSE=1 a missing
Synapse fails instead, so a CI that forgot to install it cannot pass by skipping.
Once installed, a Synapse that does not start is an error, never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.synapse import Synapse, synapse_python, synapse_venv


def _require_synapse() -> None:
    if synapse_python() is not None:
        return
    reason = f"Synapse is not installed in {synapse_venv()} (run scripts/install-synapse)"
    if os.environ.get("THREADLINE_REQUIRE_SYNAPSE") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A homeserver on 127.0.0.1 with raised rate limits."""
    _require_synapse()
    server = Synapse(tmp_path_factory.mktemp("synapse")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def synapse_default_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    """A homeserver that keeps Synapse's default `rc_message`."""
    _require_synapse()
    server = Synapse(tmp_path_factory.mktemp("synapse-rc"), default_message_limits=True).start()
    try:
        yield server
    finally:
        server.stop()
