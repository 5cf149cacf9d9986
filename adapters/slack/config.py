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
