"""The SIP grammar's character classes and number limits (RFC 3261 25.1): the one definition.

The fast scanner (``scan_cy``, on bytes, which the compiled lane runs) builds its 256-entry lookup
tables from these.  Its walks are the only ones of the grammar: number, token, host (IPv6 references
by ``_v6_ok``, glibc's inet_pton6 in C), parameter, host[:port], quoted-string, URI, name-addr, via-parm
and value list, each with a strict mode (the scanner's filter) and a lenient one whose spans the full
parser (``message_cy``) builds its objects and defects from (docs/architecture.md, the SIP section).
"""
from __future__ import annotations

ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN = ALNUM + b"-.!%*_+`'~"          # token
HOST = ALNUM + b"-."                   # hostname and IPv4address characters
MAX_PORT = 65535
MAX_CSEQ = 2**31 - 1
MAX_FORWARDS = 255
MAX_DELTA = 2**32 - 1                  # delta-seconds (Expires, expires=)
MAX_LIMIT = 10**17                     # the greatest limit of a number walk (ten times it plus 9 fits in 63 bits)


def table(chars: bytes) -> bytes:
    """256 bytes, 1 where the byte is one of ``chars``."""
    t = bytearray(256)
    for c in chars:
        t[c] = 1
    return bytes(t)
