"""Helpers shared by the tests and the reliability scripts (bad-input table, chaos run)."""
