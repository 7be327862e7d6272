"""Wiring one task's capture to its reporters, live or from a file."""
