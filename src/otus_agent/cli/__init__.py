"""The ``otus`` command line."""
