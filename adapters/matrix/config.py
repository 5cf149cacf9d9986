"""The ``[matrix]`` config section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adapters.spec import PlatformConfig


class MatrixConfig(PlatformConfig):
    homeserver: str = "https://matrix.example.org"
    user_id: str = ""
    password: str = ""
    access_token: str = ""
    device_id: str = ""
    store_path: str = "~/.local/share/threadline/matrix-store"
    encryption: Literal["required", "optional", "off"] = "required"
    room: str = ""
    # The homeserver's per-user message limit (Synapse's rc_message): the bot paces
    # every event it sends (messages, edits, reactions) to stay within it.
    rate_per_second: float = Field(default=0.2, gt=0)
    rate_burst: int = Field(default=10, ge=1)

    def secrets(self) -> list[str]:
        return [self.password, self.access_token]
