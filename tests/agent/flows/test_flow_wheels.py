"""The sweep's timing wheels (``Wheel`` in flows/walk_cy.py): the same records as a sweep over the whole table.

The reference is ``FullSweep``: the stage with the sweep it had before the wheels (every flow checked
at every sweep, ends then interval reports, each in table order). Everything else -- the walk, the
per-packet timeout, eviction -- is the real stage's, so any difference is the wheels'.
"""
from __future__ import annotations

import pathlib
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from otus_agent.capture.pcapfile import PacketBatch, open_capture
from otus_agent.flows import FlowConfig, FlowStage
from otus_agent.flows.walk_cy import flow_record
from otus_agent.sim import flowgen
from otus_agent.sim import packets as P

SEC = flowgen.SEC


class FullSweep(FlowStage):
    """The sweep before the wheels: a walk over the whole table at every sweep."""

    def _sweep(self, t: int) -> None:
        self._next_sweep = t + self._sweep_ns
        report = self._report_ns
        for f in [f for f in self.flows.values() if t - f.last_ns > self._limit(f)]:
            self._end(f, t, self._timeout_reason(f))
        if report and self.sink is not None:
            for f in self.flows.values():
                if t - f.reported_ns >= report:
                    f.reported_ns = t
                    self.sink(flow_record(f, "interval", t))


def batch(frames: list[tuple[int, bytes]]) -> PacketBatch:
    """Frames in the order given (packet time may go back), as one Ethernet batch."""
    offs, o = [], 0
    for _, data in frames:
        offs.append(o)
        o += len(data)
    lens = array("q", [len(d) for _, d in frames])
    return PacketBatch(b"".join(d for _, d in frames), len(frames), array("q", offs), lens, array("q", lens),
                       array("q", [t for t, _ in frames]), array("q", [1] * len(frames)))


def play(cls: type[FlowStage], steps: list, config: FlowConfig | None = None) -> tuple[list, list, dict]:
    """Feed ``steps`` (a batch of frames, or an int: tick at that time) to a ``cls`` stage, then flush."""
    recs: list[dict] = []
    events: list[dict] = []
    stage = cls(config, sink=recs.append, events=events.append)
    for s in steps:
        if isinstance(s, int):
            stage.tick(s)
        elif s:
            stage.feed_batch(batch(s))
        assert stage._xw.size <= stage._xw.limit and stage._rw.size <= stage._rw.limit
    stage.flush()
    summary = stage.summary()
    del summary["wheels"]
    return recs, events, summary


def same(steps: list, config: FlowConfig | None = None) -> list[dict]:
    ours = play(FlowStage, steps, config)
    assert ours == play(FullSweep, steps, config)
    return ours[0]


def pcap_steps(path: pathlib.Path, trace: flowgen.Trace) -> list:
    trace.write(str(path))
    with open_capture(str(path)) as r:
        return [[(b.ts_ns[i], bytes(b.buf[b.offs[i]:b.offs[i] + b.caplens[i]])) for i in range(b.n)]
                for b in r.batches()]


FAST = FlowConfig(tcp_syn_timeout_s=0.03, tcp_established_timeout_s=0.2, tcp_closed_timeout_s=0.01,
                  udp_timeout_s=0.05, icmp_timeout_s=0.5, report_interval_s=0.04, sweep_interval_s=0.005)


def test_generated_mixes_equal_the_full_sweep(tmp_path: pathlib.Path) -> None:
    steps = pcap_steps(tmp_path / "m.pcap", flowgen.mixed_trace(seed=7, tcp_conns=400, udp_flows=400))
    for config in (None, FAST, FAST.model_copy(update={"max_flows": 20}),
                   FAST.model_copy(update={"sweep_interval_s": 0.3, "report_interval_s": 0.0})):
        recs = same(steps, config)
        reasons = {r.get("end_reason") for r in recs}
        assert config is None or {"fin", "rst", "idle_timeout"} <= reasons
    states = pcap_steps(tmp_path / "s.pcap", flowgen.tcp_states_trace()[0])
    same(states)
    same(states, FAST)


HOSTS = ("10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2")
FLAGS = (P.TCP_SYN, P.TCP_SYN | P.TCP_ACK, P.TCP_ACK, P.TCP_ACK | P.TCP_PSH, P.TCP_FIN | P.TCP_ACK, P.TCP_RST)


@st.composite
def packet(draw: st.DrawFn) -> tuple[int, bytes]:
    """A packet at a random time step (mostly forward, sometimes back) among few hosts and ports, so flows
    collide, reopen, change TCP state both ways and time out in every class."""
    dt = draw(st.sampled_from([0, 1, 3, 7, 20, 60, 200, -5, -40])) * 1_000_000
    v6 = draw(st.booleans())
    a, b = (HOSTS[2], HOSTS[3]) if v6 else (HOSTS[0], HOSTS[1])
    if draw(st.booleans()):
        a, b = b, a
    pa, pb = draw(st.sampled_from([1000, 1001])), draw(st.sampled_from([80, 81]))
    kind = draw(st.sampled_from(["tcp", "tcp", "udp", "icmp"]))
    if kind == "tcp":
        data = flowgen.tcp_frame(a, pa, b, pb, draw(st.sampled_from([1, 2, 100])), 1, draw(st.sampled_from(FLAGS)),
                                 b"d" * draw(st.sampled_from([0, 10])))
    elif kind == "udp":
        data = flowgen.udp_frame(a, pa, b, pb, b"u")
    else:
        data = flowgen.echo_frame(a, b, pa, 0, reply=draw(st.booleans()))
    return dt, data


def timed(steps: list) -> list:
    """Relative times made absolute (kept above 1 s); an int step is a tick that far ahead."""
    t, out = SEC, []
    for s in steps:
        if isinstance(s, int):
            out.append(t + s * 1_000_000)
            continue
        frames = []
        for dt, data in s:
            t = max(SEC, t + dt)
            frames.append((t, data))
        out.append(frames)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.lists(packet(), max_size=12), st.sampled_from([0, 15, 90, 400])), max_size=25),
       st.sampled_from([1, 2, 3, 64]), st.sampled_from([0.001, 0.004, 0.05]), st.sampled_from([0.0, 0.02, 0.1]),
       st.booleans())
def test_random_traffic_equals_the_full_sweep(steps: list, max_flows: int, sweep: float, report: float,
                                              long_syn: bool) -> None:
    # long_syn: a SYN timeout above the established one, so becoming established shortens a flow's deadline
    config = FlowConfig(max_flows=max_flows, tcp_syn_timeout_s=0.3 if long_syn else 0.03,
                        tcp_established_timeout_s=0.1, tcp_closed_timeout_s=0.01, udp_timeout_s=0.05,
                        icmp_timeout_s=0.02, report_interval_s=report, sweep_interval_s=sweep)
    same(timed(steps), config)


def udp(t: int, port: int = 5000, back: bool = False) -> tuple[int, bytes]:
    a, b = ("10.0.0.2", "10.0.0.1") if back else ("10.0.0.1", "10.0.0.2")
    return t, flowgen.udp_frame(a, 53 if back else port, b, port if back else 53, b"x")


def tcp(t: int, flags: int, back: bool = False, port: int = 5000) -> tuple[int, bytes]:
    if back:
        return t, flowgen.tcp_frame("10.0.0.2", 80, "10.0.0.1", port, 1, 1, flags)
    return t, flowgen.tcp_frame("10.0.0.1", port, "10.0.0.2", 80, 1, 1, flags)


def ends(steps: list, config: FlowConfig | None = None) -> list[tuple[int, str, int]]:
    """(ts, end_reason, packets) of the end records before the flush, checked against the full sweep."""
    return [(r["ts"], r["end_reason"], r["src_packets"] + r["dst_packets"]) for r in same(steps, config)
            if r["event"] == "end" and r["end_reason"] != "shutdown"]


def test_a_flow_touched_after_it_was_filed_is_not_ended_early() -> None:
    # filed at 0 s for 60 s; touched at 50 s: the sweep at 61 s files it again, it ends only after 110 s
    base = [[udp(0), udp(50 * SEC)], 61 * SEC, 110 * SEC]
    assert ends(base) == []
    assert ends(base + [110 * SEC + 1]) == [(110 * SEC + 1, "idle_timeout", 2)]


def test_each_timeout_class_ends_at_its_time() -> None:
    est = [tcp(0, P.TCP_SYN), tcp(1, P.TCP_SYN | P.TCP_ACK, back=True), tcp(2, P.TCP_ACK)]
    cases = {   # the packets, their last time, the class's timeout, the end reason
        "tcp syn": ([tcp(0, P.TCP_SYN)], 0, 30, "idle_timeout"),
        "tcp established": (est + [tcp(40 * SEC, P.TCP_ACK)], 40 * SEC, 300, "idle_timeout"),
        # established (filed for 300 s), then closed at 100 s: its 10 s linger wins over the entry filed earlier
        "tcp closed": (est + [tcp(40 * SEC, P.TCP_ACK), tcp(100 * SEC, P.TCP_FIN | P.TCP_ACK),
                              tcp(100 * SEC + 1, P.TCP_FIN | P.TCP_ACK, back=True)], 100 * SEC + 1, 10, "fin"),
        "tcp reset": (est + [tcp(40 * SEC, P.TCP_RST)], 40 * SEC, 10, "rst"),
        "udp": ([udp(0), udp(SEC, back=True)], SEC, 60, "idle_timeout"),
        "icmp": ([(0, flowgen.echo_frame("10.0.0.1", "10.0.0.2", 7, 0))], 0, 30, "idle_timeout"),
    }
    # sweeps at every second up to the deadline, so a wrong earlier entry would show
    for name, (frames, last, timeout, reason) in cases.items():
        deadline = last + timeout * SEC
        ticks: list = [last + s * SEC for s in range(1, timeout)]
        assert ends([frames] + ticks + [deadline]) == [], name
        assert ends([frames] + ticks + [deadline, deadline + 1]) == [(deadline + 1, reason, len(frames))], name


def test_packet_time_going_back_moves_the_deadline_back() -> None:
    # last seen at 50 s, then a packet stamped 20 s: the flow is due after 80 s, not 110 s
    steps = [[udp(0), udp(50 * SEC)], [udp(20 * SEC)], 61 * SEC, 80 * SEC]
    assert ends(steps) == []
    assert ends(steps + [80 * SEC + 1]) == [(80 * SEC + 1, "idle_timeout", 3)]


def test_an_evicted_flows_entry_never_ends_a_new_flow_with_its_key() -> None:
    config = FlowConfig(max_flows=1)
    # A (port 5000) at 0 s, evicted by B at 1 s, which the new A' (port 5000 again) evicts at 2 s; A' is
    # touched at 40 s. The sweep at 61 s takes A's old entry (due at 60 s): it must not end A'.
    steps = [[udp(0), udp(SEC, port=5001), udp(2 * SEC), udp(40 * SEC)], 61 * SEC]
    assert ends(steps, config) == [(SEC, "evicted", 1), (2 * SEC, "evicted", 1)]
    assert ends(steps + [100 * SEC + 1], config)[-1] == (100 * SEC + 1, "idle_timeout", 2)


def test_wheels_stay_bounded_by_the_table() -> None:
    """Churn through a small table: stale entries of evicted flows are rebuilt away, never past 2 x the limit."""
    stage = FlowStage(FlowConfig(max_flows=8), sink=lambda r: None)
    for i in range(200):
        stage.feed_batch(batch([udp(i * 1000, port=10000 + i)]))
        w = stage.summary()["wheels"]
        assert w["expiry"]["entries"] <= 16 and w["report"]["entries"] <= 16
    w = stage.summary()["wheels"]
    assert w["expiry"]["limit"] == 16 and w["expiry"]["rebuilds"] > 0 and w["report"]["rebuilds"] > 0
    assert stage.evictions == 192 and len(stage.flows) == 8
