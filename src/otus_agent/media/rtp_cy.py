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
    from cython.cimports.cpython.bytes import PyBytes_FromStringAndSize
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
        d: cython.longlong = (rtp_ts - (self.ext_ts & 0xFFFFFFFF)) & 0xFFFFFFFF
        if d & 0x80000000:
            d -= 0x100000000
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
        cn: cython.bint = pt == PT_CN or pt == PT_CN_OLD
        follow_cn: cython.bint = self.payload_type == PT_CN or self.payload_type == PT_CN_OLD
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
        self.seen[seq & (DUP_WINDOW - 1)] = seq
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
        slot: cython.Py_ssize_t = ext & (DUP_WINDOW - 1)
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
            step = (rtp_ts - self.prev_rtp_ts) & 0xFFFFFFFF
            if step & 0x80000000:
                self.ts_jumps += 1
            elif self.first_step == 0:
                self.first_step = step
            elif step > TS_JUMP_FACTOR * self.first_step and not marker:
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

def flow_key(src: str, sport: int, dst: str, dport: int) -> bytes:
    """The lane's key of a flow given as text: the packed addresses as the IP header carries them
    (4 + 4 or 16 + 16 bytes), then both ports big-endian; what ``MediaLane.run`` reads in place."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    return (socket.inet_pton(family, src) + socket.inet_pton(family, dst)
            + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))


@cython.cfunc
def _key_at(buf: bytes, p: cython.p_uchar, ipver: cython.longlong, l3off: cython.Py_ssize_t,
            sport: cython.longlong, dport: cython.longlong) -> bytes:
    """``flow_key`` of a decoded packet, read from its IP header (one small bytes object, no text)."""
    a: cython.Py_ssize_t = l3off + 12 if ipver == 4 else l3off + 8
    m: cython.Py_ssize_t = 8 if ipver == 4 else 32
    key: bytes
    k: cython.p_uchar
    i: cython.Py_ssize_t
    if cython.compiled:
        key = PyBytes_FromStringAndSize(cython.NULL, m + 4)
        k = cython.cast(cython.p_uchar, key)
        for i in range(m):
            k[i] = p[a + i]
        k[m] = (sport >> 8) & 0xFF
        k[m + 1] = sport & 0xFF
        k[m + 2] = (dport >> 8) & 0xFF
        k[m + 3] = dport & 0xFF
        return key
    return buf[a:a + m] + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")


@cython.cfunc
@cython.exceptval(check=False)
def _has_v20(buf: bytes, p: cython.p_uchar, a: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.bint:
    """``b"/2.0" in payload``: SIP's heuristic wants a first line ending in SIP/2.0 (any case)."""
    q: cython.p_uchar
    e: cython.p_uchar
    if cython.compiled:
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
    return b"/2.0" in buf[a:a + n]


@cython.cclass
class MediaLane:
    """The datagram stage's lane for ``--parsers sip,rtp`` (MediaStage.run_lane drives it): from a row of a
    decoded batch, each UDP packet of a known plain flow goes to its stream, keyed by the raw addresses
    and ports (``flow_key``), until a row the datagram path must see: not UDP, at or after ``until``
    (a flush is due), on one of SIP's ports, not on a known flow, one SIP's heuristic could take
    (``heuristic``: contains "/2.0"), or not its stream's SSRC.  A packet its stream refuses as RTP is
    taken and counted by reason in ``bad`` (RTP_REASONS' codes), as the datagram path counts it."""
    flows = cython.declare(dict, visibility="readonly")    # flow_key -> RtpStream (non-multiplexed flows)
    sip_ports = cython.declare(cython.uchar[:])            # 65,536 flags: SIP's ports
    heuristic = cython.declare(cython.bint, visibility="readonly")
    packets = cython.declare(cython.longlong, visibility="readonly")      # RTP packets added
    last_ts_ns = cython.declare(cython.longlong, visibility="readonly")   # of the last packet taken
    bad = cython.declare(cython.longlong[:])                # refused packets per RTP_REASONS code

    def __init__(self) -> None:
        self.flows = {}
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

    def run(self, buf: bytes, dec: cython.longlong[:], n: cython.Py_ssize_t, ts: cython.longlong[:],
            start: cython.Py_ssize_t, until: cython.longlong) -> cython.Py_ssize_t:
        """Take rows ``start``..``n``-1 until one the datagram path must see; return its index (n: all)."""
        i: cython.Py_ssize_t
        base: cython.Py_ssize_t
        pay: cython.Py_ssize_t
        plen: cython.Py_ssize_t
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
        flows: dict = self.flows
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
            found = flows.get(_key_at(buf, bp, dec[base + F_IPVER], dec[base + F_L3OFF], sport, dport))
            if found is None:
                return i
            pay = dec[base + F_PAYOFF]
            plen = dec[base + F_PAYLEN]
            if self.heuristic and _has_v20(buf, bp, pay, plen):
                return i
            s = cython.cast(RtpStream, found)
            code = s._add_at(t, bp, pay, plen)
            if code == 0:
                self.packets += 1
            elif code > 0:
                self.bad[code] += 1
            else:   # another SSRC on the flow: the datagram path opens its stream
                return i
            self.last_ts_ns = t
        return n
