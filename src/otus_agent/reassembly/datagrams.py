"""Wire capture -> decode -> reassembly for one task, and count everything.

The L4 datagrams that come out (``Datagram``) are what the SIP stage will
consume.  Objects are only built for packets a consumer asked for; the
decode loop itself allocates nothing per packet.
"""
from __future__ import annotations

import time
from array import array
from dataclasses import dataclass
from typing import Callable, Iterable

from otus_agent.capture.pcapfile import PacketBatch
from otus_agent.decode import decoder as D
from otus_agent.reassembly.ipfrag_cy import FragmentReassembler

MAX_NESTED_REASSEMBLY = 3
TRANSPORTS = {17: "udp", 6: "tcp", 132: "sctp"}


@dataclass(slots=True)
class Datagram:
    """One L4 payload, after IP reassembly when it was fragmented."""
    ts_ns: int
    ipver: int
    src_ip: str
    dst_ip: str
    proto: int
    src_port: int
    dst_port: int
    payload: bytes
    tcp_seq: int = 0
    tcp_flags: int = 0
    vlan: int = -1
    tunnel: int = 0
    reassembled: bool = False

    @property
    def transport(self) -> str:
        return TRANSPORTS.get(self.proto, str(self.proto))


@dataclass
class DatagramConfig:
    verify_ipv4_checksum: bool = True
    decode_vxlan: bool = True
    frag_timeout_s: float = 30.0
    frag_max_datagrams: int = 8192
    frag_max_bytes: int = 32 << 20
    frag_max_fragments: int = 1024


def _datagram(buf: bytes, out, o: int, ts_ns: int, reassembled: bool) -> Datagram:
    ipver = out[o + D.F_IPVER]
    src, dst = D.ip_addresses(buf, ipver, out[o + D.F_L3OFF])
    pay = out[o + D.F_PAYOFF]
    return Datagram(ts_ns, ipver, src, dst, out[o + D.F_PROTO], out[o + D.F_SPORT], out[o + D.F_DPORT],
                    buf[pay:pay + out[o + D.F_PAYLEN]], out[o + D.F_TCPSEQ], out[o + D.F_TCPFLAGS],
                    out[o + D.F_VLAN], out[o + D.F_TUNNEL], reassembled)


class DatagramStage:
    """Decode batches, reassemble fragments, hand L4 datagrams to ``sink``."""

    def __init__(self, config: DatagramConfig | None = None,
                 sink: Callable[[Datagram], None] | None = None, batch_size: int = 4096,
                 lane: Callable[[bytes, object, int, object, int, bool], int] | None = None):
        """``lane`` (e.g. SipStage.run_lane) takes whole runs of a batch's packets itself and
        returns the index of the first one ``sink`` must see; order is kept.  Its last argument is
        False for a reassembled datagram (a one-packet batch inside the batch being fed)."""
        c = self.config = config or DatagramConfig()
        self.decoder = D.Decoder(batch_size, c.verify_ipv4_checksum, c.decode_vxlan)
        # reassembled datagrams are decoded apart, so "packets" keeps meaning captured packets
        self.inner = D.Decoder(1, c.verify_ipv4_checksum, c.decode_vxlan)
        self.reasm = FragmentReassembler(c.frag_timeout_s, c.frag_max_datagrams, c.frag_max_bytes,
                                         c.frag_max_fragments)
        self.sink = sink
        self.lane = lane if sink is not None else None
        self._ts_one = array("q", bytes(8))   # a reassembled datagram's time, as the lane takes it
        self.l4_datagrams = 0
        self.reassembled_datagrams = 0
        self.started = time.monotonic()

    def feed(self, batch: PacketBatch) -> None:
        buf, n = batch.buf, batch.n
        out = self.decoder.decode(buf, n, batch.offs, batch.caplens, batch.links)
        statuses = out[D.F_STATUS:n * D.NF:D.NF]
        self.l4_datagrams += statuses.count(D.ST_L4)
        has_frags = D.ST_FRAGMENT in statuses
        if self.sink is None and not has_frags:
            return
        ts = batch.ts_ns
        lane = self.lane
        if lane is not None:
            NF, sink = D.NF, self.sink
            i = lane(buf, out, n, ts, 0)
            while i < n:
                o = i * NF
                st = out[o + D.F_STATUS]
                if st == D.ST_L4:
                    sink(_datagram(buf, out, o, ts[i], False))
                elif st == D.ST_FRAGMENT:
                    self._fragment(buf, out, o, ts[i])
                i = lane(buf, out, n, ts, i + 1)
            return
        for i, st in enumerate(statuses):
            if st == D.ST_L4:
                if self.sink is not None:
                    self.sink(_datagram(buf, out, i * D.NF, ts[i], False))
            elif st == D.ST_FRAGMENT:
                self._fragment(buf, out, i * D.NF, ts[i])

    def _fragment(self, buf: bytes, out, o: int, ts_ns: int) -> None:
        for _ in range(MAX_NESTED_REASSEMBLY):
            whole = self.reasm.add(buf, out[o + D.F_L3OFF], out[o + D.F_L3END], out[o + D.F_IPVER],
                                   out[o + D.F_FRAGHDR], ts_ns)
            if whole is None:
                return
            self.reassembled_datagrams += 1
            buf, out, o = whole, self.inner.decode_one(whole), 0
            st = out[D.F_STATUS]
            if st == D.ST_L4:
                self.l4_datagrams += 1
                if self.lane is not None:       # a one-packet batch: the lane takes it when it is typical
                    self._ts_one[0] = ts_ns
                    if self.lane(buf, out, 1, self._ts_one, 0, False):
                        return
                if self.sink is not None:
                    self.sink(_datagram(buf, out, 0, ts_ns, True))
                return
            if st != D.ST_FRAGMENT:  # e.g. ICMP, or a reassembled datagram that is malformed
                return

    def run(self, batches: Iterable[PacketBatch]) -> None:
        for b in batches:
            self.feed(b)

    def summary(self) -> dict:
        return {
            "packets": self.decoder.cnt[0],
            "l4_datagrams": self.l4_datagrams,
            "decode": {k: v for k, v in self.decoder.counters(nonzero=True).items()
                       if not k.startswith("drop_") and k != "packets"},
            "drops": self.decoder.drops(),
            "reassembly": self.reasm.counters(),
            "reassembled_decode": {k: v for k, v in self.inner.counters(nonzero=True).items() if k != "packets"},
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "compiled": D.COMPILED,
        }
