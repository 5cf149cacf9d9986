"""Every chat platform Threadline speaks, in the order the CLI lists them.

The one place the core learns which platforms exist: `threadline run` builds an
adapter per enabled entry, the config composes their sections, `pair` and `doctor`
loop over them.  A new platform is a package under adapters/ exporting `PLATFORM`
and one line here."""

from __future__ import annotations

from adapters.matrix import PLATFORM as MATRIX
from adapters.slack import PLATFORM as SLACK
from adapters.spec import AnySpec
from adapters.telegram import PLATFORM as TELEGRAM

PLATFORMS: tuple[AnySpec, ...] = (TELEGRAM, SLACK, MATRIX)
BY_NAME: dict[str, AnySpec] = {p.name: p for p in PLATFORMS}
