"""Otus agent: capture, decode, reassemble, parse, report."""
__version__ = "0.1.0"
