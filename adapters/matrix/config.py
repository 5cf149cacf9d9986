"""The ``[matrix]`` config section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adapters.spec import PlatformConfig

# What the example config says until someone fills it in.
PLACEHOLDERS = frozenset({"https://matrix.example.org", "@threadline:example.org"})


class MatrixConfig(PlatformConfig):
    homeserver: str = ""
    user_id: str = ""
    password: str = ""
    access_token: str = ""
    device_id: str = ""
    store_path: str = "~/.local/share/threadline/matrix-store"
    encryption: Literal["required", "optional", "off"] = "required"
    room: str = ""
    # Who may decide a permission, question or plan.  "reactions": a ✅/❌/number
    # reaction or a reply from any of the owner's devices (reactions are never
    # encrypted, so whoever runs the homeserver could forge one).  "verified": only
    # an encrypted reply from a device the owner cross-signed; reactions are refused.
    # Default "reactions": one tap on the phone, and on a homeserver the owner runs
    # the only one who could forge is the owner; choose "verified" on a homeserver
    # run by someone else (matrix.org, an employer's).
    approvals: Literal["reactions", "verified"] = "reactions"
    # The homeserver's per-user message limit (Synapse's rc_message): the bot paces
    # every event it sends (messages, edits, reactions) to stay within it.
    rate_per_second: float = Field(default=0.2, gt=0)
    rate_burst: int = Field(default=10, ge=1)

    def secrets(self) -> list[str]:
        return [self.password, self.access_token]

    def problems(self) -> list[str]:
        # The example config's values: left as they are, the bot would log in nowhere.
        errors = [
            f"matrix.{key}: still the example's placeholder ({value!r})"
            for key, value in (("homeserver", self.homeserver), ("user_id", self.user_id))
            if value in PLACEHOLDERS
        ]
        if not self.homeserver:
            errors.append("matrix.homeserver: set it, e.g. 'https://matrix.org'")
        if not self.password and not self.access_token:
            errors.append("matrix.password: set it (or matrix.access_token)")
        return errors
