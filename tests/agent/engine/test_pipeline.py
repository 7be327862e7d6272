"""The engine built in one place (``engine.pipeline.build_engine``) and its parser registry.

Real workloads through real stages; the parser added in the registry test is a real (tiny) parser,
registered the way a new one (RTP, DNS, flow) would be.
"""
from __future__ import annotations

import json

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.engine import parsers
from otus_agent.engine.parsers import Outputs, Parser, ParserSpec
from otus_agent.engine.pipeline import EngineConfig, build_engine
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.reporters.sink import RecordSink
from otus_agent.sip.framing import LANE_COMPILED, SipConfig, SipStage


def _engine_run(path, config: EngineConfig):
    out = bytearray()
    engine = build_engine(config, out.extend)
    with open_capture(str(path)) as r:
        engine.run(r.batches())
    engine.finish()
    summary = engine.summary()
    return bytes(out), summary, engine


def _stages_run(path, sip: SipConfig) -> bytes:
    """The stages wired by hand, as otus run --pcap wired them before the engine existed."""
    out = bytearray()
    sink = RecordSink(out.extend)
    st = SipStage(sip, sink.emit, sink.raw, sink.emit_block)
    with open_capture(str(path)) as r:
        DatagramStage(sink=st.on_datagram, lane=st.run_lane if st.lane is not None else None).run(r.batches())
    st.finish()
    sink.flush()
    return bytes(out)


@pytest.mark.parametrize("calls", [False, True], ids=["plain", "calls"])
def test_engine_writes_what_the_stages_write(workload_pcap, calls):
    path, wl = workload_pcap
    sip = SipConfig(call_summaries=calls)
    got, summary, engine = _engine_run(path, EngineConfig(settings={"sip": sip}))
    assert got == _stages_run(path, SipConfig(call_summaries=calls))
    assert summary["packets"] == wl.packets and summary["sip"]["sip_messages"] == wl.sip_messages
    lines = got.splitlines()
    assert sum(1 for x in lines if json.loads(x)["type"] == "sip") == wl.sip_messages
    # the compiled lane takes typical UDP SIP whenever it can (call summaries included: it feeds the dialogs)
    assert (engine.datagrams.lane is not None) == LANE_COMPILED
    assert engine.close(0) == {}


class _Counter:
    """A minimal parser: counts datagrams per transport."""

    def __init__(self, settings) -> None:
        self.only = settings
        self.seen: dict[str, int] = {}
        self.finished = 0

    def on_datagram(self, d) -> None:
        if self.only is None or d.transport == self.only:
            self.seen[d.transport] = self.seen.get(d.transport, 0) + 1

    def finish(self) -> None:
        self.finished += 1


def test_a_registered_parser_runs_beside_sip(workload_pcap, monkeypatch):
    path, wl = workload_pcap
    made: list[_Counter] = []

    def build(settings, out: Outputs) -> Parser:
        c = _Counter(settings)
        made.append(c)
        return Parser(c.on_datagram, None, c.finish, lambda: dict(c.seen))
    monkeypatch.setitem(parsers.PARSERS, "count", ParserSpec(build, records=False))
    alone, _, _ = _engine_run(path, EngineConfig())
    got, summary, engine = _engine_run(path, EngineConfig(parsers=("sip", "count")))
    (counter,) = made
    # every datagram reaches both parsers: a lane would hide the packets it takes from the other one
    assert engine.datagrams.lane is None
    assert sum(counter.seen.values()) == summary["l4_datagrams"] == wl.l4_datagrams
    assert summary["count"] == counter.seen and counter.finished == 1
    assert got == alone                     # SIP's records do not change with a parser beside it
    made.clear()
    _, summary, _ = _engine_run(path, EngineConfig(parsers=("count",), settings={"count": "tcp"}))
    assert set(summary["count"]) == {"tcp"} and "sip" not in summary   # its settings reach it by name


def test_unknown_parser_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown parser rtcp; known: sip, rtp, flow, dns, detect, datagrams"):
        build_engine(EngineConfig(parsers=("sip", "rtcp")), lambda b: None)
    with pytest.raises(ValueError, match=r"unknown parser \(none given\)"):
        build_engine(EngineConfig(parsers=()), lambda b: None)


def test_datagram_dump_needs_no_record_sink(workload_pcap):
    path, wl = workload_pcap
    got, summary, engine = _engine_run(path, EngineConfig(parsers=("datagrams",)))
    assert engine.sink is None and "sip" not in summary and engine.close(0) == {} and engine.report() == {}
    lines = [json.loads(x) for x in got.splitlines()]
    assert len(lines) == wl.l4_datagrams
    assert {x["transport"] for x in lines} == {"udp", "tcp"}


def test_records_without_lines_go_only_to_the_reporters(workload_pcap):
    """``lines=False`` (Kafka without --console): the sink exists, nothing is written as lines."""
    path, wl = workload_pcap
    got, summary, engine = _engine_run(path, EngineConfig(lines=False))
    assert got == b"" and engine.sink is not None and summary["sip"]["sip_messages"] == wl.sip_messages
