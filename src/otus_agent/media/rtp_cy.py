"""The RTP hot path: the header parse and the per-stream statistics, compiled when Cython is there.

Three entry points share one parse: ``parse_rtp`` (a header object, for the API and the fuzz
tests), ``RtpStream.add_packet`` (the datagram path's per-packet call: parses in place and adds,
allocating nothing) and ``MediaLane.run`` (the engine's lane beside SIP: a decoded batch's RTP
packets to their streams in one compiled loop, the payload read in the batch buffer, no slice and
no Python call per packet).  Nothing keeps payload bytes.

``RtpStream.add`` follows ``rtppacket_analyse`` (Wireshark ui/tap-rtp-analysis.c) as tshark
4.0 behaves (checked against 4.0.17 packet by packet, tests/agent/media/test_against_tshark.py):

- packets: every packet of the stream (5-tuple + SSRC);
- lost = expected - received, expected = last seq + 65536 * cycles - first seq + 1; the cycle
  counter is Wireshark's wrap heuristic (a seq below the first one while the timestamp goes
  forward starts a cycle), so a late or duplicate packet can make lost < 0;
- "in time sequence": the extended timestamp is not before the stream's first one; only such
  packets move the reference time and update delta and jitter;
- sequence errors: packets whose seq is not the previous one + 1 (Wireshark "Wrong sequence");
- delta: arrival minus the previous in-time packet's arrival (ms); max delta skips the first
  packet, marker packets, comfort noise (and the packet after it), and late-timestamp packets;
- jitter (ms): J += (|D| - J) / 16, D = arrival difference minus timestamp difference over
  (clock // 1000) (RFC 3550 6.4.1, Wireshark's integer kHz); mean jitter is Wireshark's running
  mean over (packets - 1); no jitter for a clock rate of 0 (telephone-event, unknown dynamic).

Beyond tshark's table: duplicates (an extended seq already seen among the last ``DUP_WINDOW``),
out-of-order (below the highest seen, not a duplicate), markers, timestamp jumps and
RFC 4733 telephone events (distinct event timestamps).
"""
from __future__ import annotations

import socket
from array import array
from collections import Counter
from typing import NamedTuple

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]
if cython.compiled:   # the one definition: decode/layout.pxd (its Python view is generated from it)
    from cython.cimports.libc.string import memchr
    from cython.cimports.otus_agent.decode.layout import (
        F_DPORT,
        F_IPVER,
        F_L3OFF,
        F_PAYLEN,
        F_PAYOFF,
        F_PROTO,
        F_SPORT,
        F_STATUS,
        NF,
        ST_L4,
    )
else:
    from otus_agent.decode.layout import (
        F_DPORT,
        F_IPVER,
        F_L3OFF,
        F_PAYLEN,
        F_PAYOFF,
        F_PROTO,
        F_SPORT,
        F_STATUS,
        NF,
        ST_L4,
    )

from otus_agent.media.payload import PT_CN, PT_CN_OLD, clock_rate, codec_name, telephone_event_pt

R_SHORT = "short_header"
R_VERSION = "bad_version"
R_CSRC = "csrc_past_end"
R_EXT = "extension_past_end"
R_PADDING = "bad_padding"
RTP_REASONS: tuple[str, ...] = ("", R_SHORT, R_VERSION, R_CSRC, R_EXT, R_PADDING)   # add_packet's codes 1..5
SSRC_MISMATCH = -1
DUP_WINDOW = 1024   # a power of two: duplicates are found among the last DUP_WINDOW sequence numbers
# a timestamp step this many times the stream's first step (or backwards) on consecutive seqs is a jump
TS_JUMP_FACTOR = 4
# the same as C constants: Cython makes a literal past 31 bits, or a module name, a Python int (an object op
# per use); these are C variables of the compiled module
_M32 = cython.declare(cython.longlong, 0xFFFFFFFF)
_B31 = cython.declare(cython.longlong, 0x80000000)
_B32 = cython.declare(cython.longlong, 0x100000000)
_DUP_MASK = cython.declare(cython.longlong, DUP_WINDOW - 1)
_TS_JUMP = cython.declare(cython.longlong, TS_JUMP_FACTOR)
_CN = cython.declare(cython.int, PT_CN)
_CN_OLD = cython.declare(cython.int, PT_CN_OLD)


class RtpHeader(NamedTuple):
    """The fixed header plus where the payload lies (offset, length); never the payload itself."""
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    csrc_count: int
    extension: bool
    payload_offset: int
    payload_len: int
    padding_len: int


@cython.cfunc
@cython.exceptval(check=False)
def _payload_offset(p: cython.p_uchar, a: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Offset (from ``a``) of the payload of the ``n``-byte datagram at ``p[a]``, or -code (RTP_REASONS)
    when the header cannot be RTP (RFC 3550 5.1)."""
    if n < 12:
        return -1
    b0: cython.int = p[a]
    if b0 >> 6 != 2:
        return -2
    off: cython.Py_ssize_t = 12 + 4 * (b0 & 0x0F)
    if off > n:
        return -3
    if b0 & 0x10:
        if off + 4 > n:
            return -4
        off += 4 + 4 * ((p[a + off + 2] << 8) | p[a + off + 3])
        if off > n:
            return -4
    if b0 & 0x20:
        pad: cython.int = p[a + n - 1]
        # the last octet counts itself, so 0 is invalid, and padding cannot eat the header
        if pad == 0 or off + pad > n:
            return -5
    return off


def parse_rtp(buf: bytes, counters: Counter[str]) -> RtpHeader | None:
    """The RTP header of one UDP payload, or None (and a counted reason) when it cannot be RTP."""
    n: cython.Py_ssize_t = len(buf)
    bp: cython.p_uchar
    if cython.compiled:
        bp = cython.cast(cython.p_uchar, buf)
    else:
        bp = buf
    off: cython.Py_ssize_t = _payload_offset(bp, 0, n)
    if off < 0:
        counters[RTP_REASONS[-off]] += 1
        return None
    pad: cython.int = buf[n - 1] if buf[0] & 0x20 else 0
    return RtpHeader(bool(buf[1] & 0x80), buf[1] & 0x7F, (buf[2] << 8) | buf[3], int.from_bytes(buf[4:8], "big"),
                     int.from_bytes(buf[8:12], "big"), buf[0] & 0x0F, bool(buf[0] & 0x10), off, n - off - pad, pad)


@cython.cclass
class RtpStream:
    """The running statistics of one RTP stream.  No payload is ever kept."""
    # readonly: the stage and the records read them; only add() writes
    ssrc = cython.declare(cython.longlong, visibility="readonly")
    rtpmap = cython.declare(dict, visibility="readonly")
    payload_type = cython.declare(cython.int, visibility="readonly")
    first_pt = cython.declare(cython.int, visibility="readonly")
    clock = cython.declare(cython.longlong, visibility="readonly")
    te_pt = cython.declare(cython.int, visibility="readonly")
    packets = cython.declare(cython.longlong, visibility="readonly")
    octets = cython.declare(cython.longlong, visibility="readonly")
    start_seq = cython.declare(cython.longlong, visibility="readonly")
    stop_seq = cython.declare(cython.longlong, visibility="readonly")
    seq_num = cython.declare(cython.longlong, visibility="readonly")
    cycles = cython.declare(cython.longlong, visibility="readonly")
    under = cython.declare(cython.bint, visibility="readonly")
    seq_errors = cython.declare(cython.longlong, visibility="readonly")
    first_ts_ns = cython.declare(cython.longlong, visibility="readonly")
    last_ts_ns = cython.declare(cython.longlong, visibility="readonly")
    time_ms = cython.declare(cython.double, visibility="readonly")
    first_ext_ts = cython.declare(cython.longlong, visibility="readonly")
    ext_ts = cython.declare(cython.longlong, visibility="readonly")
    last_nominal = cython.declare(cython.double, visibility="readonly")
    delta = cython.declare(cython.double, visibility="readonly")
    max_delta = cython.declare(cython.double, visibility="readonly")
    jitter = cython.declare(cython.double, visibility="readonly")
    max_jitter = cython.declare(cython.double, visibility="readonly")
    mean_jitter = cython.declare(cython.double, visibility="readonly")
    markers = cython.declare(cython.longlong, visibility="readonly")
    ts_jumps = cython.declare(cython.longlong, visibility="readonly")
    duplicates = cython.declare(cython.longlong, visibility="readonly")
    out_of_order = cython.declare(cython.longlong, visibility="readonly")
    max_ext_seq = cython.declare(cython.longlong, visibility="readonly")
    seen = cython.declare(cython.longlong[:])   # slot ext & (DUP_WINDOW - 1) holds the last ext seq there
    te_events = cython.declare(cython.longlong, visibility="readonly")
    last_te_ts = cython.declare(cython.longlong, visibility="readonly")
    first_step = cython.declare(cython.longlong, visibility="readonly")
    prev_seq = cython.declare(cython.longlong, visibility="readonly")
    prev_rtp_ts = cython.declare(cython.longlong, visibility="readonly")
    pt_set = cython.declare(set, visibility="readonly")

    def __init__(self, ssrc: int, rtpmap: dict | None = None):
        self.ssrc = ssrc
        self.rtpmap = rtpmap or {}
        self.te_pt = telephone_event_pt(rtpmap)
        self.payload_type = self.first_pt = -1
        self.clock = 0
        self.packets = self.octets = 0
        self.start_seq = self.stop_seq = self.seq_num = 0
        self.cycles = 0
        self.under = False
        self.seq_errors = 0
        self.first_ts_ns = self.last_ts_ns = 0
        self.time_ms = 0.0
        self.first_ext_ts = self.ext_ts = 0
        self.last_nominal = 0.0
        self.delta = self.max_delta = 0.0
        self.jitter = self.max_jitter = self.mean_jitter = 0.0
        self.markers = self.ts_jumps = self.duplicates = self.out_of_order = 0
        self.max_ext_seq = 0
        self.seen = array("q", [-1]) * DUP_WINDOW
        self.te_events = 0
        self.last_te_ts = -1
        self.first_step = 0
        self.prev_seq = self.prev_rtp_ts = 0
        self.pt_set = set()

    def add_packet(self, ts_ns: cython.longlong, buf: bytes) -> cython.int:
        """Parse and account one datagram: 0, a reason code (RTP_REASONS), or SSRC_MISMATCH."""
        bp: cython.p_uchar
        if cython.compiled:
            bp = cython.cast(cython.p_uchar, buf)
        else:
            bp = buf
        return self._add_at(ts_ns, bp, 0, len(buf))

    @cython.cfunc
    @cython.exceptval(check=False)
    def _add_at(self, ts_ns: cython.longlong, p: cython.p_uchar, a: cython.Py_ssize_t,
                n: cython.Py_ssize_t) -> cython.int:
        """``add_packet`` for the ``n``-byte datagram at ``p[a]`` (the lane's call: in the batch buffer)."""
        off: cython.Py_ssize_t = _payload_offset(p, a, n)
        if off < 0:
            return -off
        # C longlong before shifting: a C int would overflow at bit 31
        ssrc: cython.longlong = ((cython.cast(cython.longlong, p[a + 8]) << 24) | (p[a + 9] << 16)
                                 | (p[a + 10] << 8) | p[a + 11])
        if ssrc != self.ssrc:
            return SSRC_MISMATCH
        rtp_ts: cython.longlong = ((cython.cast(cython.longlong, p[a + 4]) << 24) | (p[a + 5] << 16)
                                   | (p[a + 6] << 8) | p[a + 7])
        self._add(ts_ns, (p[a + 2] << 8) | p[a + 3], rtp_ts, p[a + 1] & 0x7F, (p[a + 1] & 0x80) != 0, n)
        return 0

    def add(self, ts_ns: int, seq: int, rtp_ts: int, pt: int, marker: bool, size: int) -> None:
        """Account one packet (arrival ``ts_ns``, header fields, UDP payload size)."""
        self._add(ts_ns, seq, rtp_ts, pt, marker, size)

    @cython.cfunc
    def _add(self, ts_ns: cython.longlong, seq: cython.longlong, rtp_ts: cython.longlong, pt: cython.int,
             marker: cython.bint, size: cython.longlong) -> None:
        self.octets += size
        self.last_ts_ns = ts_ns
        if marker:
            self.markers += 1
        if pt == self.te_pt and rtp_ts != self.last_te_ts:
            self.te_events += 1
            self.last_te_ts = rtp_ts
        if self.packets == 0:
            self._first(ts_ns, seq, rtp_ts, pt)
            return
        self._dup_order(seq)
        # the RTP dissector's extended timestamp: unwrap against the previous packet's
        d: cython.longlong = (rtp_ts - (self.ext_ts & _M32)) & _M32
        if d & _B31:
            d -= _B32
        ext_ts: cython.longlong = self.ext_ts + d
        self._ts_jump(seq, rtp_ts, marker)
        now: cython.double = (ts_ns - self.first_ts_ns) / 1e6
        in_time: cython.bint = ext_ts >= self.first_ext_ts
        start: cython.longlong = self.start_seq
        if seq < start and in_time and not self.under:
            self.cycles += 1
            self.under = True
        elif seq == 0 and self.stop_seq == 65535 and in_time and not self.under:
            self.cycles += 1
            self.under = True
        elif seq > start and in_time and self.under:
            self.under = False
        last: cython.longlong = self.seq_num
        if in_time and last + 1 == seq:
            self.seq_num = seq
        elif in_time and last == 65535 and seq == 0:
            self.seq_num = seq
        elif in_time and (last + 1 < seq or last - seq > 0xFF00):
            self.seq_num = seq
            self.seq_errors += 1
        elif last + 1 > seq:
            self.seq_errors += 1
        cn: cython.bint = pt == _CN or pt == _CN_OLD
        follow_cn: cython.bint = self.payload_type == _CN or self.payload_type == _CN_OLD
        if pt != self.payload_type:
            self.clock = clock_rate(pt, self.rtpmap)
            self.pt_set.add(pt)
        self.payload_type = pt
        clock: cython.longlong = self.clock
        cur_jitter: cython.double = 0.0
        nominal: cython.double
        diff: cython.double
        khz: cython.longlong
        if in_time:
            if clock:
                khz = clock // 1000
                if khz == 0:
                    khz = 1
                nominal = cython.cast(cython.double, ext_ts - self.first_ext_ts) / khz
                diff = now - (self.time_ms + nominal - self.last_nominal)
                if diff < 0:
                    diff = -diff
                cur_jitter = (15 * self.jitter + diff) / 16
                self.jitter = cur_jitter
                self.last_nominal = nominal
            self.delta = now - self.time_ms
        if not marker and not cn and in_time and not follow_cn:
            if self.delta > self.max_delta:
                self.max_delta = self.delta
            if clock:
                if self.jitter > self.max_jitter:
                    self.max_jitter = self.jitter
                self.mean_jitter = (self.mean_jitter * (self.packets - 1) + cur_jitter) / self.packets
        if in_time:
            self.time_ms = now
        self.ext_ts = ext_ts
        self.stop_seq = seq
        self.packets += 1

    @cython.cfunc
    def _first(self, ts_ns: cython.longlong, seq: cython.longlong, rtp_ts: cython.longlong, pt: cython.int) -> None:
        self.first_ts_ns = ts_ns
        self.start_seq = self.stop_seq = self.seq_num = self.prev_seq = seq
        self.max_ext_seq = seq
        self.seen[seq & _DUP_MASK] = seq
        self.first_ext_ts = self.ext_ts = self.prev_rtp_ts = rtp_ts
        self.payload_type = self.first_pt = pt
        self.pt_set.add(pt)
        self.clock = clock_rate(pt, self.rtpmap)
        self.packets = 1

    @cython.cfunc
    def _dup_order(self, seq: cython.longlong) -> None:
        """RFC 3550 A.1-style extended sequence (nearest the highest seen) for duplicates and order."""
        top: cython.longlong = self.max_ext_seq
        d: cython.longlong = (seq - (top & 0xFFFF)) & 0xFFFF
        if d & 0x8000:
            d -= 0x10000
        ext: cython.longlong = top + d
        slot: cython.Py_ssize_t = ext & _DUP_MASK
        if ext > top:
            # past the highest seen, so never seen (every slot holds a seq <= top): no load of the
            # window, which is most often out of the cache, for the common in-order packet
            self.seen[slot] = ext
            self.max_ext_seq = ext
            return
        if self.seen[slot] == ext:
            self.duplicates += 1
            return
        self.seen[slot] = ext
        if ext < top:
            self.out_of_order += 1
        else:
            self.max_ext_seq = ext

    @cython.cfunc
    def _ts_jump(self, seq: cython.longlong, rtp_ts: cython.longlong, marker: cython.bint) -> None:
        step: cython.longlong
        if ((seq - self.prev_seq) & 0xFFFF) == 1:
            step = (rtp_ts - self.prev_rtp_ts) & _M32
            if step & _B31:
                self.ts_jumps += 1
            elif self.first_step == 0:
                self.first_step = step
            elif step > _TS_JUMP * self.first_step and not marker:
                self.ts_jumps += 1
        self.prev_seq = seq
        self.prev_rtp_ts = rtp_ts

    # ------------------------------------------------------------ results

    @property
    def expected(self) -> int:
        return self.stop_seq + self.cycles * 0x10000 - self.start_seq + 1 if self.packets else 0

    @property
    def lost(self) -> int:
        return self.expected - self.packets

    @property
    def loss_ratio(self) -> float:
        e = self.expected
        return max(0.0, self.lost / e) if e > 0 else 0.0

    @property
    def codec(self) -> str | None:
        return codec_name(self.first_pt, self.rtpmap)

    @property
    def payload_types(self) -> list[int]:
        return sorted(self.pt_set)


# ------------------------------------------------------------ the lane beside SIP

KW = 6             # words per slot of the lane's flow table: 4 of addresses, ports + IP version, state
LANE_MIN_SLOTS = 1024
MASK64 = (1 << 64) - 1   # the pure build's ints do not wrap: words and hash kept to 64 bits as C keeps them
_KW = cython.declare(cython.Py_ssize_t, KW)
_H0 = cython.declare(cython.ulonglong, 0x1E3779B97F4A7C15)   # odd multipliers of the flow table's hash
_H1 = cython.declare(cython.ulonglong, 0x42B2AE3D27D4EB4F)
_H2 = cython.declare(cython.ulonglong, 0x165667B19E3779F9)
_H3 = cython.declare(cython.ulonglong, 0x56E8FEB86659FD93)
_H4 = cython.declare(cython.ulonglong, 0x7F51AFD7ED558CCD)


def flow_key(src: str, sport: int, dst: str, dport: int) -> bytes:
    """The lane's key of a flow given as text: the packed addresses as the IP header carries them
    (4 + 4 or 16 + 16 bytes), then both ports big-endian; what ``MediaLane.run`` reads in place."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    return (socket.inet_pton(family, src) + socket.inet_pton(family, dst)
            + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))


@cython.cfunc
@cython.exceptval(check=False)
def _word(p: cython.p_uchar, a: cython.Py_ssize_t) -> cython.ulonglong:
    """The 8 bytes at ``p[a]`` as one big-endian word."""
    w: cython.ulonglong = 0
    i: cython.Py_ssize_t
    for i in range(8):
        w = (w << 8) | p[a + i]
    if not cython.compiled:
        return w & MASK64
    return w


@cython.cfunc
@cython.exceptval(check=False)
def _ports_word(ipver: cython.ulonglong, sport: cython.ulonglong, dport: cython.ulonglong) -> cython.ulonglong:
    """The last key word: IP version, source port, destination port."""
    return (ipver << 32) | (sport << 16) | dport


@cython.cfunc
@cython.exceptval(check=False)
def _mix(h: cython.ulonglong, w: cython.ulonglong, k: cython.ulonglong) -> cython.ulonglong:
    """One key word into the hash (multiplication modulo 2**64)."""
    if not cython.compiled:
        return (h ^ (w * k)) & MASK64
    return h ^ (w * k)


@cython.cfunc
@cython.exceptval(check=False)
def _has_v20(buf: bytes, p: cython.p_uchar, a: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.bint:
    """``b"/2.0" in payload``: SIP's heuristic wants a first line ending in SIP/2.0 (any case)."""
    q: cython.p_uchar
    e: cython.p_uchar
    if not cython.compiled:
        return b"/2.0" in buf[a:a + n]
    q = p + a
    e = p + a + n - 3
    while q < e:
        q = cython.cast(cython.p_uchar, memchr(q, 47, e - q))
        if q == cython.NULL:
            return False
        if q[1] == 50 and q[2] == 46 and q[3] == 48:
            return True
        q += 1
    return False


@cython.cclass
class MediaLane:
    """The datagram stage's lane for ``--parsers sip,rtp`` (MediaStage.run_lane drives it): from a row of a
    decoded batch, each UDP packet of a known plain flow goes to its stream, found in a C-level table
    keyed by the raw addresses and ports (``flow_key``: no text, no Python object per packet), until a
    row the datagram path must see: not UDP, at or after ``until`` (a flush is due), on one of SIP's
    ports, not on a known flow, one SIP's heuristic could take (``heuristic``: contains "/2.0"), or not
    its stream's SSRC.  A packet its stream refuses as RTP is taken and counted by reason in ``bad``
    (RTP_REASONS' codes), as the datagram path counts it.

    The table: open addressing, linear probing, ``KW`` words per slot (state 0 empty, 1 used, 2 removed).
    It holds the flows of the stage's open plain streams (``put`` on routing, ``pop`` on close), so the
    stage's ``max_streams`` bounds it; when three quarters of its slots are taken (removed ones included)
    it is rebuilt, twice as large when at least a quarter holds flows, else as large (removals dropped)."""
    slots = cython.declare(cython.ulonglong[:])
    streams = cython.declare(list)                          # slot -> RtpStream (None when free)
    mask = cython.declare(cython.Py_ssize_t)
    size = cython.declare(cython.Py_ssize_t, visibility="readonly")   # flows held
    taken = cython.declare(cython.Py_ssize_t)               # used + removed slots
    sip_ports = cython.declare(cython.uchar[:])             # 65,536 flags: SIP's ports
    heuristic = cython.declare(cython.bint, visibility="readonly")
    packets = cython.declare(cython.longlong, visibility="readonly")      # RTP packets added
    last_ts_ns = cython.declare(cython.longlong, visibility="readonly")   # of the last packet taken
    bad = cython.declare(cython.longlong[:])                # refused packets per RTP_REASONS code

    def __init__(self) -> None:
        self._alloc(LANE_MIN_SLOTS)
        self.sip_ports = bytearray(65536)
        self.heuristic = True
        self.packets = 0
        self.last_ts_ns = 0
        self.bad = array("q", [0]) * len(RTP_REASONS)

    def configure(self, ports: frozenset, heuristic: bool) -> None:
        """SIP's ports and heuristic: the packets SIP may want stay on the datagram path."""
        flags = bytearray(65536)
        for port in ports:
            flags[port] = 1
        self.sip_ports = flags
        self.heuristic = heuristic

    def refused(self) -> dict:
        """The refused packets by reason (nonzero only)."""
        return {RTP_REASONS[c]: self.bad[c] for c in range(1, len(RTP_REASONS)) if self.bad[c]}

    # ---------------------------------------------------------------- the flow table

    def _alloc(self, n: cython.Py_ssize_t) -> None:
        self.slots = array("Q", [0]) * (n * KW)
        self.streams = [None] * n
        self.mask = n - 1
        self.size = self.taken = 0

    @cython.cfunc
    @cython.exceptval(check=False)
    def _find(self, w0: cython.ulonglong, w1: cython.ulonglong, w2: cython.ulonglong, w3: cython.ulonglong,
              w4: cython.ulonglong, free: cython.bint) -> cython.Py_ssize_t:
        """The slot holding the key, else -1 (``free``: else the first free slot on its probe path)."""
        h: cython.ulonglong = _mix(_mix(_mix(_mix(_mix(0, w0, _H0), w1, _H1), w2, _H2), w3, _H3), w4, _H4)
        h ^= h >> 29
        i: cython.Py_ssize_t = cython.cast(cython.Py_ssize_t, h & cython.cast(cython.ulonglong, self.mask))
        first_free: cython.Py_ssize_t = -1
        b: cython.Py_ssize_t
        st: cython.ulonglong
        while True:
            b = i * _KW
            st = self.slots[b + 5]
            if st == 0:
                return first_free if first_free >= 0 else (i if free else -1)
            if st == 1:
                if self.slots[b] == w0 and self.slots[b + 1] == w1 and self.slots[b + 2] == w2 \
                        and self.slots[b + 3] == w3 and self.slots[b + 4] == w4:
                    return i
            elif free and first_free < 0:
                first_free = i
            i = (i + 1) & self.mask

    @cython.cfunc
    @cython.exceptval(check=False)
    def _slot_of_key(self, key: bytes, free: cython.bint) -> cython.Py_ssize_t:
        """``_find`` for a ``flow_key``."""
        p: cython.p_uchar
        if cython.compiled:
            p = cython.cast(cython.p_uchar, key)
        else:
            p = key
        m: cython.Py_ssize_t = len(key) - 4
        w4: cython.ulonglong = _ports_word(4 if m == 8 else 6, (p[m] << 8) | p[m + 1], (p[m + 2] << 8) | p[m + 3])
        if m == 8:
            return self._find(_word(p, 0), 0, 0, 0, w4, free)
        return self._find(_word(p, 0), _word(p, 8), _word(p, 16), _word(p, 24), w4, free)

    def put(self, key: bytes, stream: RtpStream) -> None:
        """``key``'s (``flow_key``) packets go to ``stream`` from now on."""
        if len(key) != 12 and len(key) != 36:
            raise ValueError("flow_key: 4 + 4 or 16 + 16 address bytes and 4 port bytes")
        i: cython.Py_ssize_t = self._slot_of_key(key, True)
        b: cython.Py_ssize_t = i * _KW
        p: cython.p_uchar
        m: cython.Py_ssize_t = len(key) - 4
        if self.slots[b + 5] != 1:
            if self.slots[b + 5] == 0:
                self.taken += 1
            self.size += 1
            if cython.compiled:
                p = cython.cast(cython.p_uchar, key)
            else:
                p = key
            self.slots[b] = _word(p, 0)
            self.slots[b + 1] = _word(p, 8) if m == 32 else 0
            self.slots[b + 2] = _word(p, 16) if m == 32 else 0
            self.slots[b + 3] = _word(p, 24) if m == 32 else 0
            self.slots[b + 4] = _ports_word(4 if m == 8 else 6, (p[m] << 8) | p[m + 1], (p[m + 2] << 8) | p[m + 3])
            self.slots[b + 5] = 1
        self.streams[i] = stream
        if 4 * self.taken >= 3 * (self.mask + 1):
            self._grow()

    def pop(self, key: bytes) -> None:
        """``key``'s packets go to the datagram path again."""
        if len(key) != 12 and len(key) != 36:
            return
        i: cython.Py_ssize_t = self._slot_of_key(key, False)
        if i >= 0:
            self.slots[i * _KW + 5] = 2
            self.streams[i] = None
            self.size -= 1

    def get(self, key: bytes) -> object:
        """The stream of ``key`` (``flow_key``), or None."""
        if len(key) != 12 and len(key) != 36:
            return None
        i: cython.Py_ssize_t = self._slot_of_key(key, False)
        return self.streams[i] if i >= 0 else None

    def _grow(self) -> None:
        """Re-insert every flow into a table twice as large (or as large, when removals filled it)."""
        old_slots = self.slots
        old_streams = self.streams
        n: cython.Py_ssize_t = self.mask + 1
        self._alloc(2 * n if 2 * self.size >= n // 2 else n)
        k: cython.Py_ssize_t
        b: cython.Py_ssize_t
        i: cython.Py_ssize_t
        j: cython.Py_ssize_t
        old: cython.ulonglong[:] = old_slots
        for k in range(n):
            b = k * _KW
            if old[b + 5] == 1:
                i = self._find(old[b], old[b + 1], old[b + 2], old[b + 3], old[b + 4], True)
                for j in range(_KW):
                    self.slots[i * _KW + j] = old[b + j]
                self.streams[i] = old_streams[k]
                self.size += 1
                self.taken += 1

    # ---------------------------------------------------------------- the loop

    def run(self, buf: bytes, dec: cython.longlong[:], n: cython.Py_ssize_t, ts: cython.longlong[:],
            start: cython.Py_ssize_t, until: cython.longlong) -> cython.Py_ssize_t:
        """Take rows ``start``..``n``-1 until one the datagram path must see; return its index (n: all)."""
        i: cython.Py_ssize_t
        base: cython.Py_ssize_t
        pay: cython.Py_ssize_t
        plen: cython.Py_ssize_t
        a: cython.Py_ssize_t
        slot: cython.Py_ssize_t
        t: cython.longlong
        sport: cython.longlong
        dport: cython.longlong
        code: cython.int
        s: RtpStream
        bp: cython.p_uchar
        if cython.compiled:
            bp = cython.cast(cython.p_uchar, buf)
        else:
            bp = buf
        ports: cython.uchar[:] = self.sip_ports
        for i in range(start, n):
            base = i * NF
            if dec[base + F_STATUS] != ST_L4 or dec[base + F_PROTO] != 17:
                return i
            t = ts[i]
            sport = dec[base + F_SPORT]
            dport = dec[base + F_DPORT]
            if t >= until or ports[sport] or ports[dport]:
                return i
            if dec[base + F_IPVER] == 4:
                a = dec[base + F_L3OFF] + 12
                slot = self._find(_word(bp, a), 0, 0, 0, _ports_word(4, sport, dport), False)
            else:
                a = dec[base + F_L3OFF] + 8
                slot = self._find(_word(bp, a), _word(bp, a + 8), _word(bp, a + 16), _word(bp, a + 24),
                                  _ports_word(6, sport, dport), False)
            if slot < 0:
                return i
            pay = dec[base + F_PAYOFF]
            plen = dec[base + F_PAYLEN]
            if self.heuristic and _has_v20(buf, bp, pay, plen):
                return i
            s = cython.cast(RtpStream, self.streams[slot])
            code = s._add_at(t, bp, pay, plen)
            if code == 0:
                self.packets += 1
            elif code > 0:
                self.bad[code] += 1
            else:   # another SSRC on the flow: the datagram path opens its stream
                return i
            self.last_ts_ns = t
        return n
