"""TCP stream reassembly for SIP: per-direction byte streams in sequence order.

Each direction of a TCP connection is a ``Stream``: in-order bytes are
appended to a buffer; segments ahead of the expected sequence number wait
(bounded); retransmitted bytes are dropped (first copy wins).  The caller
frames messages out of ``Stream.buf`` (SIP uses Content-Length).

Limits, each with a counter:
- ``max_streams`` streams; beyond it the least recently active is evicted
  (``evictions``);
- ``max_buffer`` bytes buffered per stream (in order + waiting); beyond it
  the stream is reset to the newest data (``overflows``);
- ``max_pending`` out-of-order segments per stream; beyond it the gap is
  declared lost and the stream resumes after it (``gaps``);
- ``timeout_s`` idle time (capture clock); idle streams are dropped
  (``timeouts``).
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

SYN, FIN, RST = 0x02, 0x01, 0x04
MOD = 1 << 32
EXPIRE_EVERY_NS = 1_000_000_000   # idle streams are looked for at most once per second of capture


def wire_key(key: tuple) -> bytes:
    """The stream's key as the packet carries it: source and destination address, then the ports
    (2 bytes each, network order).  The compiled lane finds streams by it without making the text."""
    src, sport, dst, dport = key[:4]
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    try:
        return socket.inet_pton(family, src) + socket.inet_pton(family, dst) + \
            sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    except (OSError, ValueError, OverflowError, AttributeError, TypeError):
        return b""        # not an address a packet can carry (e.g. a test's made-up key): not indexed


def _after(a: int, b: int) -> int:
    """Signed distance a - b in 32-bit sequence space."""
    d = (a - b) % MOD
    return d - MOD if d >= MOD >> 1 else d


@dataclass(slots=True)
class Stream:
    key: tuple
    next_seq: int
    last_ts: int
    buf: bytearray = field(default_factory=bytearray)
    pending: dict = field(default_factory=dict)   # seq -> payload, ahead of next_seq
    pending_bytes: int = 0
    closed: bool = False
    state: object = None                          # framer's per-stream state (e.g. WebSocket)
    wire: bytes = b""                             # wire_key(key): the index ``by_wire`` holds it


class TcpReassembler:
    def __init__(self, max_streams: int = 16384, max_buffer: int = 256 << 10, max_pending: int = 64,
                 timeout_s: float = 300.0):
        if max_streams < 1 or max_buffer < 4096 or max_pending < 1 or timeout_s <= 0:
            raise ValueError("tcp limits: max_streams >= 1, max_buffer >= 4096, max_pending >= 1, timeout > 0")
        self.max_streams = max_streams
        self.max_buffer = max_buffer
        self.max_pending = max_pending
        self.timeout_ns = int(timeout_s * 1e9)
        self.streams: dict[tuple, Stream] = {}
        self.by_wire: dict[bytes, Stream] = {}    # the same streams by wire_key (the lane's pure ACKs)
        self.tick_ts = 0                          # capture time of the last look for idle streams
        self.segments = 0
        self.retransmissions = 0
        self.out_of_order = 0
        self.gaps = 0
        self.overflows = 0
        self.evictions = 0
        self.timeouts = 0
        self.bytes_buffered = 0

    def counters(self) -> dict:
        return {"segments": self.segments, "retransmissions": self.retransmissions,
                "out_of_order": self.out_of_order, "gaps": self.gaps, "overflows": self.overflows,
                "evictions": self.evictions, "timeouts": self.timeouts, "streams": len(self.streams)}

    def get(self, key: tuple) -> Stream | None:
        return self.streams.get(key)

    def open(self, key: tuple, seq: int, ts: int, wire: bytes | None = None) -> Stream:
        """The stream of ``key`` (created, the least recently active evicted when full); ``wire``: its
        wire_key when the caller has it already (the lane, from the packet's headers)."""
        s = self.streams.pop(key, None)
        if s is None:
            while len(self.streams) >= self.max_streams:
                self._drop(self.streams[next(iter(self.streams))])
                self.evictions += 1
            s = Stream(key, seq, ts, wire=wire_key(key) if wire is None else wire)
            if s.wire:
                self.by_wire[s.wire] = s
        self.streams[key] = s
        return s

    def _drop(self, s: Stream) -> None:
        del self.streams[s.key]
        if self.by_wire.get(s.wire) is s:
            del self.by_wire[s.wire]

    def close(self, key: tuple) -> None:
        s = self.streams.get(key)
        if s is not None:
            self._drop(s)

    def tick(self, now: int) -> None:
        """Per segment: drop idle streams, looking at most once per EXPIRE_EVERY_NS of capture time."""
        if now - self.tick_ts > EXPIRE_EVERY_NS:
            self.tick_ts = now
            self.expire(now)

    def expire(self, now: int) -> None:
        while self.streams:
            s = next(iter(self.streams.values()))
            if s.last_ts + self.timeout_ns >= now:
                break
            self._drop(s)
            self.timeouts += 1

    def touch(self, s: Stream, ts: int) -> None:
        """A segment with no payload and no SYN, FIN or RST (a pure ACK): all ``add`` does for it."""
        self._touch(s, ts)

    def _touch(self, s: Stream, ts: int) -> None:
        """A segment arrived: count it, and move the stream to the end (the dict stays ordered by last activity)."""
        self.segments += 1
        self.streams.pop(s.key, None)
        self.streams[s.key] = s
        s.last_ts = ts

    def consumed(self, s: Stream, n: int, ts: int) -> None:
        """An in-order segment of n bytes that the caller took whole (empty buffer, nothing pending):
        the same bookkeeping as ``add`` without copying the bytes through the buffer."""
        self._touch(s, ts)
        s.next_seq = (s.next_seq + n) % MOD

    def add(self, s: Stream, seq: int, flags: int, payload: bytes, ts: int) -> bool:
        """Take a segment; True when ``s.buf`` grew and is worth framing."""
        self._touch(s, ts)
        if flags & SYN:
            s.next_seq = (seq + 1) % MOD
            s.buf.clear()
            s.pending.clear()
            s.pending_bytes = 0
            seq = s.next_seq
        grew = False
        if payload:
            d = _after(seq, s.next_seq)
            if d == 0:
                s.buf += payload
                s.next_seq = (seq + len(payload)) % MOD
                grew = True
            elif d < 0:
                if -d >= len(payload):
                    self.retransmissions += 1
                else:
                    s.buf += payload[-d:]
                    s.next_seq = (seq + len(payload)) % MOD
                    grew = True
                    self.retransmissions += 1
            else:
                self.out_of_order += 1
                if seq not in s.pending:
                    s.pending[seq] = payload
                    s.pending_bytes += len(payload)
                if len(s.pending) > self.max_pending:
                    self._skip_gap(s)
                    grew = True
            if s.pending and grew:
                self._drain(s)
            if len(s.buf) + s.pending_bytes > self.max_buffer:
                self.overflows += 1
                keep = self.max_buffer // 2
                del s.buf[:max(0, len(s.buf) - keep)]
                s.pending.clear()
                s.pending_bytes = 0
        if flags & (FIN | RST):
            s.closed = True
        return grew

    def _drain(self, s: Stream) -> None:
        while s.pending:
            progressed = False
            for seq in list(s.pending):
                d = _after(seq, s.next_seq)
                if d > 0:
                    continue
                payload = s.pending.pop(seq)
                s.pending_bytes -= len(payload)
                if -d < len(payload):
                    s.buf += payload[-d:] if d else payload
                    s.next_seq = (seq + len(payload)) % MOD
                else:
                    self.retransmissions += 1
                progressed = True
            if not progressed:
                return

    def _skip_gap(self, s: Stream) -> None:
        """Too many segments wait behind a hole: give the hole up."""
        self.gaps += 1
        first = min(s.pending, key=lambda q: _after(q, s.next_seq))
        s.buf.clear()  # bytes before the hole cannot complete a message any more
        s.next_seq = first
        self._drain(s)
