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
