"""Temporal workflows only: deterministic, no I/O, no clock, no randomness."""
