"""Slack adapter package: slack-bolt and slack_sdk behind the bridge's `ChatAdapter`
seam.  Exports the platform spec; the adapter itself is `adapters.slack.adapter`."""

from adapters.slack.spec import PLATFORM

__all__ = ["PLATFORM"]
