"""Otus operator (kopf): reconciles CaptureTask resources into agents. Not built yet."""
