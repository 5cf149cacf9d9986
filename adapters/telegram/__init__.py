"""Telegram adapter package: python-telegram-bot behind the bridge's `ChatAdapter` seam.
Exports the platform spec; the adapter itself is `adapters.telegram.adapter`."""

from adapters.telegram.spec import PLATFORM

__all__ = ["PLATFORM"]
