"""/api/v1/connections, /api/v1/icmp and /api/v1/stats on a real daemon running a flow task on loopback,
checked against the traffic the test sends: a TCP connection kept open then closed, UDP datagrams counted
to the byte, and a datagram to a closed port whose ICMP port-unreachable (sent by the kernel) is joined to
its flow.  With fanout workers, the answer merges every worker's table.

(PACKET_FANOUT hashes an ICMP error apart from the flow it quotes, so with fanout the worker that holds the
flow may not see the error: the daemon joins those across the workers' tables, tested with two workers.)"""
from __future__ import annotations

import socket
import time

from .conftest import free_port, wait_for

ETH_IP_UDP = 14 + 20 + 8          # loopback frames carry an Ethernet header


def task(daemon, tid: str, ports: tuple[int, ...], parsers: str = "[flow]", workers: int = 2) -> None:
    flt = " or ".join(f"port {p}" for p in ports) + " or icmp"
    code, body = daemon.request("POST", "/api/v1/tasks", (
        f"id: {tid}\ninterfaces: [lo]\nparsers: {parsers}\nworkers: {workers}\nbpf_filter: \"{flt}\"\n"
        "reporters:\n  - type: file\n    path: /dev/null\n").encode())
    assert code == 201, body
    time.sleep(0.5)     # the rings are open


def conns(daemon, query: str) -> dict:
    return daemon.get(f"/api/v1/connections?{query}")


def test_connections_icmp_and_stats_match_the_traffic(daemon):
    tcp_port, udp_port, closed_port = free_port(), free_port(), free_port()
    task(daemon, "flows-a", (tcp_port, udp_port, closed_port), workers=1)
    srv = socket.create_server(("127.0.0.1", tcp_port))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", udp_port))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    cli = socket.create_connection(("127.0.0.1", tcp_port))
    try:
        peer, _ = srv.accept()
        cli.sendall(b"q" * 100)
        assert peer.recv(100)
        peer.sendall(b"r" * 200)
        got = b""
        while len(got) < 200:       # read it all: a close with unread data would be a RST, not a FIN
            got += cli.recv(200)
        for _ in range(5):
            tx.sendto(b"u" * 50, ("127.0.0.1", udp_port))
        tx.sendto(b"x" * 10, ("127.0.0.1", closed_port))          # port unreachable, from the kernel
        cport, uport = cli.getsockname()[1], tx.getsockname()[1]

        def udp_counted():
            c = conns(daemon, f"proto=udp&port={udp_port}")["connections"]
            return c[0] if c and c[0]["src_packets"] == 5 else None
        u = wait_for(udp_counted, what="the UDP flow in /api/v1/connections")
        assert (u["task"], u["src_ip"], u["src_port"], u["dst_port"]) == ("flows-a", "127.0.0.1", uport, udp_port)
        assert u["src_bytes"] == 5 * (ETH_IP_UDP + 50) and u["dst_packets"] == 0
        t = wait_for(lambda: (conns(daemon, f"proto=tcp&port={tcp_port}&state=established")["connections"] or [None])[0],
                     what="the established TCP connection")
        assert (t["src_port"], t["dst_port"], t["tcp_handshake"]) == (cport, tcp_port, True)
        assert t["src_packets"] >= 3 and t["dst_packets"] >= 2         # handshake, data, ACKs
        assert "S" in t["tcp_flags_src"] and "S" in t["tcp_flags_dst"]

        # ICMP: the port unreachable, counted by type/code and joined to the datagram's flow
        def unreachable():
            rep = daemon.get("/api/v1/icmp?task=flows-a")
            errs = [e for e in rep["errors"] if e["flow"]["dst_port"] == closed_port]
            return (rep, errs[0]) if errs else None
        rep, e = wait_for(unreachable, what="the ICMP error in /api/v1/icmp")
        assert (e["version"], e["icmp_type"], e["icmp_code"], e["joined"]) == (4, 3, 3, True)
        assert (e["flow"]["proto"], e["flow"]["src_port"], e["reporter"]) == ("udp", uport, "127.0.0.1")
        assert {(x["version"], x["type"], x["code"]) for x in rep["types"]} >= {(4, 3, 3)}
        assert rep["errors_joined"] >= 1 and rep["unanswered"] == 0
        closed_flow = conns(daemon, f"port={closed_port}")["connections"]
        assert [c["icmp_errors"] for c in closed_flow] == [{"3/3": 1}]

        # filters combine; paging splits the same answer
        every = conns(daemon, "task=flows-a&ip=127.0.0.1&limit=1000")
        assert every["total"] == len(every["connections"]) >= 3 and every["tasks"] == ["flows-a"]
        assert conns(daemon, f"port={udp_port}&proto=tcp")["total"] == 0
        first, second = conns(daemon, "task=flows-a&limit=1"), conns(daemon, "task=flows-a&limit=1&offset=1")
        assert [first["connections"][0], second["connections"][0]] == every["connections"][:2]

        # closing: the observer sees FIN both ways (the flow lingers as closed)
        cli.close()
        peer.close()
        wait_for(lambda: conns(daemon, f"port={tcp_port}&state=closed")["total"] == 1, what="the closed state")

        # stats: the task's flow counters and the loopback's kernel counters, rates on the second ask
        st = wait_for(lambda: (lambda s: s if "flow" in s["tasks"]["flows-a"] else None)(daemon.get("/api/v1/stats")),
                      what="the task's counters (sent every second)")
        flow = st["tasks"]["flows-a"]["flow"]
        assert flow["created"] >= 3 and flow["limit"] == 65536 and st["tasks"]["flows-a"]["status"] == "running"
        assert st["interfaces"]["lo"]["counters"]["rx_packets"] > 0 and st["daemon"]["running"] >= 1
        time.sleep(0.2)
        again = daemon.get("/api/v1/stats")["interfaces"]["lo"]
        assert again["counters"]["rx_packets"] >= st["interfaces"]["lo"]["counters"]["rx_packets"]
        assert "rx_packets" in again["rates"]
        assert len(daemon.get("/api/v1/stats?all_interfaces=true")["interfaces"]) >= 1
    finally:
        for s in (srv, rx, tx, cli):
            s.close()
        daemon.request("DELETE", "/api/v1/tasks/flows-a")


def test_fanout_workers_tables_are_merged(daemon, tmp_path):
    port, closed = free_port(), free_port()
    task(daemon, "flows-w", (port, closed), workers=2)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", port))
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
    try:
        for i, s in enumerate(senders):
            s.bind(("127.0.0.1", 0))
            for _ in range(i + 1):
                s.sendto(b"p" * 20, ("127.0.0.1", port))
            s.sendto(b"c", ("127.0.0.1", closed))      # each its port unreachable
        want = {s.getsockname()[1]: i + 1 for i, s in enumerate(senders)}
        state = daemon.tmp / "state" / "views" / "flows-w"
        assert len(list(state.glob("*.sock"))) == 2                   # one view per worker

        def all_counted():
            page = conns(daemon, f"task=flows-w&port={port}&limit=1000")
            got = {c["src_port"]: c["src_packets"] for c in page["connections"]}
            return page if got == want else None
        page = wait_for(all_counted, what="every sender's flow, from both workers")
        assert page["total"] == 16 and page["unanswered"] == 0
        assert [c["first_ts"] for c in page["connections"]] == sorted(c["first_ts"] for c in page["connections"])
        # each ICMP error joined to its flow, whichever worker captured which
        rep = wait_for(lambda: (lambda r: r if len(r["errors"]) == 16 else None)(daemon.get("/api/v1/icmp?task=flows-w")),
                       what="16 port unreachables")
        assert all(e["joined"] for e in rep["errors"]), rep["errors"]
        assert {e["flow"]["src_port"] for e in rep["errors"]} == set(want)
        assert rep["errors_joined"] + rep["errors_unmatched"] == 16
    finally:
        for s in senders + [rx]:
            s.close()
        daemon.request("DELETE", "/api/v1/tasks/flows-w")
    assert wait_for(lambda: not list(state.glob("*.sock")), what="the views closed with the task")


def test_connection_requests_are_checked(daemon):
    code, body = daemon.request("GET", "/api/v1/connections?ip=not-an-address")
    assert code == 400 and "ip" in body["error"]
    code, body = daemon.request("GET", "/api/v1/connections?task=no-such-task")
    assert code == 404 and "no such task" in body["error"]
    code, body = daemon.request("GET", "/api/v1/connections?state=bogus")
    assert code == 422 and body["fields"]
    task(daemon, "flows-sip", (free_port(),), parsers="[sip]", workers=1)
    try:
        code, body = daemon.request("GET", "/api/v1/icmp?task=flows-sip")
        assert code == 400 and "does not run the flow parser" in body["error"]
        assert conns(daemon, "")["tasks"] == []      # no flow task running: nothing to ask, no error
    finally:
        daemon.request("DELETE", "/api/v1/tasks/flows-sip")
