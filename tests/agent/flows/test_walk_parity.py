"""The compiled flow walk (flows/walk_cy.py) gives the same records as its pure-Python source."""
from __future__ import annotations

import pathlib

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.flows import FlowConfig, FlowStage, walk_cy
from otus_agent.flows import stage as stage_mod
from otus_agent.sim import flowgen

from ...conftest import corpus_path, load_pure

COMPILED = not walk_cy.__file__.endswith(".py")


def records(path: str, walk) -> list[dict]:
    recs: list[dict] = []
    events: list[dict] = []
    orig = stage_mod.walk
    stage_mod.walk = walk
    try:
        st = FlowStage(sink=recs.append, events=events.append)
        with open_capture(path) as r:
            st.run(r.batches())
        st.flush()
    finally:
        stage_mod.walk = orig
    return recs + events + [st.summary()]


@pytest.mark.skipif(not COMPILED, reason="the compiled build is not installed (pure build: nothing to compare)")
@pytest.mark.parametrize("source", ["mixed", "states", "corpus"])
def test_compiled_walk_equals_pure(tmp_path: pathlib.Path, source: str) -> None:
    pure = load_pure("flows/walk_cy.py", "otus_pure_flow_walk").walk
    if source == "corpus":
        path = str(corpus_path("pcap/sip/wireshark-sample-aaa.pcap"))
    else:
        path = str(tmp_path / "t.pcap")
        (flowgen.mixed_trace(seed=4) if source == "mixed" else flowgen.tcp_states_trace()[0]).write(path)
    assert records(path, walk_cy.walk) == records(path, pure)


@pytest.mark.skipif(not COMPILED, reason="the compiled build is not installed (pure build: nothing to compare)")
def test_compiled_record_equals_pure(tmp_path: pathlib.Path) -> None:
    """flow_record compiled and pure, on every flow of a mix (TCP in every state, UDP, ICMP with errors)."""
    pure = load_pure("flows/walk_cy.py", "otus_pure_flow_walk").flow_record
    path = str(tmp_path / "t.pcap")
    flowgen.mixed_trace(seed=5, tcp_conns=60, udp_flows=60).write(path)
    st = FlowStage()
    with open_capture(path) as r:
        st.run(r.batches())
    flows = list(st.flows.values())
    assert {f.proto for f in flows} >= {1, 6, 17, 58} and any(f.icmp_errors for f in flows)
    for f in flows:
        for reason in (None, "idle_timeout", "fin"):
            assert walk_cy.flow_record(f, "end", 7, reason) == pure(f, "end", 7, reason)


@pytest.mark.skipif(not COMPILED, reason="the compiled build is not installed (pure build: nothing to compare)")
def test_pure_wheels_equal_compiled(tmp_path: pathlib.Path) -> None:
    """The stage on the pure walk and Wheel (as a build without Cython runs) gives the compiled records,
    with timeouts and interval reports short enough that every flow goes through the wheels."""
    pure = load_pure("flows/walk_cy.py", "otus_pure_flow_walk")
    path = str(tmp_path / "t.pcap")
    flowgen.mixed_trace(seed=6, tcp_conns=200, udp_flows=200).write(path)
    config = FlowConfig(max_flows=5, tcp_syn_timeout_s=0.03, tcp_established_timeout_s=0.2, tcp_closed_timeout_s=0.01,
                        udp_timeout_s=0.05, icmp_timeout_s=0.5, report_interval_s=0.04, sweep_interval_s=0.005)

    def run() -> list:
        recs: list[dict] = []
        st = FlowStage(config, sink=recs.append)
        with open_capture(path) as r:
            st.run(r.batches())
        st.flush()
        return recs + [st.summary()]
    want = run()
    orig = stage_mod.walk, stage_mod.Wheel
    stage_mod.walk, stage_mod.Wheel = pure.walk, pure.Wheel
    try:
        assert run() == want
    finally:
        stage_mod.walk, stage_mod.Wheel = orig
    assert want[-1]["wheels"]["expiry"]["rebuilds"] > 0
