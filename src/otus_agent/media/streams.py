"""Per-stream RTP measurement, defined as Wireshark's RTP stream analysis defines it.

Why Wireshark's definitions and not only RFC 3550 A.1/A.8: users check Otus against
``tshark -q -z rtp,streams``; the numbers must be the same numbers.  ``RtpStream.add``
follows ``rtppacket_analyse`` (ui/tap-rtp-analysis.c) as tshark 4.0 behaves (checked
packet by packet against 4.0.17, tests/agent/media/test_against_tshark.py): a packet is
"in time sequence" unless its extended timestamp is before the stream's first one, and
only such packets move the reference time and update delta and jitter:

- packets: every packet of the stream (5-tuple + SSRC);
- lost = expected - received, expected = last seq + 65536 * cycles - first seq + 1; the
  cycle counter is Wireshark's wrap heuristic (a seq below the first one while the
  timestamp goes forward starts a cycle), so a late or duplicate packet can make it < 0;
- sequence errors: packets whose seq is not the previous one + 1 (Wireshark "Wrong sequence");
- delta: arrival time minus the previous in-time-sequence packet's arrival (ms); max delta
  skips the first packet, marker packets, comfort noise and packets whose timestamp went back;
- jitter (ms): J += (|D| - J) / 16 with D = arrival difference minus timestamp difference
  converted with the payload type's clock (RFC 3550 6.4.1); mean jitter is Wireshark's running
  mean over (packets - 1); no jitter for a clock rate Otus does not know (telephone-event).

Beyond tshark's table: duplicates (an extended seq already seen within the last
``DUP_WINDOW`` numbers), out-of-order (below the highest seen, not a duplicate), markers,
timestamp jumps and RFC 4733 telephone events (distinct event timestamps).
"""
from __future__ import annotations

# RTP clock rates of the static payload types (RFC 3551 6, as Wireshark's clock_map)
STATIC_CLOCK = {0: 8000, 1: 8000, 2: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000,
                10: 44100, 11: 44100, 12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025, 17: 22050,
                18: 8000, 19: 8000, 25: 90000, 26: 90000, 28: 90000, 31: 90000, 32: 90000, 33: 90000,
                34: 90000}
STATIC_CODEC = {0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 13: "CN", 18: "G729", 19: "CN"}
PT_CN, PT_CN_OLD = 13, 19
DUP_WINDOW = 1024
# a timestamp step this many times the stream's first step (or backwards) on consecutive seqs is a jump
TS_JUMP_FACTOR = 4


def clock_rate(pt: int, rtpmap: dict[int, str] | None) -> int:
    """Clock rate in Hz for a payload type, 0 when jitter cannot be computed (as Wireshark)."""
    if pt < 96:
        return STATIC_CLOCK.get(pt, 0)
    enc = (rtpmap or {}).get(pt)
    if not enc:
        return 0
    name, _, rest = enc.partition("/")
    if name.lower() == "telephone-event":
        return 0
    rate = rest.split("/", 1)[0]
    return int(rate) if rate.isdigit() else 0


def codec_name(pt: int, rtpmap: dict[int, str] | None) -> str | None:
    enc = (rtpmap or {}).get(pt)
    if enc:
        return enc.split("/", 1)[0]
    return STATIC_CODEC.get(pt)


class RtpStream:
    """The running statistics of one RTP stream.  No payload is ever kept."""

    __slots__ = ("ssrc", "payload_type", "first_pt", "clock", "rtpmap", "packets", "bytes", "start_seq",
                 "stop_seq", "seq_num", "cycles", "under", "seq_errors", "first_ts_ns", "last_ts_ns", "t0_ns",
                 "time_ms", "first_ext_ts", "last_nominal", "ext_ts", "delta", "max_delta", "jitter", "max_jitter",
                 "mean_jitter", "markers", "ts_jumps", "duplicates", "out_of_order", "max_ext_seq",
                 "seen", "ext_seq", "te_pt", "te_events", "last_te_ts", "first_step", "prev_seq", "prev_rtp_ts",
                 "pt_set")

    def __init__(self, ssrc: int, rtpmap: dict[int, str] | None = None):
        self.ssrc = ssrc
        self.rtpmap = rtpmap
        self.te_pt = -1
        for k, v in (rtpmap or {}).items():
            if v.lower().startswith("telephone-event"):
                self.te_pt = k
        self.packets = 0
        self.bytes = 0
        self.seq_errors = 0
        self.cycles = 0
        self.under = False
        self.max_delta = 0.0
        self.jitter = 0.0
        self.max_jitter = 0.0
        self.mean_jitter = 0.0
        self.delta = 0.0
        self.markers = 0
        self.ts_jumps = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.te_events = 0
        self.last_te_ts = -1
        self.first_step = 0
        self.seen: set[int] = set()
        self.pt_set: set[int] = set()
        self.payload_type = self.first_pt = -1
        self.clock = 0
        self.first_ts_ns = self.last_ts_ns = self.t0_ns = 0
        self.start_seq = self.stop_seq = self.seq_num = self.prev_seq = 0
        self.max_ext_seq = self.ext_seq = 0
        self.time_ms = 0.0
        self.first_ext_ts = self.ext_ts = self.prev_rtp_ts = 0
        self.last_nominal = 0.0

    def add(self, ts_ns: int, seq: int, rtp_ts: int, pt: int, marker: bool, size: int) -> None:
        """Account one packet (arrival ``ts_ns``, header fields, UDP payload size)."""
        self.bytes += size
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
        d = (rtp_ts - (self.ext_ts & 0xFFFFFFFF)) & 0xFFFFFFFF
        ext_ts = self.ext_ts + (d - (1 << 32) if d & 0x80000000 else d)
        self._ts_jump(seq, rtp_ts, marker)
        now = (ts_ns - self.t0_ns) / 1e6
        # "in time sequence": not before the stream's first timestamp (Wireshark 4.0)
        in_time = ext_ts >= self.first_ext_ts
        start = self.start_seq
        if seq < start and in_time and not self.under:
            self.cycles += 1
            self.under = True
        elif seq == 0 and self.stop_seq == 65535 and in_time and not self.under:
            self.cycles += 1
            self.under = True
        elif seq > start and in_time and self.under:
            self.under = False
        last = self.seq_num
        if in_time and last + 1 == seq:
            self.seq_num = seq
        elif in_time and last == 65535 and seq == 0:
            self.seq_num = seq
        elif in_time and (last + 1 < seq or last - seq > 0xFF00):
            self.seq_num = seq
            self.seq_errors += 1
        elif last + 1 > seq:
            self.seq_errors += 1
        cn = pt == PT_CN or pt == PT_CN_OLD
        follow_cn = self.payload_type == PT_CN or self.payload_type == PT_CN_OLD
        if pt != self.payload_type:
            self.clock = clock_rate(pt, self.rtpmap)
        self.payload_type = pt
        self.pt_set.add(pt)
        clock = self.clock
        cur_jitter = 0.0
        if in_time:
            if clock:
                nominal = (ext_ts - self.first_ext_ts) / (clock // 1000 or 1)
                diff = abs(now - (self.time_ms + nominal - self.last_nominal))
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
                n = self.packets
                self.mean_jitter = (self.mean_jitter * (n - 1) + cur_jitter) / n
        if in_time:
            self.time_ms = now
        self.ext_ts = ext_ts
        self.stop_seq = seq
        self.packets += 1

    def _first(self, ts_ns: int, seq: int, rtp_ts: int, pt: int) -> None:
        self.first_ts_ns = self.t0_ns = ts_ns
        self.start_seq = self.stop_seq = self.seq_num = self.prev_seq = seq
        self.ext_seq = self.max_ext_seq = seq
        self.seen.add(seq)
        self.first_ext_ts = self.ext_ts = self.prev_rtp_ts = rtp_ts
        self.payload_type = self.first_pt = pt
        self.pt_set.add(pt)
        self.clock = clock_rate(pt, self.rtpmap)
        self.packets = 1

    def _dup_order(self, seq: int) -> None:
        """RFC 3550 A.1-style extended sequence (nearest to the highest seen) for duplicates and order."""
        top = self.max_ext_seq
        d = (seq - (top & 0xFFFF)) & 0xFFFF
        ext = top + (d - 0x10000 if d & 0x8000 else d)
        if ext in self.seen:
            self.duplicates += 1
            return
        self.seen.add(ext)
        if len(self.seen) > 2 * DUP_WINDOW:   # amortised: prune once per DUP_WINDOW packets
            floor = top - DUP_WINDOW
            self.seen = {s for s in self.seen if s > floor}
        if ext < top:
            self.out_of_order += 1
        else:
            self.max_ext_seq = ext

    def _ts_jump(self, seq: int, rtp_ts: int, marker: bool) -> None:
        if (seq - self.prev_seq) & 0xFFFF == 1:
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


# ---------------------------------------------------------------- E-model

# ITU-T G.113 Appendix I equipment impairment (Ie) and packet-loss robustness (Bpl) per codec
EMODEL_CODECS = {
    "pcmu": (0.0, 25.1), "pcma": (0.0, 25.1), "g711": (0.0, 25.1), "g722": (0.0, 25.1),
    "g729": (11.0, 19.0), "g723": (15.0, 16.1), "gsm": (20.0, 10.0), "gsm-efr": (5.0, 10.0),
    "ilbc": (10.0, 32.0), "amr": (5.0, 10.0), "amr-wb": (5.0, 10.0), "opus": (0.0, 25.1),
}
DEFAULT_IE_BPL = (0.0, 25.1)
R0 = 93.2            # G.107 default basic signal-to-noise ratio with the default Is


def r_factor(loss_ratio: float, one_way_delay_ms: float, codec: str | None) -> float:
    """Simplified G.107 E-model: R = R0 - Id - Ie,eff (Is and A at their defaults, A = 0).

    - Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3), d the one-way mouth-to-ear delay (ms)
      (the Cole-Rosenbluth fit of G.107's Idd/Idte for echo-cancelled paths);
    - Ie,eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl), Ppl the loss in percent, BurstR = 1
      (random loss), Ie and Bpl the codec's G.113 values (G.711 with PLC when unknown).
    """
    ie, bpl = EMODEL_CODECS.get((codec or "").lower(), DEFAULT_IE_BPL)
    ppl = max(0.0, min(100.0, loss_ratio * 100.0))
    ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl)
    d = max(0.0, one_way_delay_ms)
    idd = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    return R0 - idd - ie_eff


def mos_from_r(r: float) -> float:
    """G.107 Annex B: MOS_CQE from R (clamped at 1: the cubic dips just below it for R < 6.5)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6)


def one_way_delay_ms(rtt_ms: float | None, jitter_ms: float, ptime_ms: float = 20.0) -> float:
    """The E-model's delay input: half the RTCP round trip (0 when unknown), a jitter buffer of
    twice the mean jitter, and one packetisation interval."""
    return (rtt_ms / 2.0 if rtt_ms else 0.0) + 2.0 * jitter_ms + ptime_ms
