"""Threadline's test suite; see conftest.py for its layout and switches."""
