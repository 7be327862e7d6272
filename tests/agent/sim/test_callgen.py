"""The workload generator writes frames a real stack would accept (checked by scapy)."""
from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import rdpcap

from otus_agent.capture.pcapfile import open_capture
from otus_agent.reassembly.datagrams import DatagramStage


def test_checksums_and_shares(workload_pcap):
    path, wl = workload_pcap
    pkts = rdpcap(str(path))
    assert len(pkts) == wl.packets
    kinds = {"vlan": 0, "v6": 0, "tcp": 0, "frag": 0}
    for p in pkts:
        kinds["vlan"] += Dot1Q in p
        if IP in p:
            ip = p[IP]
            c = ip.chksum
            del ip.chksum
            assert IP(bytes(ip)).chksum == c
            kinds["frag"] += bool(ip.flags.MF or ip.frag)
            if ip.flags.MF or ip.frag:
                continue
        else:
            kinds["v6"] += 1
            if p[IPv6].nh == 44:  # IPv6 fragment: checked after reassembly elsewhere
                continue
        l4 = p[UDP] if UDP in p else p[TCP]
        kinds["tcp"] += TCP in p
        c = l4.chksum
        l4 = p.copy()[UDP if UDP in p else TCP]
        del l4.chksum
        net = p[IP] if IP in p else p[IPv6]
        rebuilt = (IP if IP in p else IPv6)(bytes(net.__class__(src=net.src, dst=net.dst) / l4))
        assert rebuilt[UDP if UDP in p else TCP].chksum == c
    assert all(v > 0 for v in kinds.values()), kinds
    assert kinds["frag"] == wl.fragments - sum(1 for p in pkts if IPv6 in p and p[IPv6].nh == 44)


def test_sip_messages_come_out_whole(workload_pcap):
    path, wl = workload_pcap
    got = []
    p = DatagramStage(sink=got.append)
    with open_capture(path) as r:
        p.run(r.batches())
    udp_sip = [d.payload for d in got if d.transport == "udp" and d.dst_port == 5060 or d.src_port == 5060
               and d.transport == "udp"]
    firsts = [x.split(b"\r\n", 1)[0].decode() for x in udp_sip]
    expected = [m for c in wl.calls if c.transport == "udp" for m in c.messages]
    assert sorted(firsts) == sorted(expected)
    for msg in udp_sip:
        head, body = msg.split(b"\r\n\r\n", 1)
        cl = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert cl == len(body)


def test_deterministic(tmp_path):
    from otus_agent.sim.callgen import WorkloadSpec, generate
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    for x in (a, b):
        with open(x, "wb") as f:
            generate(f, WorkloadSpec(calls=20, seed=3))
    assert a.read_bytes() == b.read_bytes()
    assert Ether(rdpcap(str(a))[0].original).haslayer(UDP)


# --- the realistic PBX profile (issue 15), checked by an independent decoder: tshark ---

def _pbx(tmp_path, **kw):
    from otus_agent.sim.callgen import WorkloadSpec, generate
    path = tmp_path / "pbx.pcap"
    spec = dict(calls=200, seed=11, profile="pbx", tcp_ratio=0.2, large_invite_ratio=0.2, ipv6_ratio=0.2,
                vlan_ratio=0.2, calls_per_second=50.0)
    spec.update(kw)
    with open(path, "wb") as f:
        wl = generate(f, WorkloadSpec(**spec))
    return path, wl


def _tshark(path, display: str, *fields: str) -> list[list[str]]:
    import shutil
    import subprocess

    import pytest
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (scripts/bootstrap installs it)")
    args = ["tshark", "-n", "-r", str(path), "-o", "tcp.desegment_tcp_streams:TRUE", "-o", "ip.defragment:TRUE",
            "-Y", display, "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    return [line.split("\t") for line in r.stdout.splitlines()]


def test_pbx_calls_decode_in_tshark(tmp_path):
    """Every call is 7 SIP messages in dialog order; INVITEs ~1 kB with the five codecs; real PBX headers."""
    from collections import Counter, defaultdict
    path, wl = _pbx(tmp_path)
    assert wl.sip_messages == 7 * 200 == sum(len(c.messages) for c in wl.calls)
    rows = _tshark(path, "sip", "sip.Call-ID", "sip.Method", "sip.Status-Code", "sip.CSeq.method",
                   "sdp.mime.type", "sip.User-Agent", "sip.Record-Route", "sip.Allow", "sdp.media_attr")
    assert len(rows) == wl.sip_messages
    per_call: dict[str, list[str]] = defaultdict(list)
    for cid, method, status, *_ in rows:
        per_call[cid].append(method or status)
    assert sorted(per_call) == sorted(c.call_id for c in wl.calls)
    assert Counter(tuple(v) for v in per_call.values()) == {("INVITE", "100", "180", "200", "ACK", "BYE", "200"): 200}
    invites = [r for r in rows if r[1] == "INVITE"]
    assert all(r[4] == "PCMU,PCMA,G722,opus,telephone-event" for r in invites), invites[0]
    assert all("fmtp:111 useinbandfec=1" in r[8] and "ptime:20" in r[8] for r in invites)
    assert all(r[5].startswith(("Asterisk", "FreeSWITCH")) and r[7] for r in invites)
    assert 50 < sum(bool(r[6]) for r in invites) < 150   # about half the calls pass a Kamailio proxy


def test_pbx_message_sizes(tmp_path):
    path, wl = _pbx(tmp_path, tcp_ratio=0.0, large_invite_ratio=0.0, ipv6_ratio=0.0, vlan_ratio=0.0)
    rows = _tshark(path, "sip", "sip.Method", "sip.Status-Code", "udp.length")
    inv = [int(r[2]) - 8 for r in rows if r[0] == "INVITE"]
    resp = [int(r[2]) - 8 for r in rows if r[1]]
    assert 950 <= sum(inv) / len(inv) <= 1300, sum(inv) / len(inv)
    assert min(resp) >= 400 and max(resp) <= 1000 and 450 <= sum(resp) / len(resp) <= 900


def test_pbx_fragments_reassemble(tmp_path):
    """Large UDP INVITEs leave as IPv4/IPv6 fragments that tshark puts back together."""
    path, wl = _pbx(tmp_path)
    frags = _tshark(path, "ip.flags.mf == 1 || ip.frag_offset > 0 || ipv6.nxt == 44", "frame.number")
    assert len(frags) == wl.fragments > 0
    large_udp = [c for c in wl.calls if c.large and c.transport == "udp"]
    assert large_udp
    rebuilt = _tshark(path, "sip.Method == \"INVITE\" && (ip.fragments || ipv6.fragments)", "sip.Call-ID")
    assert sorted(r[0] for r in rebuilt) == sorted(c.call_id for c in large_udp)
    assert any(c.ipv6 for c in large_udp) and any(not c.ipv6 for c in large_udp)


def test_pbx_tcp_streams_are_valid(tmp_path):
    """TCP calls: one connection each, handshake and FINs, no gap, retransmission or bad checksum."""
    path, wl = _pbx(tmp_path)
    tcp_calls = [c for c in wl.calls if c.transport == "tcp"]
    assert tcp_calls
    syn = _tshark(path, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.stream")
    synack = _tshark(path, "tcp.flags.syn == 1 && tcp.flags.ack == 1", "tcp.stream")
    fin = _tshark(path, "tcp.flags.fin == 1", "tcp.stream")
    assert len(syn) == len(synack) == len(tcp_calls) and len(fin) == 2 * len(tcp_calls)
    bad = _tshark(path, "tcp && (tcp.analysis.flags && !tcp.analysis.window_update)", "frame.number",
                  "_ws.expert.message")
    assert bad == []
    sip_over_tcp = _tshark(path, "sip && tcp", "sip.Call-ID", "tcp.stream")
    assert len(sip_over_tcp) == 7 * len(tcp_calls)
    streams: dict[str, set[str]] = {}
    for cid, stream in sip_over_tcp:
        streams.setdefault(cid, set()).add(stream)
    assert all(len(s) == 1 for s in streams.values()) and len({next(iter(s)) for s in streams.values()}) == len(
        tcp_calls)
    segmented = _tshark(path, "sip && tcp.segment.count >= 2", "sip.Call-ID", "sip.Method")
    assert sorted(segmented) == sorted([c.call_id, "INVITE"] for c in tcp_calls if c.large) != []


def test_pbx_vlan_ipv6_and_overlap(tmp_path):
    path, wl = _pbx(tmp_path)
    vlan = _tshark(path, "vlan && sip", "vlan.id", "sip.Call-ID")
    assert {r[1] for r in vlan} == {c.call_id for c in wl.calls if c.vlan is not None} != set()
    v6 = _tshark(path, "ipv6 && sip", "sip.Call-ID")
    assert {r[0] for r in v6} == {c.call_id for c in wl.calls if c.ipv6} != set()
    # calls overlap as on a trunk: some call's INVITE comes before an earlier call's BYE
    order = [r[0] for r in _tshark(path, "sip.Method == \"INVITE\" || sip.Method == \"BYE\"", "sip.Call-ID")]
    first_bye = order.index(wl.calls[0].call_id, 1)
    assert order.index(wl.calls[5].call_id) < first_bye
    ts = [int(r[0].replace(".", "")) for r in _tshark(path, "frame", "frame.time_epoch")]
    assert ts == sorted(ts)


def test_pbx_deterministic_and_classic_unchanged(tmp_path):
    from otus_agent.sim.callgen import WorkloadSpec, generate
    a, b, c = (tmp_path / f"{x}.pcap" for x in "abc")
    for path, seed in ((a, 3), (b, 3), (c, 4)):
        with open(path, "wb") as f:
            generate(f, WorkloadSpec(calls=30, seed=seed, profile="pbx"))
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    classic = tmp_path / "classic.pcap"
    with open(classic, "wb") as f:
        generate(f, WorkloadSpec(calls=20, seed=3))
    assert classic.read_bytes() != a.read_bytes()
    with open(tmp_path / "x.pcap", "wb") as f:
        try:
            generate(f, WorkloadSpec(calls=1, profile="nope"))  # type: ignore[arg-type]
        except ValueError as e:
            assert "unknown workload profile" in str(e)
        else:
            raise AssertionError("an unknown profile must be refused")


def test_pbx_open_dialogs(tmp_path):
    """The memory bench's file: INVITE and 200 only, so every dialog stays open."""
    path, wl = _pbx(tmp_path, open_dialogs=True)
    rows = _tshark(path, "sip", "sip.Method", "sip.Status-Code")
    assert len(rows) == wl.sip_messages == 400
    assert sorted(r[0] or r[1] for r in rows) == ["200"] * 200 + ["INVITE"] * 200
