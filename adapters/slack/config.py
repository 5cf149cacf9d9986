"""The ``[slack]`` config section."""

from __future__ import annotations

from typing import Literal

from adapters.spec import PlatformConfig


class SlackConfig(PlatformConfig):
    bot_token: str = ""
    app_token: str = ""
    signing_secret: str = ""
    mode: Literal["socket", "http"] = "socket"
    http_port: int = 3000
    base_url: str = ""
    channel: str = ""

    def secrets(self) -> list[str]:
        return [self.bot_token, self.app_token, self.signing_secret]

    def problems(self) -> list[str]:
        errors: list[str] = []
        if not self.bot_token.startswith("xoxb-"):
            errors.append("slack.bot_token: not a bot token (expected 'xoxb-…')")
        if self.mode == "socket" and not self.app_token.startswith("xapp-"):
            errors.append("slack.app_token: Socket Mode needs an app-level token ('xapp-…')")
        # Only HTTP mode receives signed requests; Socket Mode never needs the secret.
        if self.mode == "http" and not self.signing_secret:
            errors.append("slack.signing_secret: needed when slack.mode = 'http'")
        return errors
