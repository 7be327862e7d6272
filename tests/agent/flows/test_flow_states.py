"""TCP states, retransmissions, zero windows, ICMP joins and the table's bounds on generated captures."""
from __future__ import annotations

import pathlib
import subprocess
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.capture.pcapfile import PacketBatch, open_capture
from otus_agent.flows import FlowConfig, FlowStage
from otus_agent.sim import flowgen
from otus_agent.sim import packets as P

from .tshark import need_tshark


def run(path: str, config: FlowConfig | None = None, events: list | None = None) -> tuple[list[dict], FlowStage]:
    recs: list[dict] = []
    stage = FlowStage(config, sink=recs.append, events=events.append if events is not None else None)
    with open_capture(path) as r:
        stage.run(r.batches())
    stage.flush()
    return recs, stage


def write(tmp_path: pathlib.Path, trace: flowgen.Trace, name: str = "t.pcap") -> str:
    p = str(tmp_path / name)
    trace.write(p)
    return p


def test_tcp_end_states(tmp_path: pathlib.Path) -> None:
    trace, want = flowgen.tcp_states_trace()
    recs, stage = run(write(tmp_path, trace))
    ends = [r for r in recs if r["event"] == "end" and r["proto"] == "tcp"]
    last = {(r["src_ip"], r["src_port"]): r for r in sorted(ends, key=lambda r: r["first_ts"])}
    assert {k: r["tcp_state"] for k, r in last.items()} == want
    by_port: dict[int, list[dict]] = {}
    for r in ends:
        by_port.setdefault(r["src_port"], []).append(r)
    assert len(by_port[40008]) == 2  # the port pair reused after FIN: two connections
    assert [r["end_reason"] for r in sorted(by_port[40008], key=lambda r: r["first_ts"])] == ["fin", "fin"]
    assert by_port[40004][0]["end_reason"] == "idle_timeout" and by_port[40004][0]["tcp_handshake"]
    assert by_port[40005][0]["end_reason"] == "idle_timeout" and not by_port[40005][0]["tcp_handshake"]
    assert by_port[40005][0]["src_packets"] == 2 and by_port[40005][0]["dst_packets"] == 0
    assert by_port[40002][0]["tcp_flags_dst"] == "SRPA"  # SYN-ACK, data, RST
    assert "F" in by_port[40003][0]["tcp_flags_src"] and "F" not in by_port[40003][0]["tcp_flags_dst"]
    r6 = by_port[40006][0]
    assert (r6["tcp_retransmissions"], r6["tcp_zero_windows"]) == (1, 1)
    # the repeated SYN of 40005 is a retransmission too (as tshark marks it)
    assert {r["src_port"]: r["tcp_retransmissions"] for r in ends if r["tcp_retransmissions"]} == {40005: 1, 40006: 1}
    assert by_port[40007][0]["ipver"] == 6


def test_retransmissions_agree_with_tshark(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, flowgen.tcp_states_trace()[0])
    out = subprocess.run([need_tshark(), "-n", "-r", path, "-Y", "tcp.analysis.retransmission", "-T", "fields",
                          "-e", "tcp.srcport"], capture_output=True, text=True, check=True, timeout=60).stdout.split()
    zw = subprocess.run([need_tshark(), "-n", "-r", path, "-Y", "tcp.analysis.zero_window", "-T", "fields",
                         "-e", "tcp.dstport"], capture_output=True, text=True, check=True, timeout=60).stdout.split()
    recs, _ = run(path)
    ours = sorted(str(r["src_port"]) for r in recs if r.get("tcp_retransmissions") for _ in range(r["tcp_retransmissions"]))
    assert ours == sorted(out)
    assert sorted(str(r["src_port"]) for r in recs if r.get("tcp_zero_windows")) == sorted(zw)


def test_half_closed_while_active(tmp_path: pathlib.Path) -> None:
    trace, _ = flowgen.tcp_states_trace()
    trace.frames = [f for f in trace.frames if f[0] < 100 * flowgen.SEC]  # before anything times out
    stage = FlowStage()
    with open_capture(write(tmp_path, trace)) as r:
        stage.run(r.batches())
    states = {c["src_port"]: c["tcp_state"] for c in stage.connections(proto="tcp")}
    assert states[40003] == "half_closed" and states[40004] == "established" and states[40005] == "syn_sent"


def test_midstream_and_syn_ack_first_orientation(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    # picked up mid-stream: data without a SYN
    tr.add(1000, flowgen.tcp_frame("10.0.0.1", 5000, "10.0.0.2", 80, 10, 20, P.TCP_ACK | P.TCP_PSH, b"x" * 10))
    # the SYN missed: the SYN-ACK's receiver is the initiator
    tr.add(2000, flowgen.tcp_frame("10.0.0.9", 443, "10.0.0.8", 6000, 1, 2, P.TCP_SYN | P.TCP_ACK))
    tr.add(3000, flowgen.tcp_frame("10.0.0.8", 6000, "10.0.0.9", 443, 2, 2, P.TCP_ACK))
    recs, _ = run(write(tmp_path, tr))
    by = {r["src_port"]: r for r in recs}
    assert by[5000]["tcp_midstream"] and by[5000]["tcp_state"] == "established"
    assert by[6000]["dst_port"] == 443 and by[6000]["tcp_state"] == "established" and by[6000]["tcp_handshake"]


def test_icmp_errors_join_the_flow_they_quote(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    q = flowgen.udp_frame("10.0.0.1", 3333, "10.0.0.2", 53, b"query")
    tr.add(1000, q)
    tr.add(2000, flowgen.unreachable_frame("10.0.0.2", q))  # port unreachable from the server
    tr.add(3000, flowgen.unreachable_frame("10.0.0.254", q, code=1))  # host unreachable from a router
    tr.add(4000, flowgen.unreachable_frame("10.0.0.254", q, cut=5))  # quote too short for the ports
    q6 = flowgen.tcp_frame("fd00::1", 4444, "fd00::2", 80, 1, 0, P.TCP_SYN)
    tr.add(5000, q6)
    tr.add(6000, flowgen.unreachable_frame("fd00::2", q6))
    tr.add(7000, flowgen.unreachable_frame("10.0.0.254", flowgen.udp_frame("10.7.7.7", 1, "10.8.8.8", 2, b"?")))
    for s in range(3):
        tr.add(8000 + s, flowgen.echo_frame("10.0.0.1", "10.0.0.2", 77, s))
        tr.add(9000 + s, flowgen.echo_frame("10.0.0.2", "10.0.0.1", 77, s, reply=True))
    recs, stage = run(write(tmp_path, tr))
    udp = next(r for r in recs if r["proto"] == "udp" and r["src_port"] == 3333)
    assert udp["icmp_errors"] == {"3/1": 1, "3/3": 1}
    tcp6 = next(r for r in recs if r["proto"] == "tcp")
    assert tcp6["icmp_errors"] == {"1/4": 1}
    echo = next(r for r in recs if r["proto"] == "icmp" and r["src_port"] == 77)
    assert (echo["src_packets"], echo["dst_packets"], echo["icmp_types"]) == (3, 3, {"0/0": 3, "8/0": 3})
    s = stage.summary()["icmp"]
    assert (s["errors_joined"], s["errors_unmatched"], s["truncated"]) == (3, 1, 1)


def test_table_limit_evicts_oldest_and_counts(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    for i in range(50):
        tr.add(i * 1000, flowgen.udp_frame("10.0.0.1", 10000 + i, "10.0.0.2", 53, b"q"))
    events: list[dict] = []
    recs, stage = run(write(tmp_path, tr), FlowConfig(max_flows=10), events)
    evicted = [r for r in recs if r.get("end_reason") == "evicted"]
    assert stage.evictions == len(evicted) == 40
    assert [r["src_port"] for r in evicted] == list(range(10000, 10040))  # oldest first
    assert stage.summary()["active"] == 0 and len([e for e in events if e["event"] == "start"]) == 50


def test_interval_records_and_udp_timeout(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    sec = flowgen.SEC
    for i in range(10):  # one packet every 20 s: stays alive (60 s timeout), reported every 60 s
        tr.add(i * 20 * sec, flowgen.udp_frame("10.0.0.1", 7000, "10.0.0.2", 7001, b"k"))
    tr.add(400 * sec, flowgen.udp_frame("10.0.0.3", 1, "10.0.0.4", 2, b"z"))  # time passes: 7000 times out
    recs, _ = run(write(tmp_path, tr))
    mine = [r for r in recs if r["src_port"] == 7000]
    assert [r["event"] for r in mine] == ["interval", "interval", "interval", "end"]
    assert mine[-1]["end_reason"] == "idle_timeout" and mine[-1]["src_packets"] == 10
    assert [r["src_packets"] for r in mine[:3]] == sorted(r["src_packets"] for r in mine[:3])  # cumulative


def test_connections_view_filters(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, flowgen.mixed_trace(seed=3, tcp_conns=10, udp_flows=10))
    stage = FlowStage()
    with open_capture(path) as r:
        stage.run(r.batches())
    every = stage.connections()
    assert len(every) == stage.summary()["active"]
    tcp = stage.connections(proto="tcp")
    assert tcp and all(c["proto"] == "tcp" for c in tcp)
    assert all(5060 in (c["src_port"], c["dst_port"]) for c in stage.connections(port=5060))
    assert len(stage.connections(limit=3)) == 3


@pytest.mark.parametrize("cut", range(0, 48))
def test_truncated_icmp_never_crashes(tmp_path: pathlib.Path, cut: int) -> None:
    tr = flowgen.Trace()
    q = flowgen.tcp_frame("fd00::1", 4444, "fd00::2", 80, 1, 0, P.TCP_SYN)
    tr.add(1, q)
    tr.add(2, flowgen.unreachable_frame("fd00::2", q, cut=cut))
    _, stage = run(write(tmp_path, tr))
    s = stage.summary()["icmp"]
    assert s["errors_joined"] + s["truncated"] == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.sampled_from([1, 58]))
def test_random_icmp_payload_is_counted_not_raised(body: bytes, proto: int) -> None:
    v6 = proto == 58
    src, dst = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
    data = flowgen.frame(src, dst, proto, body)
    batch = PacketBatch(data, 1, array("q", [0]), array("q", [len(data)]), array("q", [len(data)]), array("q", [5]),
                        array("q", [1]))
    stage = FlowStage()
    stage.feed_batch(batch)
    assert stage.packets + stage.undecoded == 1  # an empty IPv6 payload is a jumbogram to the decoder


def test_metric_families(tmp_path: pathlib.Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from otus_agent.flows.metrics import flow_metrics
    _, stage = run(write(tmp_path, flowgen.mixed_trace(seed=2, tcp_conns=5, udp_flows=20)))

    class C:
        def collect(self):
            return flow_metrics("t1", stage)
    reg = CollectorRegistry()
    reg.register(C())
    text = generate_latest(reg).decode()
    assert f'otus_flows_created_total{{task="t1"}} {float(stage.created)}' in text
    assert f'otus_flows_ended_total{{reason="shutdown",task="t1"}} {float(stage.created)}' in text
    assert 'otus_icmp_errors_total{outcome="joined",task="t1"}' in text
    wheels = stage.summary()["wheels"]
    for name in ("expiry", "report"):
        assert f'otus_flows_wheel_limit{{task="t1",wheel="{name}"}} {float(2 * stage.config.max_flows)}' in text
        assert f'otus_flows_wheel_entries{{task="t1",wheel="{name}"}} {float(wheels[name]["entries"])}' in text


def test_direction_with_equal_ports_and_a_host_to_itself(tmp_path: pathlib.Path) -> None:
    """The table finds a flow by one key for both directions (the lower end first): the direction still
    comes from the flow's initiator, also when both ends use the same port or are the same host."""
    tr = flowgen.Trace()
    tr.add(1000, flowgen.udp_frame("10.0.0.9", 5060, "10.0.0.1", 5060, b"a"))   # initiator is the higher end
    tr.add(2000, flowgen.udp_frame("10.0.0.1", 5060, "10.0.0.9", 5060, b"bb"))
    tr.add(3000, flowgen.udp_frame("10.0.0.9", 5060, "10.0.0.1", 5060, b"c"))
    tr.add(4000, flowgen.udp_frame("10.0.0.5", 7000, "10.0.0.5", 7000, b"self"))
    tr.add(5000, flowgen.udp_frame("10.0.0.5", 7000, "10.0.0.5", 7000, b"self"))
    tr.add(6000, flowgen.tcp_frame("fd00::9", 443, "fd00::1", 6000, 1, 2, P.TCP_SYN | P.TCP_ACK))   # SYN missed
    tr.add(7000, flowgen.tcp_frame("fd00::1", 6000, "fd00::9", 443, 2, 2, P.TCP_ACK))
    recs, stage = run(write(tmp_path, tr))
    by = {(r["src_ip"], r["src_port"]): r for r in recs}
    assert len(recs) == 3 and stage.created == 3
    sip = by[("10.0.0.9", 5060)]
    assert (sip["src_packets"], sip["dst_packets"], sip["dst_ip"]) == (2, 1, "10.0.0.1")
    assert (by[("10.0.0.5", 7000)]["src_packets"], by[("10.0.0.5", 7000)]["dst_packets"]) == (2, 0)
    tcp = by[("fd00::1", 6000)]
    assert (tcp["src_packets"], tcp["dst_packets"], tcp["tcp_state"], tcp["tcp_handshake"]) == (1, 1, "established", True)
