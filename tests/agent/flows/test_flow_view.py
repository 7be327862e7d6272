"""The flow table's view socket (flows/view.py) and the daemon's reader (daemon/views.py): what the daemon
reads from a live table is what the table holds, filtered and paged; ICMP errors come joined to their flow."""
from __future__ import annotations

import pathlib
import typing

from otus_agent.capture.pcapfile import open_capture
from otus_agent.daemon import views
from otus_agent.flows import FlowConfig, FlowStage
from otus_agent.flows import view as V
from otus_agent.flows.table import PROTO_NAMES, STATE_NAMES
from otus_agent.sim import flowgen

NO_TIMEOUTS = dict(tcp_syn_timeout_s=1e9, tcp_established_timeout_s=1e9, tcp_closed_timeout_s=1e9,
                   udp_timeout_s=1e9, icmp_timeout_s=1e9)


def live_table(tmp_path: pathlib.Path) -> tuple[FlowStage, str]:
    path = str(tmp_path / "mixed.pcap")
    flowgen.mixed_trace().write(path)
    d = str(tmp_path / "views" / "t")
    stage = FlowStage(FlowConfig(view_dir=d, **NO_TIMEOUTS))
    with open_capture(path) as r:
        stage.run(r.batches())
    return stage, d


def test_filter_values_are_the_tables() -> None:
    assert set(typing.get_args(V.FlowProto)) == set(PROTO_NAMES.values())
    assert set(typing.get_args(V.TcpState)) == set(STATE_NAMES)


def test_the_daemon_reads_the_live_table(tmp_path: pathlib.Path) -> None:
    stage, d = live_table(tmp_path)
    try:
        assert stage.view is not None and pathlib.Path(stage.view.path).stat().st_mode & 0o777 == 0o600
        every = views.connections({"t": d}, {"limit": 1000})
        assert stage.summary()["view"] == {"requests": 1, "errors": 0}
        assert every["total"] == len(stage.flows) == len(every["connections"]) and every["unanswered"] == 0
        want = {(c["proto"], c["src_ip"], c["src_port"], c["dst_ip"], c["dst_port"], c["src_packets"], c["dst_bytes"])
                for c in stage.connections(limit=10_000)}
        got = {(c["proto"], c["src_ip"], c["src_port"], c["dst_ip"], c["dst_port"], c["src_packets"], c["dst_bytes"])
               for c in every["connections"]}
        assert got == want and all(c["task"] == "t" for c in every["connections"])
        # filters: each against the table itself
        udp = views.connections({"t": d}, {"proto": "udp", "port": 5060, "limit": 1000})
        assert udp["total"] == sum(1 for f in stage.flows.values() if f.proto == 17 and 5060 in (f.sport, f.dport)) > 0
        assert {c["proto"] for c in udp["connections"]} == {"udp"}
        ip = views.connections({"t": d}, {"ip": "10.2.0.1", "limit": 1000})
        assert ip["total"] > 0 and all("10.2.0.1" in (c["src_ip"], c["dst_ip"]) for c in ip["connections"])
        closed = views.connections({"t": d}, {"state": "closed", "limit": 1000})
        assert closed["total"] == sum(1 for c in stage.connections(proto="tcp", limit=10_000)
                                      if c["tcp_state"] == "closed") > 0
        # pages: consecutive, oldest first, together the whole answer
        pages = [views.connections({"t": d}, {"offset": o, "limit": 7}) for o in range(0, every["total"], 7)]
        assert [c for p in pages for c in p["connections"]] == every["connections"]
        assert all(len(p["connections"]) <= 7 for p in pages)
        # ICMP: counts as the table's, and errors with the flow they quote
        rep = views.icmp({"t": d})
        assert rep["errors_joined"] == stage.icmp_errors_joined > 0 and rep["truncated"] == stage.icmp_truncated
        assert {(t["version"], t["type"], t["code"]): t["packets"] for t in rep["types"]} == stage.icmp_types
        joined = [e for e in rep["errors"] if e["joined"]]
        assert len(joined) == stage.icmp_errors_joined
        c = every["connections"][0]
        fwd = [c["proto"], c["src_ip"], c["src_port"], c["dst_ip"], c["dst_port"]]
        back = [c["proto"], c["dst_ip"], c["dst_port"], c["src_ip"], c["src_port"]]
        assert V.answer(stage, {"what": "lookup", "flows": [fwd, back, ["udp", "192.0.2.1", 1, "192.0.2.2", 2]]}) \
            == {"found": [True, True, False]}
        assert "error" in V.answer(stage, {"what": "lookup", "flows": [["udp", "x", 1, "y", 2]]})
        for e in joined:
            f = e["flow"]
            assert f["proto"] == "udp" and f["dst_ip"] in ("10.4.0.1", "fd00::b")
            assert any(c["src_port"] == f["src_port"] and c["icmp_errors"] for c in every["connections"])
    finally:
        stage.flush()
    assert stage.view is None and list(pathlib.Path(d).glob("*.sock")) == []
    assert views.connections({"t": d}, {})["total"] == 0        # the process is gone: nothing to ask


def test_a_stale_socket_is_removed_and_bad_requests_answered(tmp_path: pathlib.Path) -> None:
    import socket
    d = tmp_path / "v"
    d.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(d / "1.sock"))
    stale.close()                                   # bound, nobody listens: a dead process's socket
    assert views.ask(str(d), {"what": "icmp"}) == ([], 0) and not (d / "1.sock").exists()
    stage = FlowStage(FlowConfig(view_dir=str(d)))
    try:
        assert views.ask(str(d), {"what": "nonsense"}) == ([], 1)
        assert V.answer(stage, {"what": "connections", "port": "x"}) == {"error": "port: expected int"}
        assert V.answer(stage, ["x"]) == {"error": "request must be a JSON object"}
    finally:
        stage.flush()
