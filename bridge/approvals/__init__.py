"""Approvals: the permission broker, session rules, folder trust, revoked modes."""
