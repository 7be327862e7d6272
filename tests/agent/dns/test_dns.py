"""DNS records against tshark's dns fields; latency, the address cache, per-domain bytes, ignore filters."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.dns import DnsConfig, DnsIgnore, DnsStage
from otus_agent.dns.cache import AddressCache
from otus_agent.dns.message import RCODE_NAMES, TYPE_NAMES
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.sim import flowgen

from ...conftest import corpus_path

TSHARK_FIELDS = ("dns.id", "dns.flags.response", "dns.flags.rcode", "dns.qry.name", "dns.qry.type",
                 "dns.count.answers", "dns.a", "dns.aaaa", "dns.cname")


def run(path: str, config: DnsConfig | None = None) -> tuple[list[dict], DnsStage]:
    recs: list[dict] = []
    dns = DnsStage(config, sink=recs.append)
    pipe = DatagramStage(sink=dns.feed)
    with open_capture(path) as r:
        for b in r.batches():
            pipe.feed(b)
            dns.feed_batch(b, pipe.decoder.out)
    return recs, dns


def tshark_dns(path: str) -> list[tuple]:
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark not installed")
    args = [exe, "-n", "-r", path, "-Y", "dns && !icmp", "-T", "fields", "-E", "aggregator=,"]
    for f in TSHARK_FIELDS:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    rows = []
    for line in out.splitlines():
        ident, resp, rcode, qname, qtype, nans, a, aaaa, cname = line.split("\t")
        rows.append((int(ident, 16), resp == "1", int(rcode) if rcode else None, qname, int(qtype), int(nans),
                     sorted(a.split(",")) if a else [], sorted(aaaa.split(",")) if aaaa else [],
                     sorted(cname.split(",")) if cname else []))
    return rows


def ours(recs: list[dict]) -> list[tuple]:
    """The same fields from our records (tshark's dns.a/aaaa/cname span every section)."""
    rows = []
    codes = {v: k for k, v in RCODE_NAMES.items()}
    types = {v: k for k, v in TYPE_NAMES.items()}
    for r in recs:
        every = r["answers"] + r["authority"] + r["additional"]
        rows.append((r["id"], r["response"], codes[r["rcode"]] if r["rcode"] else (0 if r["response"] else None),
                     r["qname"], types.get(r["qtype"], r["qtype"]), len(r["answers"]),
                     sorted(a["data"] for a in every if a["type"] == "A" and a["data"]),
                     sorted(a["data"] for a in every if a["type"] == "AAAA" and a["data"]),
                     sorted(a["data"] for a in every if a["type"] == "CNAME")))
    return rows


@pytest.mark.corpus
@pytest.mark.parametrize("rel", ["pcap/sip/wireshark-sample-aaa.pcap", "pcap/frag/dnscap-frags.pcap"])  # 82 messages
def test_corpus_dns_matches_tshark(rel: str) -> None:
    path = str(corpus_path(rel))
    recs, stage = run(path, DnsConfig(ports=frozenset({53})))
    assert recs and not stage.malformed
    assert ours(recs) == tshark_dns(path)


def test_generated_dns_udp_and_tcp_match_tshark(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "dns.pcap")
    flowgen.DnsWorld().trace()[0].write(path)
    recs, _ = run(path)
    assert ours(recs) == tshark_dns(path)
    assert {r["transport"] for r in recs} == {"udp", "tcp"}


def test_cname_chain_latency_and_per_domain_bytes(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "dns.pcap")
    tr, want = flowgen.DnsWorld().trace()
    tr.write(path)
    recs, stage = run(path)
    www = next(r for r in recs if r["response"] and r["qname"] == "www.example.com")
    assert www["cname_chain"] == ["cdn.example.net", "edge.cdn.example.net"]
    assert sorted(www["addresses"]) == ["192.0.2.10", "192.0.2.11"]
    assert www["latency_ms"] == pytest.approx(2.0)
    tcp = next(r for r in recs if r["response"] and r["transport"] == "tcp")
    assert tcp["latency_ms"] == pytest.approx(3.0 - 0.001)
    top = stage.traffic.top()
    for name, (sent, recv) in want.items():
        assert top[name][:2] == (sent, recv), name
        assert top[name][2] == sum(1 for a in flowgen.DnsWorld().names[name] if a[1] in (1, 28))  # one SYN each
        assert top[name][3] == 1
    assert stage.summary()["matched"] == 3


def test_top_n_folds_the_rest_into_other(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "dns.pcap")
    tr, want = flowgen.DnsWorld().trace()
    tr.write(path)
    _, stage = run(path, DnsConfig(top_domains=1))
    top = stage.traffic.top()
    biggest = max(want, key=lambda d: sum(want[d]))
    assert set(top) == {biggest, "other"}
    assert top["other"][0] == sum(s for d, (s, _) in want.items() if d != biggest)


def test_ignore_filters(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "dns.pcap")
    flowgen.DnsWorld().trace()[0].write(path)
    cfg = DnsConfig(ignore=DnsIgnore(domains=("example.org",), ports=frozenset({443})))
    recs, stage = run(path, cfg)
    assert all(not (r["qname"] or "").endswith("example.org") for r in recs)
    assert stage.summary()["ignored"] == 4
    assert all(v[:3] == (0, 0, 0) for v in stage.traffic.top().values())  # all traffic was on port 443
    _, stage = run(path, DnsConfig(ignore=DnsIgnore(addresses=("192.0.2.0/24",))))
    assert "www.example.com" not in stage.traffic.top() or stage.traffic.top()["www.example.com"][:2] == (0, 0)


def test_cache_ttl_floor_cap_and_bound() -> None:
    c = AddressCache(max_entries=2, ttl_floor_s=30, ttl_cap_s=100)
    s = 1_000_000_000
    c.put(b"\1\1\1\1", "a", 1, 0)  # TTL 1 s, held for the 30 s floor
    assert c.get(b"\1\1\1\1", 29 * s) == "a" and c.get(b"\1\1\1\1", 31 * s) is None
    c.put(b"\2\2\2\2", "b", 10**6, 0)  # capped at 100 s
    assert c.get(b"\2\2\2\2", 99 * s) == "b" and c.get(b"\2\2\2\2", 101 * s) is None
    for i in range(5):
        c.put(bytes([9, 9, 9, i]), f"d{i}", 60, 0)
    assert len(c) == 2 and c.evictions == 3 and c.get(bytes([9, 9, 9, 4]), 0) == "d4"


def test_pending_table_is_bounded_and_unanswered_counted(tmp_path: pathlib.Path) -> None:
    tr = flowgen.Trace()
    for i in range(20):
        tr.add(i * 1000, flowgen.udp_frame("10.0.0.1", 20000 + i, "10.0.0.53", 53, flowgen.dns_message(i, "x.test")))
    tr.add(60 * flowgen.SEC, flowgen.udp_frame("10.0.0.1", 1, "10.0.0.53", 53, flowgen.dns_message(99, "y.test")))
    path = str(tmp_path / "q.pcap")
    tr.write(path)
    _, stage = run(path, DnsConfig(max_pending=5))
    s = stage.summary()
    assert s["pending_evicted"] == 15 and s["unanswered"] == 5 and s["pending"] == 1


def test_domain_metrics_are_bounded(tmp_path: pathlib.Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from otus_agent.dns.metrics import domain_metrics
    path = str(tmp_path / "dns.pcap")
    tr, want = flowgen.DnsWorld().trace()
    tr.write(path)
    _, stage = run(path, DnsConfig(top_domains=2))

    class C:
        def collect(self):
            return domain_metrics("t1", stage)
    reg = CollectorRegistry()
    reg.register(C())
    text = generate_latest(reg).decode()
    series = [ln for ln in text.splitlines() if ln.startswith("otus_domain_bytes_sent_total{")]
    assert len(series) == 3  # two domains and other
    www = want["www.example.com"]
    assert f'otus_domain_bytes_sent_total{{domain="www.example.com",task="t1"}} {float(www[0])}' in text


def test_dns_over_tcp_split_and_pipelined(tmp_path: pathlib.Path) -> None:
    """A response split over two segments, then two queries in one segment (RFC 7766 pipelining)."""
    import struct

    from otus_agent.sim import packets as P
    tr = flowgen.Trace()
    c = flowgen.TcpConn(tr, "10.0.0.1", 45000, "10.0.0.53", 53)
    t = c.handshake(flowgen.SEC)
    q1 = flowgen.dns_message(1, "a.test")
    r1 = flowgen.dns_message(1, "a.test", 1, True, 0, (("a.test", 1, 60, "192.0.2.1"),))
    c.c(t + 1000, P.TCP_ACK | P.TCP_PSH, struct.pack("!H", len(q1)) + q1)
    framed = struct.pack("!H", len(r1)) + r1
    c.s(t + 2000, P.TCP_ACK | P.TCP_PSH, framed[:7])
    c.s(t + 3000, P.TCP_ACK | P.TCP_PSH, framed[7:])
    q2, q3 = flowgen.dns_message(2, "b.test"), flowgen.dns_message(3, "c.test", 28)
    c.c(t + 4000, P.TCP_ACK | P.TCP_PSH, struct.pack("!H", len(q2)) + q2 + struct.pack("!H", len(q3)) + q3)
    path = str(tmp_path / "tcp.pcap")
    tr.write(path)
    recs, stage = run(path)
    assert [(r["id"], r["response"], r["qname"]) for r in recs] == [
        (1, False, "a.test"), (1, True, "a.test"), (2, False, "b.test"), (3, False, "c.test")]
    assert recs[1]["addresses"] == ["192.0.2.1"] and recs[1]["latency_ms"] == pytest.approx(0.002)
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark not installed")
    out = subprocess.run([exe, "-n", "-r", path, "-Y", "dns", "-T", "fields", "-e", "dns.id", "-e", "dns.qry.name"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    theirs = [(int(i, 16), n) for line in out.splitlines() for i, n in zip(*(f.split(",") for f in line.split("\t")))]
    assert theirs == [(r["id"], r["qname"]) for r in recs]  # tshark puts both pipelined queries in one frame
