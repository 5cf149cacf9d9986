"""The SAS emoji table is the spec's, names included (issue 15, point 3): the person
compares names too, and nio's table names three of them differently from the spec and
Element's Rust crypto."""

from __future__ import annotations

from nio.crypto import Sas

from adapters.matrix.e2ee import sas_core


def test_the_names_are_the_specs() -> None:
    assert sas_core.emoji([34, 36, 53]) == [
        ("🔧", "Spanner"),
        ("👍", "Thumbs Up"),
        ("✈️", "Aeroplane"),
    ]


def test_the_emoji_themselves_are_the_same_64() -> None:
    assert [e for e, _ in sas_core.EMOJI] == [e for e, _ in Sas.emoji]
    assert len({n for _, n in sas_core.EMOJI}) == 64
