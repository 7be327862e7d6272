"""The parser registry: every application parser the engine can run, in one table (``PARSERS``).

A parser consumes the L4 datagrams of the reassembly stage (``reassembly.datagrams.Datagram``)
and reports through the engine's outputs.  Adding one (RTP, DNS, flow) is one entry here:

1. write the parser in its own package beside ``sip/`` (its layer sits with ``sip`` in the
   import-linter contract); it must not import ``engine``;
2. add a factory below, ``build(settings, outputs) -> Parser``: ``settings`` is the object the
   caller put under the parser's name in ``EngineConfig.settings`` (None: the parser's defaults),
   ``outputs`` the record sink and the raw line writer;
3. add ``"name": ParserSpec(build, records=...)`` to ``PARSERS``; a command or task enables it by
   listing the name in ``EngineConfig.parsers`` (the summary then carries its counters under the
   same name).

Parsers that read other parsers' records (``rtp`` learns streams from SIP's SDP, ``detect`` reads
SIP records and flow events) name them in ``ParserSpec.listens``: the engine then gives
``Outputs.taps[producer]`` a list, the producer hands every record to the callables in it, and the
listener's factory appends its own.  A tapped SIP parser runs without its compiled UDP lane: the
lane produces JSON bytes only, and listeners need the records.  A parser that is SIP's only
datagram neighbour may offer ``Parser.beside_sip`` instead: a lane taking only packets SIP would
ignore (``rtp``: the RTP of announced flows, no ``Datagram`` built).  Parsers over whole decoded
batches (``flow``, DNS per-domain traffic) return ``Parser.on_batch``.

A parser whose state one fanout worker learns and the others need (``rtp``: a stream's SDP may be on
another worker than its RTP) offers ``Parser.share``: live capture calls it once per worker, before the
first packet, and relays the ``Sharing`` lists between the workers (engine/live.py).

Factories import their parser lazily, so a command that does not run a parser does not pay for
importing it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from array import array

    from otus_agent.capture.pcapfile import PacketBatch
    from otus_agent.reassembly.datagrams import Datagram
    from otus_agent.reporters.sink import RecordSink

# (buf, decoded batch, n, timestamps, start, end of the batch) -> index of the first packet the datagram path must see
Lane = Callable[[bytes, Any, int, Any, int, bool], int]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Sharing:
    """What fanout workers exchange for one parser, as JSON-able lists: ``take`` returns what this worker
    learned from its own traffic since the last call, ``apply`` gives it what another worker took, ``dump``
    what a worker starting (again) needs of what this one learned so far."""
    take: Callable[[], list]
    apply: Callable[[list], None]
    dump: Callable[[], list] = list


@dataclass(frozen=True)
class Parser:
    """What a factory returns: the callables the engine drives (bound methods, no wrapper per packet)."""
    on_datagram: Callable[[Datagram], None] | None   # None: the parser reads no datagrams
    # optional fast path over a whole decoded batch; used only when this is the engine's one parser,
    # because the packets a lane takes are seen by no other parser
    lane: Lane | None = None
    finish: Callable[[], None] = _nothing            # end of input: emit what is still held
    summary: Callable[[], dict] | None = None        # counters, under the parser's name in the summary
    on_batch: Callable[[PacketBatch, array], None] | None = None   # every decoded batch (buffer, rows)
    # live capture, about once a second (wall clock, ns): time-driven output while traffic is quiet
    tick: Callable[[int], None] | None = None
    # a lane beside SIP's datagram path (the engine's only other datagram parser): given SIP's ports and
    # heuristic, it takes only packets SIP would ignore (media: RTP of announced flows)
    beside_sip: Callable[[frozenset[int], bool], Lane] | None = None
    # fanout workers: switch the parser to sharing its state with the other workers (called once, before
    # the first packet; never for one process or a pcap)
    share: Callable[[], Sharing] | None = None


@dataclass(frozen=True)
class Outputs:
    """Where a parser's results go: ``sink`` for records (None unless the spec says ``records``),
    ``write`` for lines written as they are (the datagram dump), ``taps`` the record listeners of
    each producer some enabled parser listens to (filled by the listeners' factories)."""
    sink: RecordSink | None
    write: Callable[[bytes], None]
    taps: dict[str, list[Callable[[dict], Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class ParserSpec:
    build: Callable[[Any, Outputs], Parser]
    records: bool = True   # emits records: the engine builds the record sink (JSON lines, Kafka, HEP)
    listens: tuple[str, ...] = ()   # producers whose records it reads; at least one must be enabled
    # what the default kernel filter must also pass for it, from its settings: a pcap clause,
    # "" (nothing beyond the SIP filter) or None (every packet: no kernel filter)
    capture: Callable[[Any], str | None] = lambda settings: ""


# ``Outputs.taps[CALL_HOLDS]``: callables a call summary record is offered to before the sink gets it;
# one that returns True keeps it and hands it to the sink itself later (media: with the call's streams)
CALL_HOLDS = "sip.call"


def _emit_to(sink: RecordSink, taps: list[Callable[[dict], None]] | None,
             holds: list[Callable[[dict], bool]] | None = None) -> Callable[[dict], None]:
    """The sink's ``emit``, followed by the listeners when there are any (the record is serialised first).
    A call record a holder keeps goes to the listeners now and to the sink when the holder lets it go."""
    emit = sink.emit
    if taps is None:
        return emit

    def emit_tapped(rec: dict) -> None:
        if not (holds and rec.get("type") == "call" and any(h(rec) for h in holds)):
            emit(rec)
        for tap in taps:
            tap(rec)
    return emit_tapped


def _sip(settings: Any, out: Outputs) -> Parser:
    from otus_agent.sip.framing import SipStage
    sink = out.sink
    assert sink is not None
    taps = out.taps.get("sip")
    if taps is None:
        stage = SipStage(settings, sink.emit, sink.raw, sink.emit_block, want_pairs=sink.kafka is not None)
    else:   # no emit_block: no compiled lane, every record is a dict the listeners see
        holds = out.taps.setdefault(CALL_HOLDS, [])
        stage = SipStage(settings, _emit_to(sink, taps, holds), sink.raw)
    return Parser(stage.on_datagram, stage.run_lane if stage.lane is not None else None, stage.finish,
                  stage.summary)


MEDIA_FLUSH_NS = 1_000_000_000   # MediaStage.flush about once a second of capture time


def _rtp(settings: Any, out: Outputs) -> Parser:
    """RTP/RTCP quality (media/): streams announced in SIP's SDP, records on end and every interim."""
    from otus_agent.media.stage import MediaStage
    sink = out.sink
    assert sink is not None
    stage = MediaStage(settings)
    out.taps["sip"].append(stage.on_sip_record)
    out.taps.setdefault(CALL_HOLDS, []).append(stage.hold_call)
    emit, feed, flush = sink.emit, stage.feed_packet, stage.flush

    def on_datagram(d: Datagram) -> None:   # stage.lane_until_ns: the next flush (the lane stops there too)
        if d.proto == 17:
            t = d.ts_ns
            feed(t, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload)
            if t >= stage.lane_until_ns:
                stage.lane_until_ns = t + MEDIA_FLUSH_NS
                for r in flush(t):
                    emit(r)

    def tick(now_ns: int) -> None:
        stage.lane_until_ns = now_ns + MEDIA_FLUSH_NS
        for r in flush(now_ns):
            emit(r)

    def beside_sip(ports: frozenset[int], heuristic: bool) -> Lane:
        stage.sip_ports, stage.sip_heuristic = ports, heuristic
        return stage.run_lane

    def finish() -> None:
        if stage.discovery.waiting is not None:
            stage.discovery.waiting.drop_all()
        for r in stage.finish():
            emit(r)

    def share() -> Sharing:
        """Announcements, call ends and RTCP between fanout workers (MediaStage.share_take/share_apply)."""
        stage.share()
        return Sharing(stage.share_take, stage.share_apply, stage.discovery.dump)
    return Parser(on_datagram, finish=finish, summary=stage.counters, tick=tick, beside_sip=beside_sip,
                  share=share)


def _flow(settings: Any, out: Outputs) -> Parser:
    """The flow table (flows/) over every decoded packet; start/established/ICMP events go to listeners."""
    from otus_agent.flows.stage import FlowStage
    sink = out.sink
    assert sink is not None
    taps = out.taps.get("flow")
    events = None
    if taps is not None:
        def events(ev: dict) -> None:
            for tap in taps:
                tap(ev)
    stage = FlowStage(settings, sink.emit, events)
    return Parser(None, finish=stage.flush, summary=stage.summary, on_batch=stage.feed_batch, tick=stage.tick)


DOMAIN_TRAFFIC = ("sent", "received", "connections", "accessed")   # DomainTraffic.top()'s tuple


def _dns(settings: Any, out: Outputs) -> Parser:
    """DNS messages (dns/) from datagrams, and per-domain traffic from every decoded batch."""
    from otus_agent.dns.stage import DnsStage
    sink = out.sink
    assert sink is not None
    stage = DnsStage(settings, sink.emit)

    def summary() -> dict:   # with the top domains (bounded: top_domains + other) for the metrics; dicts of
        top = stage.traffic.top()   # numbers, so that fanout workers' summaries add up (live.merge_counts)
        return {**stage.summary(), "top": {d: dict(zip(DOMAIN_TRAFFIC, v)) for d, v in top.items()}}
    return Parser(stage.feed, summary=summary, on_batch=stage.feed_batch)


def _detect(settings: Any, out: Outputs) -> Parser:
    """Alerts (detect/): SIP attacks from SIP records, network attacks from flow events."""
    from otus_agent.detect import NetworkDetector, SipDetector
    sink = out.sink
    assert sink is not None
    parts: dict[str, Any] = {}
    if "sip" in out.taps:
        parts["sip"] = SipDetector(settings, sink.emit)
        out.taps["sip"].append(parts["sip"].observe)
    if "flow" in out.taps:
        parts["network"] = NetworkDetector(settings, sink.emit)
        out.taps["flow"].append(parts["network"].observe)
    return Parser(None, summary=lambda: {k: d.counters() for k, d in parts.items()})


def dump_line(d: Datagram) -> bytes:
    """One JSON line describing a datagram (``otus run --datagrams``)."""
    return json.dumps({
        "ts": d.ts_ns, "src_ip": d.src_ip, "src_port": d.src_port, "dst_ip": d.dst_ip,
        "dst_port": d.dst_port, "transport": d.transport, "len": len(d.payload),
        "reassembled": d.reassembled, "vlan": d.vlan if d.vlan >= 0 else None,
    }, separators=(",", ":")).encode() + b"\n"


def _datagrams(settings: Any, out: Outputs) -> Parser:
    write = out.write
    return Parser(lambda d: write(dump_line(d)))


def _media_clause(settings: Any) -> str:
    """media's MEDIA_BPF (RTP version 2 on unprivileged UDP ports); libpcap's ``udp[8]`` matches IPv4
    only, so IPv6 adds the same test at the fixed offset (40-byte header + UDP: no extension headers)."""
    from otus_agent.media.discovery import MEDIA_BPF
    return f"({MEDIA_BPF}) or (ip6 and udp and ip6[48] & 0xc0 = 0x80 and udp portrange 1024-65535)"


def _dns_clause(settings: Any) -> str:
    if settings is None:
        from otus_agent.dns.config import DnsConfig
        settings = DnsConfig()
    ports = sorted(settings.ports)
    return "(udp or tcp) and (" + " or ".join(f"port {p}" for p in ports) + ")"


PARSERS: Mapping[str, ParserSpec] = {
    "sip": ParserSpec(_sip),
    "rtp": ParserSpec(_rtp, listens=("sip",), capture=_media_clause),
    "flow": ParserSpec(_flow, capture=lambda settings: None),
    "dns": ParserSpec(_dns, capture=_dns_clause),
    "detect": ParserSpec(_detect, listens=("sip", "flow")),
    "datagrams": ParserSpec(_datagrams, records=False),
}


def capture_clauses(parsers: tuple[str, ...], settings: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The clauses the default kernel filter adds for ``parsers`` (capture.bpf.default_filter);
    None when one of them reads every packet."""
    out: list[str] = []
    for name in parsers:
        clause = PARSERS[name].capture(settings.get(name))
        if clause is None:
            return None
        if clause and clause not in out:
            out.append(clause)
    return tuple(out)
