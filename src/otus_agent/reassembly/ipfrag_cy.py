"""IPv4 and IPv6 fragment reassembly, bounded in datagrams, bytes and time.

Keys: IPv4 (src, dst, protocol, identification) per RFC 791; IPv6 (src, dst,
identification) per RFC 8200.

Overlap policy ("first wins"): bytes already received are never replaced.
A fragment that repeats an earlier one exactly counts as ``duplicates``; one
that overlaps with the same bytes counts as ``overlaps``; one whose bytes
differ in the overlap counts as ``overlaps`` and ``inconsistent_overlaps``.
For IPv6 any overlap discards the whole datagram (RFC 5722).

Anomalies counted and tolerated: ``tiny_fragments`` (a non-last fragment
with less than ``min_fragment`` payload bytes), ``df_fragments`` (DF set on
a fragment), ``size_inconsistencies`` (data past the end announced by the
last fragment, or two different ends; the excess is cut).
``overlaps`` counts every fragment that overlaps held data, exact
duplicates included.  ``unaligned``: a non-last fragment whose payload is
not a multiple of 8 bytes is cut down to one, as Linux does.
Rejected: ``oversize`` (reassembly would exceed 65,535 bytes: the datagram
is dropped), ``malformed`` (a fragment with no payload left),
``too_many_fragments`` (more than ``max_fragments``: the datagram is dropped).

Limits: ``max_datagrams`` in flight and ``max_bytes`` of fragment payload
in flight; when either is reached the oldest datagram is evicted
(``evictions``).  Datagrams older than ``timeout_s`` (capture time) are
dropped (``timeouts``).  Memory therefore stays bounded under a flood.

Compiled by Cython when available (setup.py); plain Python otherwise.
"""
from __future__ import annotations

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

from otus_agent.decode.l2l4_cy import ipv4_header_checksum  # absolute: tests load this file alone

COUNTER_NAMES = (
    "fragments", "reassembled", "duplicates", "overlaps", "inconsistent_overlaps",
    "tiny_fragments", "df_fragments", "size_inconsistencies", "oversize", "malformed",
    "too_many_fragments", "evictions", "timeouts", "ipv6_overlap_discards", "unaligned",
)


@cython.cclass
class _Datagram:
    first_ts: cython.longlong
    total: cython.longlong       # payload length once the last fragment is known, else -1
    covered: cython.longlong     # payload bytes held (never overlapping)
    nbytes: cython.longlong
    nfrags: cython.int
    minstart: cython.longlong    # lowest start / highest end held: in-order and
    maxend: cython.longlong      # reverse-order arrivals skip the overlap scan
    header: object               # IPv4 header / IPv6 unfragmentable part of the first fragment
    next_header: cython.int      # IPv6: upper-layer protocol from the fragment header
    frags: list                  # [start, end, data] pieces, disjoint

    def __init__(self, ts: cython.longlong):
        self.first_ts = ts
        self.total = -1
        self.covered = 0
        self.nbytes = 0
        self.nfrags = 0
        self.minstart = 1 << 20
        self.maxend = 0
        self.header = None
        self.next_header = -1
        self.frags = []


@cython.cclass
class FragmentReassembler:
    timeout_ns: cython.longlong
    max_datagrams: cython.Py_ssize_t
    max_bytes: cython.longlong
    max_fragments: cython.int
    min_fragment: cython.int
    bytes_in_flight: cython.longlong
    table: dict
    fragments: cython.longlong
    reassembled: cython.longlong
    duplicates: cython.longlong
    overlaps: cython.longlong
    inconsistent_overlaps: cython.longlong
    tiny_fragments: cython.longlong
    df_fragments: cython.longlong
    size_inconsistencies: cython.longlong
    oversize: cython.longlong
    malformed: cython.longlong
    too_many_fragments: cython.longlong
    evictions: cython.longlong
    timeouts: cython.longlong
    ipv6_overlap_discards: cython.longlong
    unaligned: cython.longlong

    def __init__(self, timeout_s: float = 30.0, max_datagrams: int = 8192,
                 max_bytes: int = 32 << 20, max_fragments: int = 1024, min_fragment: int = 64):
        if timeout_s <= 0 or max_datagrams < 1 or max_bytes < 65535 or max_fragments < 2:
            raise ValueError("reassembly limits: timeout > 0, max_datagrams >= 1, "
                             "max_bytes >= 65535, max_fragments >= 2")
        self.timeout_ns = int(timeout_s * 1e9)
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments
        self.min_fragment = min_fragment
        self.bytes_in_flight = 0
        self.table = {}
        self.fragments = 0
        self.reassembled = 0
        self.duplicates = 0
        self.overlaps = 0
        self.inconsistent_overlaps = 0
        self.tiny_fragments = 0
        self.df_fragments = 0
        self.size_inconsistencies = 0
        self.oversize = 0
        self.malformed = 0
        self.too_many_fragments = 0
        self.evictions = 0
        self.timeouts = 0
        self.ipv6_overlap_discards = 0
        self.unaligned = 0

    def counters(self) -> dict:
        """Every counter (COUNTER_NAMES) plus the current table occupancy."""
        return {
            "fragments": self.fragments, "reassembled": self.reassembled,
            "duplicates": self.duplicates, "overlaps": self.overlaps,
            "inconsistent_overlaps": self.inconsistent_overlaps, "tiny_fragments": self.tiny_fragments,
            "df_fragments": self.df_fragments, "size_inconsistencies": self.size_inconsistencies,
            "oversize": self.oversize, "malformed": self.malformed,
            "too_many_fragments": self.too_many_fragments, "evictions": self.evictions,
            "timeouts": self.timeouts, "ipv6_overlap_discards": self.ipv6_overlap_discards,
            "unaligned": self.unaligned,
            "in_flight": len(self.table), "bytes_in_flight": self.bytes_in_flight,
        }

    def _remove(self, key: object) -> None:
        d: _Datagram = self.table.pop(key)
        self.bytes_in_flight -= d.nbytes

    def expire(self, now_ns: cython.longlong) -> None:
        """Drop datagrams that started more than the timeout before ``now_ns``."""
        d: _Datagram
        while self.table:
            key = next(iter(self.table))
            d = self.table[key]
            if d.first_ts + self.timeout_ns >= now_ns:
                break
            self._remove(key)
            self.timeouts += 1

    def add(self, buf: bytes, l3off: cython.Py_ssize_t, l3end: cython.Py_ssize_t,
            ipver: cython.int, fraghdr: cython.Py_ssize_t, ts_ns: cython.longlong):
        """Take one fragment (as located by the decoder); return the whole
        reassembled IP datagram as bytes when this fragment completes it."""
        ihl: cython.Py_ssize_t
        fo: cython.long
        start: cython.longlong
        more: cython.bint
        self.fragments += 1
        if self.table:
            self.expire(ts_ns)
        if ipver == 4:
            ihl = (buf[l3off] & 15) * 4
            fo = (buf[l3off + 6] << 8) | buf[l3off + 7]
            more = (fo & 0x2000) != 0
            if fo & 0x4000:
                self.df_fragments += 1
            start = (fo & 0x1FFF) * 8
            key = buf[l3off + 12:l3off + 20] + buf[l3off + 4:l3off + 6] + buf[l3off + 9:l3off + 10]
            payload = buf[l3off + ihl:l3end]
            hdr_end = l3off + ihl
            limit = 65535 - ihl
        else:
            fo = (buf[fraghdr + 2] << 8) | buf[fraghdr + 3]
            more = (fo & 1) != 0
            start = fo & 0xFFF8
            key = buf[l3off + 8:l3off + 40] + buf[fraghdr + 4:fraghdr + 8]
            payload = buf[fraghdr + 8:l3end]
            hdr_end = fraghdr
            limit = 65535 - (fraghdr - l3off - 40)
        return self._insert(key, buf, l3off, hdr_end, ipver, fraghdr, start, more, payload, limit, ts_ns)

    @cython.cfunc
    def _insert(self, key: bytes, buf: bytes, l3off: cython.Py_ssize_t, hdr_end: cython.Py_ssize_t,
                ipver: cython.int, fraghdr: cython.Py_ssize_t, start: cython.longlong, more: cython.bint,
                payload: bytes, limit: cython.longlong, ts_ns: cython.longlong):
        d: _Datagram
        plen: cython.longlong = len(payload)
        end: cython.longlong = start + plen
        s: cython.longlong
        e: cython.longlong
        lo: cython.longlong
        hi: cython.longlong
        if more and plen < self.min_fragment:
            self.tiny_fragments += 1
        if more and plen % 8:
            self.unaligned += 1
            plen -= plen % 8
            end = start + plen
            payload = payload[:plen]
        if plen == 0:
            self.malformed += 1
            return None
        if end > limit:
            self.oversize += 1
            if key in self.table:
                self._remove(key)
            return None
        d = self.table.get(key)
        if d is None:
            while len(self.table) >= self.max_datagrams:
                self._remove(next(iter(self.table)))
                self.evictions += 1
            d = _Datagram(ts_ns)
            self.table[key] = d
        if d.nfrags >= self.max_fragments:
            self.too_many_fragments += 1
            self._remove(key)
            return None
        d.nfrags += 1
        # where the datagram ends: announced by the last fragment, first one wins
        if not more:
            if d.total >= 0 and d.total != end:
                self.size_inconsistencies += 1
            elif d.total < 0:
                d.total = end
                if self._trim(d, end):
                    self.size_inconsistencies += 1
        if d.total >= 0 and end > d.total:
            if more:
                self.size_inconsistencies += 1
            end = d.total
            if end <= start:
                return None
            payload = payload[:end - start]
        # overlaps: first wins, only uncovered pieces are kept
        pieces = None
        for piece in (d.frags if start < d.maxend and end > d.minstart else ()):
            s = piece[0]
            e = piece[1]
            if s < end and start < e:
                lo = s if s > start else start
                hi = e if e < end else end
                self.overlaps += 1
                if s == start and e == end and piece[2] == payload:
                    self.duplicates += 1
                elif piece[2][lo - s:hi - s] != payload[lo - start:hi - start]:
                    self.inconsistent_overlaps += 1
                if ipver == 6:
                    self.ipv6_overlap_discards += 1
                    self._remove(key)
                    return None
                if pieces is None:
                    pieces = [[start, end]]
                pieces = _subtract(pieces, s, e)
        if start == 0 and d.header is None:
            d.header = buf[l3off:hdr_end]
            if ipver == 6:
                d.next_header = buf[fraghdr]
        if pieces is None:
            self._store(d, start, end, payload)
        else:
            for lo_hi in pieces:
                self._store(d, lo_hi[0], lo_hi[1], payload[lo_hi[0] - start:lo_hi[1] - start])
        while self.bytes_in_flight > self.max_bytes and len(self.table) > 1:
            victim = next(iter(self.table))
            if victim == key:
                break
            self._remove(victim)
            self.evictions += 1
        if d.total >= 0 and d.covered == d.total and d.header is not None:
            self._remove(key)
            self.reassembled += 1
            return _assemble(d, ipver)
        return None

    @cython.cfunc
    def _trim(self, d: _Datagram, end: cython.longlong) -> cython.bint:
        """Cut held pieces at ``end``; True when something was cut."""
        cut: cython.longlong
        changed: cython.bint = False
        kept = []
        for piece in d.frags:
            if piece[1] <= end:
                kept.append(piece)
                continue
            changed = True
            cut = piece[1] - (piece[0] if piece[0] > end else end)
            d.covered -= cut
            d.nbytes -= cut
            self.bytes_in_flight -= cut
            if piece[0] < end:
                kept.append([piece[0], end, piece[2][:end - piece[0]]])
        if changed:
            d.frags = kept
            if d.maxend > end:
                d.maxend = end
        return changed

    @cython.cfunc
    def _store(self, d: _Datagram, start: cython.longlong, end: cython.longlong, data: bytes):
        d.frags.append([start, end, data])
        if start < d.minstart:
            d.minstart = start
        if end > d.maxend:
            d.maxend = end
        d.covered += end - start
        d.nbytes += end - start
        self.bytes_in_flight += end - start


@cython.cfunc
def _subtract(pieces: list, s: cython.longlong, e: cython.longlong) -> list:
    out = []
    for lo_hi in pieces:
        lo = lo_hi[0]
        hi = lo_hi[1]
        if hi <= s or lo >= e:
            out.append(lo_hi)
            continue
        if lo < s:
            out.append([lo, s])
        if hi > e:
            out.append([e, hi])
    return out


@cython.cfunc
def _assemble(d: _Datagram, ipver: cython.int) -> bytes:
    d.frags.sort()
    body = b"".join([piece[2] for piece in d.frags])
    h = bytearray(d.header)
    if ipver == 4:
        tot = len(h) + len(body)
        h[2] = tot >> 8
        h[3] = tot & 0xFF
        h[6] = 0  # flags (DF, MF) and offset cleared: a whole datagram
        h[7] = 0
        h[10] = 0
        h[11] = 0
        c = ipv4_header_checksum(bytes(h), 0, len(h))
        h[10] = c >> 8
        h[11] = c & 0xFF
    else:
        plen = len(h) - 40 + len(body)
        h[4] = plen >> 8
        h[5] = plen & 0xFF
        _set_v6_next_header(h, d.next_header)
    return bytes(h) + body


@cython.cfunc
def _set_v6_next_header(h: bytearray, nh: cython.int) -> None:
    """Point the header in front of the (removed) fragment header at ``nh``."""
    cur: cython.Py_ssize_t = 40
    at: cython.Py_ssize_t = 6
    typ: cython.int = h[6]
    while cur + 1 < len(h):
        at = cur
        nxt = h[cur]
        cur += (h[cur + 1] + 2) * 4 if typ == 51 else (h[cur + 1] + 1) * 8
        typ = nxt
    h[at] = nh
