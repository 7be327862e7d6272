"""The compiled flow table (flows/walk_cy.py: the flow, its record, the wheels, the walk) gives the same
records as its pure-Python source, which a build without Cython runs."""
from __future__ import annotations

import contextlib
import functools
import pathlib
import socket
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otus_agent.capture.pcapfile import open_capture
from otus_agent.flows import FlowConfig, FlowStage, walk_cy
from otus_agent.flows import stage as stage_mod
from otus_agent.sim import flowgen

from ...conftest import corpus_path, load_pure

COMPILED = not walk_cy.__file__.endswith(".py")
# what the stage takes from walk_cy (every name it imports from there)
NAMES = tuple(n for n, v in vars(stage_mod).items() if getattr(v, "__module__", None) == walk_cy.__name__)
FAST = FlowConfig(tcp_syn_timeout_s=0.03, tcp_established_timeout_s=0.2, tcp_closed_timeout_s=0.01,
                  udp_timeout_s=0.05, icmp_timeout_s=0.5, report_interval_s=0.04, sweep_interval_s=0.005)


@contextlib.contextmanager
def using(module) -> Iterator[None]:
    """The stage on ``module``'s flow table (the pure source, or the compiled module itself)."""
    orig = {n: getattr(stage_mod, n) for n in NAMES}
    for n in NAMES:
        setattr(stage_mod, n, getattr(module, n))
    try:
        yield
    finally:
        for n, v in orig.items():
            setattr(stage_mod, n, v)


def records(path: str, module, config: FlowConfig | None = None) -> list[dict]:
    recs: list[dict] = []
    events: list[dict] = []
    with using(module):
        st = FlowStage(config, sink=recs.append, events=events.append)
        with open_capture(path) as r:
            st.run(r.batches())
        st.flush()
    return recs + events + [st.summary()]


@functools.cache
def pure_module():
    return load_pure("flows/walk_cy.py", "otus_pure_flow_walk")


@pytest.mark.skipif(not COMPILED, reason="the compiled build is not installed (pure build: nothing to compare)")
@pytest.mark.parametrize("source", ["mixed", "states", "corpus"])
def test_compiled_walk_equals_pure(tmp_path: pathlib.Path, source: str) -> None:
    if source == "corpus":
        path = str(corpus_path("pcap/sip/wireshark-sample-aaa.pcap"))
    else:
        path = str(tmp_path / "t.pcap")
        (flowgen.mixed_trace(seed=4) if source == "mixed" else flowgen.tcp_states_trace()[0]).write(path)
    assert {"walk", "Flow", "Wheel", "new_flow", "end_flow", "sweep"} <= set(NAMES)
    assert records(path, walk_cy) == records(path, pure_module())


@pytest.mark.skipif(not COMPILED, reason="the compiled build is not installed (pure build: nothing to compare)")
def test_compiled_record_equals_pure(tmp_path: pathlib.Path) -> None:
    """flow_record compiled and pure, on every flow of a mix (TCP in every state, UDP, ICMP with errors)."""
    pure = pure_module().flow_record
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
    """Timeouts and interval reports short enough, and a table small enough, that every flow goes through
    the wheels, which are rebuilt: the pure table gives the compiled records."""
    path = str(tmp_path / "t.pcap")
    flowgen.mixed_trace(seed=6, tcp_conns=200, udp_flows=200).write(path)
    config = FAST.model_copy(update={"max_flows": 5})
    want = records(path, walk_cy, config)
    assert records(path, pure_module(), config) == want
    assert want[-1]["wheels"]["expiry"]["rebuilds"] > 0 and want[-1]["evictions"] > 0


@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16))
def test_address_is_inet_ntop(raw: bytes) -> None:
    """The records' address text (IPv4 from an octet table) is inet_ntop's, compiled and pure."""
    want = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
    assert walk_cy.address(raw) == want == pure_module().address(raw)
