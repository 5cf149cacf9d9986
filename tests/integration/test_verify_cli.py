"""`threadline verify` against a database the daemon wrote (`sas_verifications`): the
listing, the interactive y/n mode, and that the first decision wins.  The end-to-end
runs with Element's phone are in tests/e2e/test_e2e_element_verify.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from bridge.cli.main import app
from storage.db import Database

runner = CliRunner()


def _setup(tmp_path: Path) -> tuple[Database, Path]:
    url = f"sqlite:///{tmp_path}/t.db"
    db = Database(url)
    db.migrate()
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nurl = "{url}"\n')
    return db, config


def test_interactive_mode_asks_and_writes_each_answer(tmp_path: Path) -> None:
    db, config = _setup(tmp_path)
    emoji = [("🔧", "Spanner"), ("👍", "Thumbs Up"), ("✈️", "Aeroplane")]
    a = db.sas.add("$one", platform="matrix", user_id="@a:x", device_id="DA", emoji=emoji)
    b = db.sas.add("$two", platform="matrix", user_id="@b:x", device_id="DB", emoji=emoji)
    result = runner.invoke(app, ["verify", "-i", "-c", str(config)], input="y\nn\n")
    assert result.exit_code == 0, result.output
    assert "🔧  👍  ✈️" in result.output and "Spanner, Thumbs Up, Aeroplane" in result.output
    assert "@a:x (device DA) on matrix" in result.output
    one, two = db.sas.get("$one"), db.sas.get("$two")
    assert one is not None and two is not None
    assert (one.decision, two.decision) == ("confirm", "cancel")
    assert one.decided_by.startswith("cli:")
    assert a.id is not None and b.id is not None
    assert not db.sas.decide(a.id, "cancel", by="telegram:1"), "the first decision won"
    listing = runner.invoke(app, ["verify", "-c", str(config)])
    assert "No verification is waiting." in listing.output
    db.close()


def test_unknown_or_finished_verifications_are_refused(tmp_path: Path) -> None:
    db, config = _setup(tmp_path)
    row = db.sas.add("$t", platform="matrix", user_id="@a:x", device_id="D", emoji=[])
    assert row.id is not None
    db.sas.finish(row.id, "timed_out", "m.timeout")
    late = runner.invoke(app, ["verify", "confirm", str(row.id), "-c", str(config)])
    assert late.exit_code == 1 and "timed_out" in late.output
    missing = runner.invoke(app, ["verify", "cancel", "99", "-c", str(config)])
    assert missing.exit_code == 1 and "no verification 99" in missing.output
    db.close()


def test_a_run_older_than_ten_minutes_is_over(tmp_path: Path) -> None:
    """A hard-killed daemon never marks its runs: the spec's 10 minutes end them."""
    db, config = _setup(tmp_path)
    row = db.sas.add("$old", platform="matrix", user_id="@a:x", device_id="D", emoji=[])
    assert row.id is not None
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE sas_verifications SET created_at = :t"),
            {"t": datetime.now(UTC) - timedelta(minutes=11)},
        )
    assert db.sas.pending() == []
    assert not db.sas.decide(row.id, "confirm", by="cli:x")
    db.close()
