"""The flow table's hot path (Cython pure-Python mode, see docs/architecture.md).

``Flow`` holds one five-tuple's counters and runs the observer's TCP state machine (the names are in
``flows/table.py``); ``flow_record`` builds its ``type: "flow"`` record (fields: ``flows/records.py``).
``walk`` takes the TCP/UDP/SCTP packets of a decoded batch itself -- five-tuple lookup, counters, TCP
state, new and ended flows (``new_flow``, ``end_flow``) -- and hands ICMP and other IP protocols,
fragments and sweeps back to the stage (``flows/stage.py``), whose ``_sweep`` runs ``sweep``: the flows
due come from two ``Wheel``s, never from a walk over the table. The walk keys a flow by its five-tuple
with the lower (address, port) end first, so either direction finds it with one lookup; the flow's
``src`` is still its initiator. Compiled, ``Flow`` is a C struct the loop updates directly and the loop
indexes the rows as C arrays; uncompiled, the same source runs as plain Python.
"""
try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

if cython.compiled:  # the one definition: decode/layout.pxd (its Python view is generated from it)
    from cython.cimports.otus_agent.decode.layout import (  # noqa: I001
        F_DPORT, F_IPVER, F_L3OFF, F_L4OFF, F_PAYLEN, F_PROTO, F_SPORT, F_TCPFLAGS, F_TCPSEQ, NF, ST_DROPPED,
        ST_FRAGMENT, ST_L4, ST_OTHER_IP,
    )
else:
    from otus_agent.decode.layout import (  # noqa: I001
        F_DPORT, F_IPVER, F_L3OFF, F_L4OFF, F_PAYLEN, F_PROTO, F_SPORT, F_TCPFLAGS, F_TCPSEQ, NF, ST_DROPPED,
        ST_FRAGMENT, ST_L4, ST_OTHER_IP,
    )

from heapq import heappop, heappush
from operator import attrgetter
from socket import AF_INET6, inet_ntop

from otus_agent.flows.table import (
    ACK,
    CLOSED,
    ESTABLISHED,
    FIN,
    HALF_CLOSED,
    HALF_SEQ,
    NONE,
    PROTO_NAMES,
    RESET,
    RST,
    SEQ_MOD,
    STATE_NAMES,
    SYN,
    SYN_RECEIVED,
    SYN_SENT,
    TIMED_OUT,
)

SYN_ACK = cython.declare(cython.longlong, 0x12)
S_RESET = cython.declare(cython.longlong, RESET)
S_SYN_RECEIVED = cython.declare(cython.longlong, SYN_RECEIVED)
S_ESTABLISHED = cython.declare(cython.longlong, ESTABLISHED)
S_NONE = cython.declare(cython.longlong, NONE)
S_SYN_SENT = cython.declare(cython.longlong, SYN_SENT)
S_HALF_CLOSED = cython.declare(cython.longlong, HALF_CLOSED)
S_CLOSED = cython.declare(cython.longlong, CLOSED)
T_FIN = cython.declare(cython.longlong, FIN)
T_SYN = cython.declare(cython.longlong, SYN)
T_RST = cython.declare(cython.longlong, RST)
T_ACK = cython.declare(cython.longlong, ACK)
SEQ_MASK = cython.declare(cython.longlong, SEQ_MOD - 1)   # x & SEQ_MASK is x mod 2**32, also for x < 0
T_HALF = cython.declare(cython.longlong, HALF_SEQ)

_SEQ = attrgetter("seq")
SCHEMA_VERSION = 1  # of the type: "flow" record (its fields: flows/records.py)
_TCP_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"), (0x40, "E"),
                     (0x80, "C"))


_OCTETS: tuple = tuple(str(i) for i in range(256))


@cython.ccall
def address(raw: bytes) -> str:
    """The text form of a raw IPv4 or IPv6 address (IPv4 from a table of octets: inet_ntop's formatting
    was a fifth of a record's cost)."""
    n: cython.Py_ssize_t = 0
    i: cython.Py_ssize_t
    v: cython.int
    if len(raw) == 4 and cython.compiled:   # the digits written into a C buffer: one string object made
        out = cython.declare(cython.char[16])
        for i in range(4):
            v = cython.cast(cython.uchar, raw[i])
            if v >= 100:
                out[n] = 48 + v // 100
                n += 1
            if v >= 10:
                out[n] = 48 + (v // 10) % 10
                n += 1
            out[n] = 48 + v % 10
            n += 1
            out[n] = 46   # "."
            n += 1
        return out[:n - 1].decode("ascii")
    if len(raw) == 4:
        return (_OCTETS[cython.cast(cython.uchar, raw[0])] + "." + _OCTETS[cython.cast(cython.uchar, raw[1])] + "."
                + _OCTETS[cython.cast(cython.uchar, raw[2])] + "." + _OCTETS[cython.cast(cython.uchar, raw[3])])
    return inet_ntop(AF_INET6, raw)  # type: ignore[no-any-return]


def flag_letters(flags: int) -> str:
    return "".join(c for bit, c in _TCP_FLAG_LETTERS if flags & bit)


FLAG_STRINGS: tuple = tuple(flag_letters(i) for i in range(256))  # flag_letters of every 8-bit flags value


def type_counts(d: dict | None) -> dict | None:
    return {f"{t}/{c}": n for (t, c), n in sorted(d.items())} if d else None


@cython.no_gc   # holds bytes, a tuple of bytes and ints, dicts of ints: never in a reference cycle, so the
@cython.cclass  # collector need not track (or traverse) the table's flows
class Flow:
    """Counters of one flow; the walk and the stage update them in place (no allocation per packet)."""
    key = cython.declare(tuple, visibility="public")
    ipver = cython.declare(cython.int, visibility="public")
    proto = cython.declare(cython.int, visibility="public")
    src = cython.declare(bytes, visibility="public")
    dst = cython.declare(bytes, visibility="public")
    sport = cython.declare(cython.longlong, visibility="public")
    dport = cython.declare(cython.longlong, visibility="public")
    first_ns = cython.declare(cython.longlong, visibility="public")
    last_ns = cython.declare(cython.longlong, visibility="public")
    pk_ab = cython.declare(cython.longlong, visibility="public")
    by_ab = cython.declare(cython.longlong, visibility="public")
    pk_ba = cython.declare(cython.longlong, visibility="public")
    by_ba = cython.declare(cython.longlong, visibility="public")
    state = cython.declare(cython.int, visibility="public")
    fins = cython.declare(cython.int, visibility="public")  # bit 1: FIN from src, bit 2: FIN from dst
    flags_ab = cython.declare(cython.int, visibility="public")  # TCP flags seen, OR-ed per direction
    flags_ba = cython.declare(cython.int, visibility="public")
    nxt_ab = cython.declare(cython.longlong, visibility="public")  # next expected sequence number; -1: none yet
    nxt_ba = cython.declare(cython.longlong, visibility="public")
    retrans = cython.declare(cython.longlong, visibility="public")
    zero_win = cython.declare(cython.longlong, visibility="public")
    handshake = cython.declare(cython.bint, visibility="public")
    midstream = cython.declare(cython.bint, visibility="public")
    isn = cython.declare(cython.longlong, visibility="public")  # the initiator's SYN sequence number: a SYN
    # repeating it is the same connection
    icmp = cython.declare(object, visibility="public")  # dict (type, code) -> packets, ICMP flows; else None
    icmp_errors = cython.declare(object, visibility="public")  # the same for ICMP errors quoting this flow
    reported_ns = cython.declare(cython.longlong, visibility="public")
    seq = cython.declare(cython.longlong, visibility="public")  # creation count: table order among flows due
    xq = cython.declare(cython.longlong, visibility="public")  # expiry wheel bucket of the live entry; -1: none
    rq = cython.declare(cython.longlong, visibility="public")  # the same for the interval-report wheel

    def __init__(self, key: tuple, ipver: cython.int, proto: cython.int, src: bytes, dst: bytes,
                 sport: cython.longlong, dport: cython.longlong, ts_ns: cython.longlong):
        self.key = key
        self.ipver = ipver
        self.proto = proto
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.first_ns = ts_ns
        self.last_ns = ts_ns
        self.pk_ab = self.by_ab = self.pk_ba = self.by_ba = 0
        self.state = S_NONE
        self.fins = 0
        self.flags_ab = self.flags_ba = 0
        self.nxt_ab = self.nxt_ba = -1
        self.retrans = 0
        self.zero_win = 0
        self.handshake = False
        self.midstream = False
        self.isn = -1
        self.icmp = None
        self.icmp_errors = None
        self.reported_ns = ts_ns
        self.seq = 0
        self.xq = -1
        self.rq = -1

    @cython.ccall
    def tcp(self, d: cython.int, flags: cython.longlong, seq: cython.longlong, paylen: cython.longlong,
            window: cython.longlong) -> None:
        """Advance the TCP state and the retransmission and zero-window counts for one segment.

        A retransmission is a segment carrying data (or SYN/FIN) that starts before the next
        expected sequence number of its direction, keep-alives excepted (as Wireshark's analysis)."""
        st: cython.int = self.state
        nxt: cython.longlong
        end: cython.longlong
        behind: cython.longlong
        seglen: cython.longlong
        if d == 0:
            self.flags_ab |= flags
        else:
            self.flags_ba |= flags
        if flags & T_RST:
            st = S_RESET
        elif flags & T_SYN:
            if flags & T_ACK:
                if st == S_SYN_SENT or st == S_NONE:
                    st = S_SYN_RECEIVED
            elif st == S_NONE:
                st = S_SYN_SENT
            if d == 0 and not flags & T_ACK:
                self.isn = seq
        elif st == S_SYN_RECEIVED and d == 0 and flags & T_ACK:
            st = S_ESTABLISHED
            self.handshake = True
        if flags & T_FIN and st != S_RESET:
            self.fins |= 1 << d
            st = S_CLOSED if self.fins == 3 else S_HALF_CLOSED
        self.state = st
        seglen = paylen + (1 if flags & T_SYN else 0) + (1 if flags & T_FIN else 0)
        if window == 0 and not flags & (T_SYN | T_FIN | T_RST):
            self.zero_win += 1
        if seglen == 0 or flags & T_RST:
            return
        nxt = self.nxt_ab if d == 0 else self.nxt_ba
        end = (seq + seglen) & SEQ_MASK
        if nxt >= 0:
            behind = (nxt - seq) & SEQ_MASK
            if 0 < behind < T_HALF:
                if not (seglen == 1 and behind == 1 and not flags & (T_SYN | T_FIN)):
                    self.retrans += 1
                if not 0 < ((end - nxt) & SEQ_MASK) < T_HALF:
                    return
            elif not 0 < ((end - nxt) & SEQ_MASK) < T_HALF:
                return
        if d == 0:
            self.nxt_ab = end
        else:
            self.nxt_ba = end

    def tcp_state_name(self, timed_out: bool = False) -> str:
        if timed_out and self.state != S_CLOSED and self.state != S_RESET:
            return TIMED_OUT
        return STATE_NAMES[self.state]  # type: ignore[no-any-return]

    def reopen(self) -> None:
        """The initiator repeated its SYN (same ISN) after the close: the same connection tries again."""
        self.state = S_NONE
        self.fins = 0

    @cython.ccall
    def closed(self) -> cython.bint:
        return self.state == S_CLOSED or self.state == S_RESET


@cython.cclass
class Wheel:
    """A timing wheel of flows: who may be due at a sweep, without walking the whole table.

    Flows are filed by a deadline (packet time, ns: the last time the flow is *not* due at) into
    buckets ``width`` ns wide; a heap holds the bucket numbers in use, so ``take(t)`` removes exactly the
    buckets that can hold a deadline before ``t``. An entry is a hint, never a verdict: the stage files a
    flow lazily (when created and when a sweep finds it not due yet, not per packet) and checks its real
    deadline when its bucket comes due. The flow records the bucket of its live entry (``Flow.xq`` for
    the expiry wheel, ``Flow.rq`` for the report wheel); an entry whose bucket is not the flow's (filed
    again since, or the flow ended: -1) is stale and skipped. Entries hold the flow object, not its key,
    so no entry can act on a later flow with the same key.

    Bound: at most ``limit`` entries (the stage gives twice its table limit). Stale entries of ended
    flows wait for their bucket; when the wheel is full it is rebuilt from the table's live flows (one
    entry each), which frees at least half of it (``rebuilds`` counts that). Nothing is dropped.
    """
    width = cython.declare(cython.longlong, visibility="readonly")
    limit = cython.declare(cython.longlong, visibility="readonly")
    size = cython.declare(cython.longlong, visibility="readonly")  # entries, stale ones included
    rebuilds = cython.declare(cython.longlong, visibility="readonly")
    report = cython.declare(cython.bint, visibility="readonly")  # files Flow.rq (else Flow.xq)
    buckets = cython.declare(dict, visibility="readonly")
    heap = cython.declare(list, visibility="readonly")

    def __init__(self, width: cython.longlong, limit: cython.longlong, report: cython.bint):
        self.width = width if width > 0 else 1
        self.limit = limit
        self.size = 0
        self.rebuilds = 0
        self.report = report
        self.buckets = {}
        self.heap = []

    @cython.cfunc
    def _add(self, f: Flow, b: cython.longlong) -> cython.int:
        lst = self.buckets.get(b)
        if lst is None:
            self.buckets[b] = [f]
            heappush(self.heap, b)
        else:
            lst.append(f)
        self.size += 1
        if self.report:
            f.rq = b
        else:
            f.xq = b
        return 0

    @cython.ccall
    def bucket(self, deadline: cython.longlong) -> cython.longlong:
        """deadline // width (packet times are not negative: a negative deadline is bucket 0)."""
        return deadline // self.width if deadline > 0 else 0

    @cython.ccall
    def file(self, f: Flow, deadline: cython.longlong, flows: dict) -> None:
        """File ``f`` by ``deadline``; a full wheel is first rebuilt from ``flows`` (the table)."""
        if self.size >= self.limit:
            self.rebuild(flows)
        self._add(f, self.bucket(deadline))

    @cython.ccall
    def refile(self, f: Flow, deadline: cython.longlong, flows: dict) -> None:
        """``f``'s deadline moved earlier (a shorter timeout for its new TCP state, or packet time went
        back): file it again if its entry's bucket is now too late."""
        if self.bucket(deadline) < f.xq:
            self.file(f, deadline, flows)

    @cython.ccall
    def rebuild(self, flows: dict) -> None:
        """One entry per live flow of the table (where it is filed now), the stale ones gone."""
        g: Flow
        b: cython.longlong
        self.clear()
        self.rebuilds += 1
        for g in flows.values():
            b = g.rq if self.report else g.xq
            if b >= 0:   # -1: not filed (taken by a running sweep, or never: reports off)
                self._add(g, b)

    @cython.ccall
    def take(self, t: cython.longlong) -> list:
        """Unfile and return the flows whose live entry is in a bucket that can hold a deadline before ``t``
        (bucket start < t), each once."""
        out: list = []
        g: Flow
        b: cython.longlong
        heap = self.heap
        while heap:
            b = heap[0]
            if b * self.width >= t:
                break
            heappop(heap)
            lst = self.buckets.pop(b)
            self.size -= len(lst)
            for g in lst:
                if self.report:
                    if g.rq == b:
                        g.rq = -1
                        out.append(g)
                elif g.xq == b:
                    g.xq = -1
                    out.append(g)
        return out

    @cython.ccall
    def clear(self) -> None:
        self.buckets.clear()
        del self.heap[:]
        self.size = 0

    def counters(self) -> dict:
        return {"entries": self.size, "limit": self.limit, "rebuilds": self.rebuilds}


@cython.ccall
def idle_limit(stage: object, proto: cython.int, state: cython.int) -> cython.longlong:
    """A flow's idle timeout (ns) by protocol and, for TCP, state (the one rule: FlowStage._limit asks it)."""
    if proto == 6:
        return stage._tcp_lim[state]  # type: ignore[attr-defined,no-any-return]
    if proto == 1 or proto == 58:
        return stage._t_icmp  # type: ignore[attr-defined,no-any-return]
    return stage._t_udp  # type: ignore[attr-defined,no-any-return]


@cython.ccall
def timeout_reason(f: Flow) -> str:
    """A closed TCP flow's linger ran out: it ended by its FIN or RST, not by going quiet."""
    if f.proto == 6 and f.closed():
        return "rst" if f.state == S_RESET else "fin"
    return "idle_timeout"


@cython.ccall
def end_flow(stage: object, f: Flow, t: cython.longlong, reason: str) -> None:
    """End ``f``: out of the table (its wheel entries stale), counted by reason, its end record to the
    stage's sink and events."""
    del stage.flows[f.key]  # type: ignore[attr-defined]
    f.xq = -1
    f.rq = -1
    ended: dict = stage.ended  # type: ignore[attr-defined]
    ended[reason] = ended.get(reason, 0) + 1
    sink = stage.sink  # type: ignore[attr-defined]
    events = stage.events  # type: ignore[attr-defined]
    if sink is not None or events is not None:
        rec = flow_record(f, "end", t, reason)
        if sink is not None:
            sink(rec)
        if events is not None:
            events(rec)


@cython.ccall
def sweep(stage: object, t: cython.longlong) -> None:
    """End the flows idle past their timeout at ``t``, then report those due an interval record, each
    set in table order (creation order, as a walk over the table gives), touching only wheel entries
    that can be due: a flow is due with ``t - last_ns > timeout`` / ``t - reported_ns >= interval``."""
    xw: Wheel = stage._xw  # type: ignore[attr-defined]
    rw: Wheel = stage._rw  # type: ignore[attr-defined]
    flows: dict = stage.flows  # type: ignore[attr-defined]
    f: Flow
    dl: cython.longlong
    report: cython.longlong = stage._report_ns  # type: ignore[attr-defined]
    stage._next_sweep = t + stage._sweep_ns  # type: ignore[attr-defined]
    due: list
    if xw.heap and cython.cast(cython.longlong, xw.heap[0]) * xw.width < t:
        due = []
        for f in xw.take(t):
            dl = f.last_ns + idle_limit(stage, f.proto, f.state)
            if dl < t:
                due.append(f)
            else:
                xw.file(f, dl, flows)
        due.sort(key=_SEQ)
        for f in due:
            end_flow(stage, f, t, timeout_reason(f))
    sink = stage.sink  # type: ignore[attr-defined]
    if report and sink is not None and rw.heap and cython.cast(cython.longlong, rw.heap[0]) * rw.width < t:
        due = []
        for f in rw.take(t):
            dl = f.reported_ns + report - 1
            if dl < t:
                due.append(f)
            else:
                rw.file(f, dl, flows)
        due.sort(key=_SEQ)
        for f in due:
            f.reported_ns = t
            sink(flow_record(f, "interval", t))
            rw.file(f, t + report - 1, flows)


@cython.ccall
def new_flow(stage: object, flows: dict, key: tuple, ipver: cython.int, proto: cython.int, src: bytes, dst: bytes,
             sp: cython.longlong, dp: cython.longlong, t: cython.longlong) -> Flow:
    """A new flow in the table, filed in the wheels; a full table first ends its oldest flow (``evicted``)."""
    xw: Wheel = stage._xw  # type: ignore[attr-defined]
    rw: Wheel
    report: cython.longlong
    if len(flows) >= stage._max_flows:  # type: ignore[attr-defined]
        stage.evictions += 1  # type: ignore[attr-defined]
        end_flow(stage, flows[next(iter(flows))], t, "evicted")
    if cython.compiled:   # the struct filled directly: no argument tuple to parse (as Flow.__init__)
        f = Flow.__new__(Flow)
        f.key = key
        f.ipver = ipver
        f.proto = proto
        f.src = src
        f.dst = dst
        f.sport = sp
        f.dport = dp
        f.first_ns = f.last_ns = f.reported_ns = t
        f.state = S_NONE
        f.nxt_ab = f.nxt_ba = f.isn = f.xq = f.rq = -1
        f.icmp = f.icmp_errors = None   # the counters, flags and booleans are 0 from tp_new
    else:
        f = Flow(key, ipver, proto, src, dst, sp, dp, t)
    f.seq = stage.created  # type: ignore[attr-defined]
    flows[key] = f
    stage.created += 1  # type: ignore[attr-defined]
    # the wheels: an entry's deadline is the last packet time the flow is *not* due at
    xw.file(f, t + idle_limit(stage, proto, S_NONE), flows)
    report = stage._report_ns  # type: ignore[attr-defined]
    if report and stage.sink is not None:  # type: ignore[attr-defined]
        rw = stage._rw  # type: ignore[attr-defined]
        rw.file(f, t + report - 1, flows)
    return f


# The record's keys in their order (the JSON lines' order): the common fields, then ``end_reason`` (end
# records), then the TCP fields (TCP flows), then ``icmp_types`` / ``icmp_errors`` (when counted).
BASE_FIELDS: tuple = ("v", "type", "event", "ts", "proto", "ipver", "src_ip", "src_port", "dst_ip", "dst_port",
                      "first_ts", "last_ts", "src_packets", "src_bytes", "dst_packets", "dst_bytes")
END_FIELDS: tuple = ("end_reason",)
TCP_FIELDS: tuple = ("tcp_state", "tcp_handshake", "tcp_midstream", "tcp_flags_src", "tcp_flags_dst",
                     "tcp_retransmissions", "tcp_zero_windows")
# One template per record shape: a record is a copy of its template (one allocation, already the final
# size and key order) whose values are then set; building it key by key grew and resized the dict.
_TEMPLATE = cython.declare(dict, dict.fromkeys(BASE_FIELDS))
_TEMPLATE_END = cython.declare(dict, dict.fromkeys(BASE_FIELDS + END_FIELDS))
_TEMPLATE_TCP = cython.declare(dict, dict.fromkeys(BASE_FIELDS + TCP_FIELDS))
_TEMPLATE_TCP_END = cython.declare(dict, dict.fromkeys(BASE_FIELDS + END_FIELDS + TCP_FIELDS))


@cython.ccall
def flow_record(f: Flow, event: str, ts_ns: cython.longlong, end_reason: object = None) -> dict:
    """The ``type: "flow"`` record of ``f`` (its fields: flows/records.py; key order: the templates above)."""
    rec: dict
    tcp: cython.bint = f.proto == 6
    if tcp:
        rec = (_TEMPLATE_TCP if end_reason is None else _TEMPLATE_TCP_END).copy()
    else:
        rec = (_TEMPLATE if end_reason is None else _TEMPLATE_END).copy()
    proto = PROTO_NAMES.get(f.proto)
    rec["v"] = SCHEMA_VERSION
    rec["type"] = "flow"
    rec["event"] = event
    rec["ts"] = ts_ns
    rec["proto"] = proto if proto is not None else str(f.proto)
    rec["ipver"] = f.ipver
    rec["src_ip"] = address(f.src)
    rec["src_port"] = f.sport
    rec["dst_ip"] = address(f.dst)
    rec["dst_port"] = f.dport
    rec["first_ts"] = f.first_ns
    rec["last_ts"] = f.last_ns
    rec["src_packets"] = f.pk_ab
    rec["src_bytes"] = f.by_ab
    rec["dst_packets"] = f.pk_ba
    rec["dst_bytes"] = f.by_ba
    if end_reason is not None:
        rec["end_reason"] = end_reason
    if tcp:
        rec["tcp_state"] = (TIMED_OUT if end_reason == "idle_timeout" and f.state != S_CLOSED
                            and f.state != S_RESET else STATE_NAMES[f.state])   # as Flow.tcp_state_name
        rec["tcp_handshake"] = f.handshake
        rec["tcp_midstream"] = f.midstream
        rec["tcp_flags_src"] = FLAG_STRINGS[f.flags_ab & 255]
        rec["tcp_flags_dst"] = FLAG_STRINGS[f.flags_ba & 255]
        rec["tcp_retransmissions"] = f.retrans
        rec["tcp_zero_windows"] = f.zero_win
    if f.icmp:
        rec["icmp_types"] = type_counts(f.icmp)
    if f.icmp_errors:
        rec["icmp_errors"] = type_counts(f.icmp_errors)
    return rec


@cython.cfunc
@cython.inline
def _lower(buf: bytes, sa: cython.Py_ssize_t, alen: cython.Py_ssize_t, sp: cython.longlong,
           dp: cython.longlong) -> cython.bint:
    """Whether the source end (address at ``sa``, port ``sp``) is not above the destination end (the
    address after it): the flow's key puts the lower end first, whichever way a packet goes."""
    i: cython.Py_ssize_t
    for i in range(alen):
        if buf[sa + i] != buf[sa + alen + i]:
            return buf[sa + i] < buf[sa + alen + i]
    return sp <= dp


def walk(stage: object, buf: bytes, rows: cython.longlong[:], n: cython.Py_ssize_t, ts: cython.longlong[:],
         wl: cython.longlong[:]) -> None:
    """Account packets ``0..n-1`` of a decoded batch on ``stage`` (a FlowStage)."""
    i: cython.Py_ssize_t
    o: cython.Py_ssize_t
    st: cython.longlong
    t: cython.longlong
    length: cython.longlong
    l3: cython.Py_ssize_t
    l4: cython.Py_ssize_t
    proto: cython.longlong
    flags: cython.longlong
    d: cython.int
    new: cython.bint
    sa: cython.Py_ssize_t
    alen: cython.Py_ssize_t
    sp: cython.longlong
    dp: cython.longlong
    f: Flow
    last: cython.longlong
    s0: cython.longlong
    s1: cython.longlong
    t_min: cython.longlong = stage._t_min  # type: ignore[attr-defined]
    next_sweep: cython.longlong = stage._next_sweep  # type: ignore[attr-defined]
    flows: dict = stage.flows  # type: ignore[attr-defined]
    packets: cython.longlong = 0
    nbytes: cython.longlong = 0
    events = stage.events  # type: ignore[attr-defined]
    tcp_lim: tuple = stage._tcp_lim  # type: ignore[attr-defined]
    xw: Wheel = stage._xw  # type: ignore[attr-defined]
    for i in range(n):
        o = i * NF
        st = rows[o]
        t = ts[i]
        if st != ST_L4:
            if st == ST_OTHER_IP:
                stage._other(buf, rows, o, t, wl[i])  # type: ignore[attr-defined]
                next_sweep = stage._next_sweep  # type: ignore[attr-defined]
            elif st == ST_FRAGMENT:
                stage._fragment(buf, rows, o, t, wl[i])  # type: ignore[attr-defined]
                next_sweep = stage._next_sweep  # type: ignore[attr-defined]
            elif st == ST_DROPPED:
                stage.undecoded += 1  # type: ignore[attr-defined]
            continue
        length = wl[i]
        if t >= next_sweep:
            stage._sweep(t)  # type: ignore[attr-defined]
            next_sweep = stage._next_sweep  # type: ignore[attr-defined]
        l3 = rows[o + F_L3OFF]
        sp = rows[o + F_SPORT]
        dp = rows[o + F_DPORT]
        if rows[o + F_IPVER] == 4:
            sa, alen = l3 + 12, 4
        else:
            sa, alen = l3 + 8, 16
        # compiled: bytes straight from the buffer (a bytes slice made a slice object first)
        src = cython.cast(cython.p_uchar, buf)[sa:sa + alen]
        dst = cython.cast(cython.p_uchar, buf)[sa + alen:sa + 2 * alen]
        proto = rows[o + F_PROTO]
        # one key for both directions: the lower (address, port) end first
        k = (src, dst, sp, dp, proto) if _lower(buf, sa, alen, sp, dp) else (dst, src, dp, sp, proto)
        f = flows.get(k)
        d = 0
        if f is not None and not (f.sport == sp and f.src == src):
            d = 1
        new = False
        last = t
        s0 = s1 = -1  # TCP state before this segment (its wheel entry is no later than that deadline), after it
        if f is not None:
            last = f.last_ns
            if t - last > t_min and t - last > idle_limit(stage, proto, f.state):
                end_flow(stage, f, t, timeout_reason(f))
                f = None
                last = t
        if proto == 6:
            flags = rows[o + F_TCPFLAGS]
            if f is not None and (flags & SYN_ACK) == 2 and f.closed():
                if d == 0 and rows[o + F_TCPSEQ] == f.isn:  # its SYN again (as tshark: the same stream)
                    s0 = f.state
                    f.reopen()
                else:  # a new connection on the same ports
                    end_flow(stage, f, t, "rst" if f.state == S_RESET else "fin")
                    f = None
                    last = t
            if f is None:  # a new TCP flow: the receiver of a first SYN-ACK is the initiator (its SYN was
                # missed); a first segment without SYN is a flow picked up mid-stream
                if (flags & SYN_ACK) == SYN_ACK:
                    f = new_flow(stage, flows, k, rows[o + F_IPVER], 6, dst, src, dp, sp, t)
                    d = 1
                else:
                    f = new_flow(stage, flows, k, rows[o + F_IPVER], 6, src, dst, sp, dp, t)
                    d = 0
                    if not flags & T_SYN:
                        f.state = S_ESTABLISHED
                        f.midstream = True
                new = True
                s0 = S_NONE  # filed in state none, before a mid-stream flow became established
            l4 = rows[o + F_L4OFF]
            was = f.state
            if s0 < 0:
                s0 = was
            f.tcp(d, flags, rows[o + F_TCPSEQ], rows[o + F_PAYLEN], (buf[l4 + 14] << 8) | buf[l4 + 15])
            s1 = f.state
            if was == S_SYN_RECEIVED and s1 == S_ESTABLISHED and events is not None:
                stage._event(f, "established", t)  # type: ignore[attr-defined]
        elif f is None:
            f = new_flow(stage, flows, k, rows[o + F_IPVER], proto, src, dst, sp, dp, t)
            d = 0
            new = True
        if d == 0:
            f.pk_ab += 1
            f.by_ab += length
        else:
            f.pk_ba += 1
            f.by_ba += length
        f.last_ns = t
        # the flow's deadline moved earlier than its wheel entry: a shorter timeout in its new TCP state, or
        # packet time went back (rare: the stage files it again)
        if t < last or (s1 != s0 and tcp_lim[s1] < tcp_lim[s0]):
            xw.refile(f, t + idle_limit(stage, proto, f.state), flows)
        packets += 1
        nbytes += length
        if new and events is not None:
            stage._event(f, "start", t)  # type: ignore[attr-defined]
    stage.packets += packets  # type: ignore[attr-defined]
    stage.bytes += nbytes  # type: ignore[attr-defined]
