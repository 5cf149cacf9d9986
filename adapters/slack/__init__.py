"""Slack adapter package: slack-bolt and slack_sdk behind the bridge's `ChatAdapter` seam."""

from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
