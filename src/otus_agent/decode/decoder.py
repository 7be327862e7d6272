"""Python face of the L2-L4 fast path: buffers, counters, one-packet helper."""
from __future__ import annotations

import socket
from array import array

from otus_agent.capture.linktypes import RAW as LINKTYPE_RAW
from otus_agent.decode import l2l4_cy as fastpath
from otus_agent.decode.l2l4_cy import decode_batch
from otus_agent.decode.layout import *  # noqa: F403 - the layout, re-exported for Python callers
from otus_agent.decode.layout import FIRST_DROP, LAYOUT, NF

# counter names: the layout's C_* names in index order, lower case ("drop_*" from FIRST_DROP on)
COUNTER_NAMES: tuple[str, ...] = tuple(
    n[2:].lower() for n, _ in sorted(((n, v) for n, v in LAYOUT.items() if n.startswith("C_")), key=lambda e: e[1]))

COMPILED: bool = not fastpath.__file__.endswith(".py")


def _zeros(n: int) -> array:
    return array("q", bytes(8 * n))


class Decoder:
    """Owns the per-batch result array and the cumulative layer/drop counters."""

    def __init__(self, batch_size: int = 4096, verify_ipv4_checksum: bool = True,
                 decode_vxlan: bool = True):
        self.flags = (LAYOUT["FLAG_VERIFY_IPV4_CSUM"] if verify_ipv4_checksum else 0) | \
                     (LAYOUT["FLAG_DECODE_VXLAN"] if decode_vxlan else 0)
        self.out = _zeros(NF * batch_size)
        self.cnt = _zeros(LAYOUT["NCOUNTERS"])
        self._one = (_zeros(1), _zeros(1), _zeros(1))
        self.one_out = _zeros(NF)

    def decode(self, buf: bytes, n: int, offs: array, caplens: array, links: array) -> array:
        """Decode a batch; results are ``out[i*NF + F_*]`` until the next call."""
        if n * NF > len(self.out):
            self.out = _zeros(NF * n)
        decode_batch(buf, n, offs, caplens, links, self.out, self.cnt, self.flags)
        return self.out

    def decode_one(self, data: bytes, linktype: int = LINKTYPE_RAW) -> array:
        """Decode one packet (e.g. a reassembled datagram); fields in ``one_out``."""
        offs, caplens, links = self._one
        caplens[0] = len(data)
        links[0] = linktype
        decode_batch(data, 1, offs, caplens, links, self.one_out, self.cnt, self.flags)
        return self.one_out

    def counters(self, nonzero: bool = False) -> dict[str, int]:
        c = self.cnt
        return {name: c[i] for i, name in enumerate(COUNTER_NAMES) if c[i] or not nonzero}

    def drops(self) -> dict[str, int]:
        c = self.cnt
        return {COUNTER_NAMES[i][5:]: c[i] for i in range(FIRST_DROP, len(COUNTER_NAMES)) if c[i]}


ADDR_CACHE_MAX = 4096            # address pairs remembered as text; cleared when full
_addr_cache: dict[bytes, tuple[str, str]] = {}


def ip_addresses(buf: bytes, ipver: int, l3off: int) -> tuple[str, str]:
    """Source and destination of the IP header at ``l3off`` as text.

    Traffic repeats the same few address pairs, so their text is cached (bounded:
    the cache is emptied when it reaches ADDR_CACHE_MAX pairs)."""
    raw = buf[l3off + 12:l3off + 20] if ipver == 4 else buf[l3off + 8:l3off + 40]
    hit = _addr_cache.get(raw)
    if hit is None:
        family, half = (socket.AF_INET, 4) if ipver == 4 else (socket.AF_INET6, 16)
        hit = (socket.inet_ntop(family, raw[:half]), socket.inet_ntop(family, raw[half:]))
        if len(_addr_cache) >= ADDR_CACHE_MAX:
            _addr_cache.clear()
        _addr_cache[raw] = hit
    return hit
