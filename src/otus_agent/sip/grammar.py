"""The SIP grammar's character classes and number limits (RFC 3261 25.1): the one definition.

The full parser (``message_cy``, on decoded text) and the fast scanner (``scan_cy``, on bytes,
which the compiled lane runs) both build their tests from these: the parser its ``str.translate``
tables, the scanner 256-entry lookup tables.  IPv6 references are checked by one routine,
``scan_cy.valid_ipv6`` (glibc's inet_pton6 in C), for both.
"""
from __future__ import annotations

ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN = ALNUM + b"-.!%*_+`'~"          # token
HOST = ALNUM + b"-."                   # hostname and IPv4address characters
MAX_PORT = 65535
MAX_CSEQ = 2**31 - 1
MAX_FORWARDS = 255
MAX_DELTA = 2**32 - 1                  # delta-seconds (Expires, expires=)


def table(chars: bytes) -> bytes:
    """256 bytes, 1 where the byte is one of ``chars``."""
    t = bytearray(256)
    for c in chars:
        t[c] = 1
    return bytes(t)
