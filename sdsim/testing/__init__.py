"""Helpers for the test suite that need to run in their own process (e.g. under Oclgrind)."""
