"""SIP over UDP, TCP (stream reassembly, WebSocket) and SCTP: datagrams in, records out.

Takes the pipeline's L4 ``Datagram`` objects, frames SIP messages per
transport, parses them, follows calls and hands JSON-ready records to
``emit``.  Every message that cannot be parsed is counted by reason (and,
with ``error_records``, emitted as a record with ``error``); nothing is
dropped silently.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from otus_agent.reassembly.datagrams import Datagram
from otus_agent.reassembly.tcpstream import TcpReassembler
from otus_agent.sip import message_cy as sip
from otus_agent.sip.dialogs_cy import CallTable
from otus_agent.sip.records import DEFAULT_CORRELATION, Correlator, fast_sip_record, sip_record
from otus_agent.sip.scan_cy import Scanner
from otus_agent.sip.select import Selector, header_getter
from otus_agent.sip.select_cy import DialogSelector
from otus_agent.sip.slots import LAYOUT as SCAN

try:
    from otus_agent.sip import writer_cy as udplane
    LANE_COMPILED = not udplane.__file__.endswith(".py")
except ImportError:  # pragma: no cover
    udplane = None
    LANE_COMPILED = False
if LANE_COMPILED:
    _LC = udplane.COUNTERS
if TYPE_CHECKING:
    from otus_spec import SipOptions

# SipOptions' defaults (otus_spec), spelled out so `otus run --pcap` starts without pydantic;
# tests/agent/sip/test_sip_grammar.py fails when they drift from the task contract's.
DEFAULT_PORTS = (5060, 5061, 5080)
MAX_SCTP_MESSAGE = 256 << 10
MAX_WS_FRAME = 256 << 10


@dataclass
class SipConfig:
    """The SIP stage's settings.  The task's are ``SipOptions`` (otus_spec); ``from_options`` is the one
    conversion, and the defaults here equal SipOptions' own (checked by a test)."""
    ports: tuple[int, ...] = DEFAULT_PORTS   # always parsed; other ports when the payload looks like SIP
    heuristic: bool = True
    correlation_headers: tuple[str, ...] = DEFAULT_CORRELATION
    redact_auth: bool = True
    error_records: bool = True
    discard_methods: tuple[str, ...] = ()
    call_summaries: bool = False
    fast_path: bool = True                   # typical messages via sipscan (same records, less work)
    max_calls: int = 100_000
    tcp_max_streams: int = 16384
    tcp_max_buffer: int = 256 << 10
    tcp_timeout_s: float = 300.0
    extra: dict = field(default_factory=dict)  # task / agent labels added to every record
    match: dict | None = None                # the task's sip.match (SipMatch as a dict): sip/select.py

    @classmethod
    def from_options(cls, options: SipOptions, extra: dict | None = None) -> SipConfig:
        """A task's SIP options as the stage's settings (``extra``: the labels added to every record)."""
        return cls(ports=tuple(options.ports), heuristic=options.heuristic,
                   correlation_headers=tuple(options.correlation_headers), redact_auth=options.redact_authorization,
                   error_records=options.error_records, discard_methods=tuple(options.discard_methods),
                   call_summaries=options.call_summaries, extra=dict(extra or {}),
                   match=options.match.model_dump() if options.match is not None else None)


def _sip_websocket_handshake(p: bytes) -> bool:
    """An HTTP upgrade to WebSocket with the 'sip' subprotocol (RFC 7118), either direction."""
    if not (p.startswith(b"GET ") or p.startswith(b"HTTP/1.1 101")):
        return False
    low = p[:4096].lower()
    return b"websocket" in low and b"sec-websocket-protocol: sip" in low


_O_BODY, _O_CL, _O_REQ, _O_M1, _O_STATUS, _O_CSM0, _O_CSM1 = (
    SCAN[k] for k in ("O_BODY", "O_CL", "O_REQ", "O_M1", "O_STATUS", "O_CSM0", "O_CSM1"))
_BLANK = frozenset(b"\r\n\0 \t")
_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx")


class SipStage:
    def __init__(self, config: SipConfig | None = None, emit: Callable[[dict], None] | None = None,
                 raw: Callable[[bytes, dict], None] | None = None,
                 emit_block: Callable[[bytes, list | None], None] | None = None, want_pairs: bool = False):
        """``emit`` gets each record; ``raw`` (optional, e.g. HEP) gets the message bytes with it.

        ``emit_block`` (optional) takes records already serialised -- JSON lines, and with
        ``want_pairs`` their (Call-ID, record) pairs for Kafka -- from the compiled UDP lane
        (``udplane``); the pipeline then runs typical SIP-over-UDP packets through it.
        """
        c = self.config = config or SipConfig()
        self.raw = raw
        self.ports = frozenset(c.ports)
        self.emit = emit or (lambda r: None)
        self.correlator = Correlator(c.correlation_headers)
        self.discard = frozenset(c.discard_methods)
        self.tcp = TcpReassembler(c.tcp_max_streams, c.tcp_max_buffer, timeout_s=c.tcp_timeout_s)
        self.dialogs = CallTable(c.max_calls)   # the one call table: this path and the lane feed it
        self.extra = dict(c.extra) or None
        # the scanner knows the default correlation headers only; dialogs are fed from its fields too
        self.fast = c.fast_path and tuple(c.correlation_headers) == DEFAULT_CORRELATION
        self._scanner = Scanner()
        self.fast_messages = 0
        self.messages = 0
        self.requests = 0
        self.responses = 0
        self.methods: Counter = Counter()
        self.status_classes: Counter = Counter()
        self.malformed: Counter = Counter()
        self.malformed_messages = 0
        self.keepalives = 0
        self.junk_bytes = 0
        self.junk_datagrams = 0
        self.discarded = 0
        self.truncated_at_close = 0
        self.sctp_fragments_dropped = 0
        self._sctp: dict = {}
        self.lane = None
        self.emit_block = emit_block
        self.select: DialogSelector | None = None
        self._select_headers: frozenset[str] = frozenset()
        if c.match:
            self.select = DialogSelector(Selector.from_options(c.match))
            self._select_headers = self.select.selector.header_names()
        if emit_block is not None and LANE_COMPILED and self.fast and not self.discard and raw is None:
            from orjson import dumps
            suffix = b"," + dumps(self.extra)[1:-1] if self.extra else b""
            self.lane = udplane.UdpLane(self._scanner, c.ports, c.heuristic, suffix, want_pairs,
                                        self.dialogs if c.call_summaries else None, self.tcp)
            self._lane_seen = [0] * _LC["size"]
            self.lane.select = self.select          # the lane judges with the same table
            self.lane.select_heads = self._select_headers

    # ------------------------------------------------------------ entry
    def run_lane(self, buf: bytes, out, n: int, ts, start: int, end: bool = True) -> int:
        """The pipeline's hook: the UDP lane from packet ``start``; index of the first packet it left.

        What the lane wrote stays in its buffer while it stops for a packet of the general path (which
        hands it over before a record of its own: ``_flush_lane``); it is handed over when the lane
        reaches the batch's end (``end``: the caller's batch ends there too) or its buffer is full."""
        lane = self.lane
        while True:
            i = lane.run(buf, out, n, ts, start)
            if lane.full:
                self.emit_block(*lane.take())
                start = i
                continue
            if i >= n and end and lane.olen:
                self.emit_block(*lane.take())
            return i

    def _flush_lane(self) -> None:
        """Hand over what the lane holds, before a record of the general path: order is kept."""
        lane = self.lane
        if lane is not None and lane.olen:
            self.emit_block(*lane.take())

    def _fold(self) -> None:
        """Add what the lane counted since the last fold to the stage's counters (summary, finish)."""
        if self.lane is None:
            return
        now = self.lane.counters()
        seen = self._lane_seen
        d = [a - b for a, b in zip(now, seen)]
        self._lane_seen = now
        self.messages += d[_LC["messages"]]
        self.fast_messages += d[_LC["messages"]]
        self.requests += d[_LC["requests"]]
        self.responses += d[_LC["responses"]]
        for k, name in enumerate(_CLASSES):
            if d[_LC["classes"] + k]:
                self.status_classes[name] += d[_LC["classes"] + k]
        for k, name in enumerate(udplane.METHODS):
            if d[_LC["methods"] + k]:
                self.methods[name.decode()] += d[_LC["methods"] + k]

    def on_datagram(self, d: Datagram) -> None:
        proto = d.proto
        if proto == 17:
            self._udp(d)
        elif proto == 6:
            self._tcp(d)
        elif proto == 132:
            self._sctp_packet(d)

    def _wanted(self, d: Datagram, payload: bytes) -> bool:
        if d.src_port in self.ports or d.dst_port in self.ports:
            return True
        return self.config.heuristic and sip.looks_like_sip(payload)

    # ------------------------------------------------------------ UDP
    def _udp(self, d: Datagram) -> None:
        p = d.payload
        if not p or not self._wanted(d, p):
            return
        if p[0] in _BLANK:  # only then can the whole datagram be a keep-alive or padding
            if not p.strip(b"\r\n"):
                self.keepalives += 1  # RFC 5626 CRLF keep-alive
                return
            if not p.strip(b"\r\n\0 \t"):
                self.junk_bytes += len(p)  # e.g. NUL padding ahead of a request (Zeek's junk_before_request)
                self.junk_datagrams += 1
                return
        self._message(p, d, "udp", stream=False)

    def _message(self, data: bytes, d: Datagram, transport: str, stream: bool,
                 src: tuple | None = None, scanned: bool = False) -> int | None:
        """Report the message at the start of ``data``; its length, or None while incomplete.
        ``scanned``: the scanner has just accepted ``data`` (its offsets are current)."""
        if self.fast:
            sc = self._scanner
            o = sc.arr
            r = 1 if scanned else sc.scan(data, stream)
            if r == -1:
                return None
            if r == 1:
                bstart = o[_O_BODY]
                cl = o[_O_CL]
                bend = bstart + cl if cl >= 0 else len(data)
                lane = self.lane
                if lane is not None:
                    if src is None:
                        src = (d.src_ip, d.src_port, d.dst_ip, d.dst_port)
                    if lane.write_scanned(data, d.ts_ns, src[0].encode(), src[1], src[2].encode(), src[3],
                                          transport.encode()):
                        # stays in the lane's buffer: taken before any other record (_flush_lane)
                        return bend if stream else len(data)
                self._deliver_fast(data, sc, o, bstart, bend, d, transport, src)
                return bend if stream else len(data)
        m = sip.parse(data, stream=stream, redact=self.config.redact_auth)
        if m is None:
            return None
        self._deliver(m, d, transport, src, data[:m.length])
        return m.length

    def _deliver_fast(self, data: bytes, sc: Scanner, o, bstart: int, bend: int, d: Datagram, transport: str,
                      src: tuple | None) -> None:
        if src is None:
            src = (d.src_ip, d.src_port, d.dst_ip, d.dst_port)
        self.messages += 1
        self.fast_messages += 1
        if o[_O_REQ] == 1:
            self.requests += 1
            method = data[:o[_O_M1]].decode("latin-1")
            self.methods[method] += 1
            if method in self.discard:
                self.discarded += 1
                return
        else:
            self.responses += 1
            self.status_classes[_CLASSES[o[_O_STATUS] // 100]] += 1
            if self.discard and data[o[_O_CSM0]:o[_O_CSM1]].decode("latin-1") in self.discard:
                self.discarded += 1
                return
        rec = fast_sip_record(data, sc, bstart, bend, d.ts_ns, src[0], src[1], src[2], src[3], transport, self.extra)
        if self.select is not None:
            req = o[_O_REQ] == 1
            names = self._select_headers
            if not self._selected(rec, d.ts_ns, req, header_getter(data, names) if names and req else None):
                return
        self._flush_lane()
        self.emit(rec)
        if self.raw is not None:
            self.raw(data[:bend], rec)
        if self.config.call_summaries:
            for s in self.dialogs.observe_record(rec, d.ts_ns):
                self.emit(s)

    def _selected(self, rec: dict, ts: int, req: bool, header) -> bool:
        """The selector's verdict on a message from its record's fields (the lane asks from the same
        fields, read from the scanner's offsets: UdpLane._admit)."""
        assert self.select is not None
        return self.select.admit(ts, req, rec["method"], rec["status_code"], rec["cseq_method"], rec["call_id"],
                                 rec["from_user"], rec["to_user"], rec["request_uri"], header,
                                 rec["to_tag"] is not None)

    def _deliver(self, m: sip.SipMessage, d: Datagram, transport: str, src: tuple | None = None,
                 raw: bytes = b"") -> None:
        if src is None:
            src = (d.src_ip, d.src_port, d.dst_ip, d.dst_port)
        if m.junk:
            self.junk_bytes += m.junk
        if m.defects:
            self.malformed_messages += 1
            for reason in m.defects:
                self.malformed[reason] += 1
            if not self.config.error_records:
                return
        elif m.is_request:
            self.requests += 1
            self.methods[m.method] += 1
        else:
            self.responses += 1
            self.status_classes[f"{m.status_code // 100}xx"] += 1
        self.messages += 1
        if m.method in self.discard or (m.cseq_method in self.discard and not m.is_request):
            self.discarded += 1
            return
        rec = sip_record(m, d.ts_ns, src[0], src[1], src[2], src[3], transport, self.correlator, self.extra)
        if self.select is not None:
            h = m.headers
            if not self._selected(rec, d.ts_ns, m.is_request, (lambda name: h.get(name) or []) if m.is_request else None):
                return
        self._flush_lane()
        self.emit(rec)
        if self.raw is not None and raw:
            self.raw(raw, rec)
        if self.config.call_summaries and not m.defects:
            for s in self.dialogs.observe(m, d.ts_ns):
                self.emit(s)

    # ------------------------------------------------------------ TCP
    def _tcp(self, d: Datagram) -> None:
        key = (d.src_ip, d.src_port, d.dst_ip, d.dst_port)
        tcp = self.tcp
        tcp.tick(d.ts_ns)
        s = tcp.get(key)
        if s is None:
            p = d.payload
            if d.tcp_flags & 0x02:  # SYN: follow if it targets a SIP port
                if d.src_port not in self.ports and d.dst_port not in self.ports:
                    return
            elif not p or not (self._wanted(d, p) or _sip_websocket_handshake(p)):
                return
            s = tcp.open(key, d.tcp_seq, d.ts_ns)
        p = d.payload
        # the common case: a segment in order on an idle stream holding exactly one plain message
        if self.lane is not None and p and not s.buf and not s.pending and s.state is None \
                and not d.tcp_flags & 0x07 and d.tcp_seq == s.next_seq \
                and sip.looks_like_sip(p):
            sc = self._scanner
            if sc.scan(p, True) == 1:
                o = sc.arr
                if o[_O_BODY] + o[_O_CL] == len(p):
                    tcp.consumed(s, len(p), d.ts_ns)
                    self._message(p, d, "tcp", True, key, scanned=True)
                    return
        if tcp.add(s, d.tcp_seq, d.tcp_flags, p, d.ts_ns):
            self._frame(s, d)
        if s.closed:
            if s.buf.strip(b"\r\n"):
                self.truncated_at_close += 1
                self.malformed["truncated_at_close"] += 1
            tcp.close(key)

    def _frame(self, s, d: Datagram) -> None:
        buf = s.buf
        while buf:
            if s.state is not None:
                self._websocket(s, d)
                return
            if buf[0] in (13, 10):
                n = len(buf) - len(buf.lstrip(b"\r\n"))
                del buf[:n]
                self.keepalives += 1
                continue
            if buf.startswith(b"GET ") and self._ws_upgrade(s):
                continue
            if buf.startswith(b"HTTP/1.1 101"):
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del buf[:end + 4]
                s.state = "ws"
                continue
            if self.lane is not None:        # the common case first: one whole, plain message
                data = bytes(buf)
                if sip.looks_like_sip(data) and self._scanner.scan(data, True) == 1:
                    del buf[:self._message(data, d, "tcp", True, s.key, scanned=True)]
                    continue
            head = bytes(buf[:2048])
            if not sip.looks_like_sip(head):
                skip = self._resync(buf)
                if skip < 0:
                    if len(buf) > 4096:  # no start line anywhere: give the bytes up
                        self.junk_bytes += len(buf)
                        self.malformed["junk_in_stream"] += 1
                        buf.clear()
                    return
                self.junk_bytes += skip
                self.malformed["junk_in_stream"] += 1
                del buf[:skip]
                continue
            n = self._message(bytes(buf), d, "tcp", True, s.key)
            if n is None:
                return
            del buf[:n]

    @staticmethod
    def _resync(buf: bytearray) -> int:
        """Offset of the next line that starts a SIP message, or -1."""
        pos = buf.find(b"\n")
        while 0 <= pos < len(buf) - 1:
            if sip.looks_like_sip(bytes(buf[pos + 1:pos + 2049])):
                return pos + 1
            pos = buf.find(b"\n", pos + 1)
        return -1

    # ------------------------------------------------------------ WebSocket (RFC 6455 / 7118)
    def _ws_upgrade(self, s) -> bool:
        end = s.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        if b"websocket" not in bytes(s.buf[:end]).lower():
            return False
        del s.buf[:end + 4]
        s.state = "ws"
        return True

    def _websocket(self, s, d: Datagram) -> None:
        buf = s.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            opcode = b0 & 0x0F
            masked = b1 & 0x80
            n = b1 & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                off = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                off = 10
            if n > MAX_WS_FRAME:
                self.malformed["websocket_frame_too_large"] += 1
                buf.clear()
                return
            if masked:
                off += 4
            if len(buf) < off + n:
                return
            payload = bytes(buf[off:off + n])
            if masked:
                key = bytes(buf[off - 4:off])
                payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
            del buf[:off + n]
            if opcode in (1, 2) and payload.strip():
                self._message(payload, d, "ws", False, s.key)
            elif opcode == 8:
                s.closed = True

    # ------------------------------------------------------------ SCTP (RFC 4168)
    def _sctp_packet(self, d: Datagram) -> None:
        p = d.payload
        pos = 0
        n = len(p)
        while n - pos >= 4:
            ctype = p[pos]
            flags = p[pos + 1]
            clen = (p[pos + 2] << 8) | p[pos + 3]
            if clen < 4 or pos + clen > n:
                break
            if ctype == 0 and clen > 16:
                stream_id = (p[pos + 8] << 8) | p[pos + 9]
                data = p[pos + 16:pos + clen]
                self._sctp_data(d, stream_id, flags, data)
            pos += (clen + 3) & ~3

    def _sctp_data(self, d: Datagram, stream_id: int, flags: int, data: bytes) -> None:
        key = (d.src_ip, d.src_port, d.dst_ip, d.dst_port, stream_id)
        begin, end = flags & 2, flags & 1
        if begin and end:
            if data.strip(b"\r\n\0 ") and (self._wanted(d, data)):
                self._message(data, d, "sctp", stream=False)
            return
        if begin:
            if len(self._sctp) >= 4096:
                del self._sctp[next(iter(self._sctp))]
                self.sctp_fragments_dropped += 1
            self._sctp[key] = bytearray(data)
            return
        part = self._sctp.get(key)
        if part is None:
            self.sctp_fragments_dropped += 1
            return
        part += data
        if len(part) > MAX_SCTP_MESSAGE:
            del self._sctp[key]
            self.sctp_fragments_dropped += 1
            return
        if end:
            del self._sctp[key]
            whole = bytes(part)
            if self._wanted(d, whole):
                self._message(whole, d, "sctp", stream=False)

    # ------------------------------------------------------------ end
    def finish(self) -> None:
        """End of input: calls still open are summarised (when enabled)."""
        self._flush_lane()
        self._fold()
        if self.config.call_summaries:
            for s in self.dialogs.flush():
                self.emit(s)

    def summary(self) -> dict:
        self._fold()
        return {
            "sip_messages": self.messages, "requests": self.requests, "responses": self.responses,
            "methods": dict(self.methods), "status_classes": dict(self.status_classes),
            "malformed_messages": self.malformed_messages, "malformed": dict(self.malformed),
            "keepalives": self.keepalives, "junk_bytes": self.junk_bytes, "junk_datagrams": self.junk_datagrams,
            "discarded": self.discarded, "fast_path": self.fast_messages,
            "tcp": self.tcp.counters(), "sctp_fragments_dropped": self.sctp_fragments_dropped,
            "calls": self.dialogs.counters(),
            **({"select": self.select.counters()} if self.select is not None else {}),
        }
