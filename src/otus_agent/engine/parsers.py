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

Factories import their parser lazily, so a command that does not run a parser does not pay for
importing it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from otus_agent.reassembly.datagrams import Datagram
    from otus_agent.reporters.sink import RecordSink

# (buf, decoded batch, n, timestamps, start) -> index of the first packet the datagram path must see
Lane = Callable[[bytes, Any, int, Any, int], int]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Parser:
    """What a factory returns: the callables the engine drives (bound methods, no wrapper per packet)."""
    on_datagram: Callable[[Datagram], None]
    # optional fast path over a whole decoded batch; used only when this is the engine's one parser,
    # because the packets a lane takes are seen by no other parser
    lane: Lane | None = None
    finish: Callable[[], None] = _nothing            # end of input: emit what is still held
    summary: Callable[[], dict] | None = None        # counters, under the parser's name in the summary


@dataclass(frozen=True)
class Outputs:
    """Where a parser's results go: ``sink`` for records (None unless the spec says ``records``),
    ``write`` for lines written as they are (the datagram dump)."""
    sink: RecordSink | None
    write: Callable[[bytes], None]


@dataclass(frozen=True)
class ParserSpec:
    build: Callable[[Any, Outputs], Parser]
    records: bool = True   # emits records: the engine builds the record sink (JSON lines, Kafka, HEP)


def _sip(settings: Any, out: Outputs) -> Parser:
    from otus_agent.sip.framing import SipStage
    sink = out.sink
    assert sink is not None
    stage = SipStage(settings, sink.emit, sink.raw, sink.emit_block, want_pairs=sink.kafka is not None)
    return Parser(stage.on_datagram, stage.run_lane if stage.lane is not None else None, stage.finish,
                  stage.summary)


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


PARSERS: Mapping[str, ParserSpec] = {
    "sip": ParserSpec(_sip),
    "datagrams": ParserSpec(_datagrams, records=False),
}
