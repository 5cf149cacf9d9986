"""Matrix as the core sees it: the platform spec `PLATFORM` (config section, adapter
factory, doctor checks, pairing hint).  The platform library is imported only when
one of them is called."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.base import ChatAdapter
from adapters.matrix.config import MatrixConfig
from adapters.spec import CheckResult, PairingHint, PlatformSpec, SetupField


def _create(config: MatrixConfig, owners: Sequence[str]) -> ChatAdapter:
    from adapters.matrix.adapter import MatrixAdapter

    return MatrixAdapter(config, owners_hint=owners)


async def _doctor(config: MatrixConfig, owners: Sequence[str]) -> list[CheckResult]:
    from adapters.matrix import doctor

    return await doctor.check(config, owners)


async def _pairing(config: MatrixConfig, code: str) -> PairingHint:
    # A stranger cannot reach the bot unless it joins their room: the adapter accepts
    # invites while a code is open (`ChatAdapter.open_invites`).
    return PairingHint(
        (
            f"Matrix: send [bold]!pair {code}[/bold] to {config.user_id} in an encrypted"
            " room; while this code is valid the bot accepts anyone's invite to a room.",
        )
    )


PLATFORM: PlatformSpec[MatrixConfig] = PlatformSpec(
    name="matrix",
    title="Matrix",
    config_model=MatrixConfig,
    owner_example="matrix:@user:server",
    command_prefix="!",
    create=_create,
    doctor=_doctor,
    pairing=_pairing,
    setup=(
        SetupField("homeserver", "Homeserver URL", default="https://matrix.org"),
        SetupField("user_id", "The bot's Matrix id (@bot:server)"),
        SetupField("password", "The bot account's password", env="MATRIX_PASSWORD", secret=True),
    ),
)
