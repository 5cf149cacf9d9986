"""Telegram adapter package: python-telegram-bot behind the bridge's `ChatAdapter` seam."""

from adapters.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
