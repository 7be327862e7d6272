"""The media lane beside SIP (engine: ``--parsers sip,rtp``): RTP of announced flows goes from the decoded
batch to its stream, with no Datagram and no SIP check, and everything comes out as on the datagram path."""
from __future__ import annotations

import pathlib

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.engine.pipeline import Engine, EngineConfig
from otus_agent.sim.callgen import WorkloadSpec
from otus_agent.sim.callgen import generate as generate_calls
from otus_agent.sim.rtpgen import RtpGenSpec, generate
from otus_agent.sip.framing import SipConfig


def _run(pcap: pathlib.Path, parsers: tuple[str, ...], sip: SipConfig | None = None) -> tuple[Engine, list[bytes]]:
    lines: list[bytes] = []
    e = Engine(EngineConfig(parsers=parsers, settings={"sip": sip} if sip else {}), lines.append)
    with open_capture(pcap) as r:
        e.run(r.batches())
    e.finish()
    return e, b"".join(lines).splitlines()


@pytest.mark.parametrize("make", [
    lambda f: generate(f, RtpGenSpec(calls=8, packets=300, seed=3, call_gap_ms=20)),
    lambda f: generate(f, RtpGenSpec(calls=4, packets=200, seed=5, ipv6=True)),
    lambda f: generate_calls(f, WorkloadSpec(calls=30, seed=9, rtp_packets=80, tcp_ratio=0.2, large_invite_ratio=0.2)),
], ids=["rtpgen", "ipv6", "callgen-tcp-fragments"])
@pytest.mark.parametrize("heuristic", [True, False])
def test_lane_records_equal_the_datagram_path(tmp_path, make, heuristic):
    pcap = tmp_path / "w.pcap"
    with open(pcap, "wb") as f:
        make(f)
    sip = SipConfig(heuristic=heuristic)
    lane, got = _run(pcap, ("sip", "rtp"), sip)
    # a third datagram parser: no lane beside SIP, every packet a Datagram to every parser (its lines set apart)
    plain, ref = _run(pcap, ("sip", "rtp", "datagrams"), sip)
    assert plain.datagrams.lane is None and lane.datagrams.lane is not None
    ref = [x for x in ref if b'"type":' in x]
    assert got == ref and any(b'"type":"media"' in x for x in got)
    stage = lane.parsers["rtp"].summary.__self__   # the MediaStage behind the parser's bound methods
    counts = lane.parsers["rtp"].summary()
    assert counts == plain.parsers["rtp"].summary()
    # most RTP took the lane: all but each stream's first packet and those at a flush (about 1/s of capture)
    assert 0.9 * counts["rtp_packets"] < stage.lane_packets < counts["rtp_packets"]
