"""The ``type: "flow"`` record's key order is part of its JSON lines (the sink writes ``dumps(rec)`` as is):
it must not change, whichever way the record is built (walk_cy copies a presized template per record
shape), compiled or pure. The expected order is written out here, not taken from the module."""
from __future__ import annotations

import json
import pathlib

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.flows import FlowConfig, FlowStage, walk_cy
from otus_agent.sim import flowgen

from .test_walk_parity import COMPILED, pure_module, using

# interval records of every flow, also the short TCP ones; closed TCP flows linger (active at the end)
ORDER = FlowConfig(report_interval_s=0.001, sweep_interval_s=0.0005, tcp_closed_timeout_s=1000, udp_timeout_s=0.05,
                   icmp_timeout_s=0.5)

COMMON = ["v", "type", "event", "ts", "proto", "ipver", "src_ip", "src_port", "dst_ip", "dst_port", "first_ts",
          "last_ts", "src_packets", "src_bytes", "dst_packets", "dst_bytes"]
TCP = ["tcp_state", "tcp_handshake", "tcp_midstream", "tcp_flags_src", "tcp_flags_dst", "tcp_retransmissions",
       "tcp_zero_windows"]


def expected_keys(rec: dict) -> list[str]:
    """The documented order: common fields, end_reason (end), TCP fields (TCP), then the ICMP counts."""
    keys = list(COMMON)
    if rec["event"] == "end":
        keys.append("end_reason")
    if rec["proto"] == "tcp":
        keys += TCP
    keys += [k for k in ("icmp_types", "icmp_errors") if k in rec]
    return keys


def shape(rec: dict) -> tuple:
    return rec["event"], rec["proto"], "icmp_types" in rec, "icmp_errors" in rec


def stage_records(path: pathlib.Path, module: object) -> list[dict]:
    recs: list[dict] = []
    with using(module):
        st = FlowStage(ORDER, sink=recs.append, events=recs.append)
        with open_capture(path) as r:
            st.run(r.batches())
        recs += st.connections()   # event "active", before the flush ends them
        st.flush()
    return [r for r in recs if r.get("type") == "flow"]


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("order") / "mixed.pcap"
    flowgen.mixed_trace(seed=3, tcp_conns=60, udp_flows=60).write(str(path))
    return path


@pytest.mark.parametrize("build", ["compiled", "pure"])
def test_flow_record_key_order(trace: pathlib.Path, build: str) -> None:
    if build == "compiled" and not COMPILED:
        pytest.skip("the compiled build is not installed")
    recs = stage_records(trace, walk_cy if build == "compiled" else pure_module())
    shapes = {shape(r) for r in recs}
    # every shape the templates cover was built: interval/end/events of TCP and UDP, ICMP counts
    for want in [("end", "tcp", False, False), ("interval", "tcp", False, False), ("end", "udp", False, False),
                 ("interval", "udp", False, False), ("start", "tcp", False, False), ("established", "tcp", False, False),
                 ("start", "udp", False, False), ("end", "icmp", True, False), ("end", "udp", False, True),
                 ("active", "tcp", False, False)]:
        assert want in shapes, (want, sorted(shapes))
    for r in recs:
        assert list(r) == expected_keys(r), r
        # and so the JSON line: keys in that order, nothing else
        assert list(json.loads(json.dumps(r))) == expected_keys(r)


def test_record_of_a_reused_template_is_fresh(trace: pathlib.Path) -> None:
    """Records are separate dicts: changing one (a reporter adding a field) touches no later record."""
    recs = stage_records(trace, walk_cy)
    first = recs[0]
    first["extra"] = 1
    first["src_ip"] = "changed"
    later = stage_records(trace, walk_cy)
    assert all("extra" not in r and r["src_ip"] != "changed" for r in later)
