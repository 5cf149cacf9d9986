"""Delivery: the durable outbox, one worker per chat, and the rate budget."""
