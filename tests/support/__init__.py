"""What the tests run on: harnesses (the whole bridge wired to fakes or Synapse), the
person's phones, the Synapse launcher and fixtures, and the fakes (`fakes/`)."""
