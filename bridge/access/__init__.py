"""Who may act: owners, pairing, signed paired owners, and path checks."""
