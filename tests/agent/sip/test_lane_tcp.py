"""Pure TCP ACKs and in-order TCP messages stay in the compiled lane, with the general path's records and counters.

The lane touches the ACK's stream (found by wire key) exactly as ``TcpReassembler.add`` does for a
segment with no payload and no SYN, FIN or RST, and writes the record of a segment holding one whole
message in order on an idle stream (``SipStage._tcp``'s common case); the rest takes the general path.
Compared byte for byte (records, every counter, the stream table's order through evictions and idle
timeouts) over the PBX workload (real connections: handshakes, delayed ACKs, FINs) and the generated one.
"""
from __future__ import annotations

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.reassembly.tcpstream import TcpReassembler, wire_key
from otus_agent.reporters.sink import RecordSink
from otus_agent.sip.framing import LANE_COMPILED, SipConfig, SipStage

pytestmark = pytest.mark.skipif(not LANE_COMPILED, reason="the lane exists only in the compiled build")


def run(path, lane: bool, **cfg):
    """Records, counters, the stream table's keys in order, and how many pure ACKs, TCP segments with
    payload and IPv6 SYNs reached Python."""
    out = bytearray()
    sink = RecordSink(out.extend)
    st = SipStage(SipConfig(**cfg), sink.emit, None, sink.emit_block if lane else None)
    acks = data = syn6 = 0

    def on_datagram(d):
        nonlocal acks, data, syn6
        acks += d.proto == 6 and not d.payload and not d.tcp_flags & 7
        data += d.proto == 6 and bool(d.payload)
        syn6 += d.proto == 6 and bool(d.tcp_flags & 2) and ":" in d.src_ip
        st.on_datagram(d)

    with open_capture(str(path)) as r:
        DatagramStage(sink=on_datagram, lane=st.run_lane if lane else None).run(r.batches())
    st.finish()
    sink.flush()
    table = list(st.tcp.streams)
    assert sorted(st.tcp.by_wire) == sorted(wire_key(k) for k in table)     # the index follows the table
    return bytes(out), st.summary(), table, acks, data, syn6


def same(path, **cfg):
    general = run(path, False, **cfg)
    lane = run(path, True, **cfg)
    assert lane[0] == general[0], "records differ"
    assert lane[1] == general[1], "counters differ"
    assert lane[2] == general[2], "stream tables differ"
    return general, lane


@pytest.fixture(scope="module")
def pbx_pcap(tmp_path_factory):
    from otus_agent.sim.callgen import WorkloadSpec, generate
    path = tmp_path_factory.mktemp("pbx") / "pbx.pcap"
    with open(path, "wb") as f:
        wl = generate(f, WorkloadSpec(profile="pbx", calls=400, seed=15, tcp_ratio=0.5))
    return path, wl


def test_pbx_acks_stay_in_the_lane(pbx_pcap):
    path, _ = pbx_pcap
    general, lane = same(path)
    assert general[3] > 500                       # the workload does carry pure ACKs ...
    assert lane[3] < general[3] // 10             # ... and the lane keeps them (the 1 s timer hands a few back)
    assert lane[1]["tcp"]["segments"] > general[3]
    assert general[4] > 1000 and lane[4] < general[4] // 10   # so do the in-order messages
    same(path, call_summaries=True)


def test_pbx_ipv6_syns_stay_in_the_lane(pbx_pcap):
    """A SYN over IPv6 opens its stream in the lane (its key's text as the decoder writes it)."""
    path, _ = pbx_pcap
    general, lane = same(path)
    assert general[5] > 20 and lane[5] <= general[5] // 10


def test_evictions_and_timeouts_alike(pbx_pcap):
    path, _ = pbx_pcap
    _, lane = same(path, tcp_max_streams=8)
    assert lane[1]["tcp"]["evictions"] > 0
    _, lane = same(path, tcp_timeout_s=0.5)
    assert lane[1]["tcp"]["timeouts"] > 0


def test_generated_workload(workload_pcap):
    path, _ = workload_pcap
    same(path)


def test_wire_key():
    assert wire_key(("10.0.0.1", 5060, "10.0.0.2", 40000)) == bytes([10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0xC4, 0x9C, 0x40])
    assert len(wire_key(("2001:db8::1", 1, "2001:db8::2", 2))) == 36
    assert wire_key(("a", 1, "b", 2)) == b""                # not an address: the stream is simply not indexed
    t = TcpReassembler()
    s = t.open(("10.0.0.1", 5060, "10.0.0.2", 40000), 1, 0)
    assert t.by_wire == {s.wire: s}
    t.close(s.key)
    assert t.by_wire == {} and t.streams == {}
