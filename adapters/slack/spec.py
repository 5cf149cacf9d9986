"""Slack as the core sees it: the platform spec `PLATFORM` (config section, adapter
factory, doctor checks, pairing hint).  The platform library is imported only when
one of them is called."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.base import ChatAdapter
from adapters.slack.config import SlackConfig
from adapters.spec import CheckResult, PairingHint, PlatformSpec, SetupField


def _create(config: SlackConfig, owners: Sequence[str]) -> ChatAdapter:
    from adapters.slack.adapter import SlackAdapter

    return SlackAdapter(config, owners_hint=owners)


async def _doctor(config: SlackConfig, owners: Sequence[str]) -> list[CheckResult]:
    from adapters.slack import doctor

    return await doctor.check(config, owners)


async def _pairing(config: SlackConfig, code: str) -> PairingHint:
    return PairingHint(
        (
            f"Slack: send [bold]!pair {code}[/bold] to the app in a DM or in its channel"
            f" (or /threadline pair {code})",
        )
    )


PLATFORM: PlatformSpec[SlackConfig] = PlatformSpec(
    name="slack",
    title="Slack",
    config_model=SlackConfig,
    owner_example="slack:ID",
    command_prefix="!",
    create=_create,
    doctor=_doctor,
    pairing=_pairing,
    setup=(
        SetupField("bot_token", "Bot token (xoxb-…)", env="SLACK_BOT_TOKEN", secret=True),
        SetupField("app_token", "App-level token (xapp-…)", env="SLACK_APP_TOKEN", secret=True),
    ),
)
