"""The fanout group's SIP-affinity program (capture/fanout_bpf.py) in this kernel, on a veth.

Two rings (``afpacket.Ring``, as a worker opens them) join one PACKET_FANOUT_CBPF group on namespace b's
end.  Namespace a sends to b and b sends to a, so b's rings see both incoming packets and outgoing ones
(which reach the demux still starting at their link header: the program reads from the network header).
SIP over UDP and TCP on any port pair with 5060 on one side, IPv4 and IPv6, goes to the first member;
the other flows are spread over both members, and each flow's two directions land on one member.  The
whole through ``otus run --workers 2 --calls`` (a proxy's two legs on one worker) is in
test_rtp_fanout_live.py and test_relay_legs.py.

Namespaces ``otus-fanaff-<pid>-a/-b`` (tests/netns.veth_pair) are removed also on failure.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..netns import require_root_and, sh, stop, veth_pair

pytestmark = pytest.mark.netns

CAPTURE = r"""
import json, socket, sys, time
from otus_agent.capture.afpacket import Ring, RingConfig
from otus_agent.capture.fanout_bpf import sip_affinity
ifname, group = sys.argv[1], int(sys.argv[2])
prog = sip_affinity((5060, 5061), True)   # with the SIP heuristic: SIP on other ports by its first bytes
cfg = RingConfig(block_timeout_ms=5)
rings = [Ring(ifname, None, cfg, group, fanout_prog=prog) for _ in range(2)]
print("ready", flush=True)
sys.stdin.readline()              # the senders are done
time.sleep(0.3)
seen = []
for member, r in enumerate(rings):
    for b in r.poll_blocks():
        for i in range(b.n):
            f = bytes(b.packet(i))
            et = int.from_bytes(f[12:14], "big")
            if et == 0x0800 and f[23] in (6, 17):
                ihl = (f[14] & 0x0F) * 4
                src, dst, l4, proto = socket.inet_ntop(socket.AF_INET, f[26:30]), socket.inet_ntop(socket.AF_INET, f[30:34]), 14 + ihl, f[23]
            elif et == 0x86DD and f[20] in (6, 17):
                src, dst, l4, proto = socket.inet_ntop(socket.AF_INET6, f[22:38]), socket.inet_ntop(socket.AF_INET6, f[38:54]), 54, f[20]
            else:
                continue
            data = l4 + (8 if proto == 17 else (f[l4 + 12] >> 4) * 4)
            seen.append([member, src, int.from_bytes(f[l4:l4 + 2], "big"), dst, int.from_bytes(f[l4 + 2:l4 + 4], "big"),
                         f[data:data + 4].decode("latin-1")])
for r in rings:
    r.close()
print(json.dumps(seen), flush=True)
"""

SEND = r"""
import socket, sys
me, peer, me6, peer6, reverse = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
def udp(fam, src, sport, dst, dport, n):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((src, sport))
    for _ in range(n):
        s.sendto(b"x" * 40, (dst, dport))
    s.close()
for i in range(40):                       # media-like flows, both directions (reverse: b answers)
    a, b = 20000 + 2 * i, 30000 + 2 * i
    if reverse:
        udp(socket.AF_INET, me, b, peer, a, 3)
    else:
        udp(socket.AF_INET, me, a, peer, b, 3)
        udp(socket.AF_INET6, me6, a + 1000, peer6, b + 1000, 3)
if not reverse:
    for i in range(30):                   # SIP: to 5060 from other ports, from 5060 to others, IPv6
        udp(socket.AF_INET, me, 40000 + i, peer, 5060, 1)
        udp(socket.AF_INET, me, 5060, peer, 41000 + i, 1)
        udp(socket.AF_INET6, me6, 42000 + i, peer6, 5061, 1)
    for i in range(5):                    # SIP over TCP: the handshake's packets both ways
        c = socket.create_connection((peer, 5060), timeout=5, source_address=(me, 43000 + i))
        c.sendall(b"OPTIONS sip:x SIP/2.0\r\n\r\n")
        c.close()
    for i in range(20):                   # SIP on ports that are not SIP's (the heuristic's), and RTP there
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((me, 44000 + i))
        s.sendto(b"INVITE sip:y SIP/2.0\r\n\r\n", (peer, 5080))
        s.sendto(b"\x80\x00" + b"x" * 170, (peer, 5080))
        s.close()
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind((me6, 46000 + i))
        s.sendto(b"SIP/2.0 200 OK\r\n\r\n", (peer6, 5082))
        s.close()
    for port, first in ((7070, b"REGISTER sip:z SIP/2.0\r\n\r\n"), (8080, b"GET / HTTP/1.1\r\n\r\n")):
        for i in range(5):                # TCP on other ports: SIP by its payload; the rest, ACKs too, by flow
            c = socket.create_connection((peer, port), timeout=5, source_address=(me, 47000 + 10 * (port % 7) + i))
            c.sendall(first)
            c.close()
"""

LISTEN = r"""
import socket, sys, time
import selectors
sel = selectors.DefaultSelector()
for port in (5060, 7070, 8080):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(16)
    sel.register(s, selectors.EVENT_READ)
end = time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
while time.monotonic() < end:
    for key, _ in sel.select(0.5):
        try:
            c, _ = key.fileobj.accept(); c.settimeout(2); c.recv(100); c.close()
        except OSError:
            pass
"""


def test_sip_goes_to_the_first_member_and_other_flows_spread_by_flow():
    require_root_and()
    with veth_pair("fanaff", subnet=95) as p:
        ip6_a, ip6_b = "fd95::1", "fd95::2"
        for ns, ifn, ip in ((p.ns_a, p.if_a, ip6_a), (p.ns_b, p.if_b, ip6_b)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/64", "dev", ifn, "nodad")
        listen = p.popen(p.ns_b, sys.executable, "-c", LISTEN, p.ip_b, "20", stdout=subprocess.PIPE, text=True)
        cap = p.popen(p.ns_b, sys.executable, "-c", CAPTURE, p.if_b, "4242", stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True)
        try:
            assert listen.stdout.readline().strip() == "ready"
            assert cap.stdout.readline().strip() == "ready"
            p.run(p.ns_a, sys.executable, "-c", SEND, p.ip_a, p.ip_b, ip6_a, ip6_b, "0", timeout=60)
            p.run(p.ns_b, sys.executable, "-c", SEND, p.ip_b, p.ip_a, ip6_b, ip6_a, "1", timeout=60)
            out, _ = cap.communicate("go\n", timeout=60)
        finally:
            stop(cap)
            stop(listen)
    assert cap.returncode == 0
    seen = json.loads(out.strip().splitlines()[-1])
    sip = [s for s in seen if 5060 in (s[2], s[4]) or 5061 in (s[2], s[4])]
    by_payload = [s for s in seen if s not in sip and s[5] in ("INVI", "SIP/", "REGI")]
    other = [s for s in seen if s not in sip and s not in by_payload]
    assert len([s for s in sip if s[2] != 5060 and s[4] == 5060 and ":" not in s[1]]) >= 30 + 5   # UDP + SYNs
    assert any(":" in s[1] for s in sip) and any(s[1] == p.ip_b for s in sip)   # IPv6; outgoing (b's answers)
    assert {s[0] for s in sip} == {0}, [s for s in sip if s[0] != 0]
    # SIP on other ports, by its first bytes: UDP over IPv4 and IPv6, and TCP's segments with SIP in them
    assert sorted({(s[4], s[5]) for s in by_payload}) == [(5080, "INVI"), (5082, "SIP/"), (7070, "REGI")]
    assert len(by_payload) == 20 + 20 + 5 and {s[0] for s in by_payload} == {0}, by_payload
    by_flow: dict[tuple, set[int]] = {}
    for member, src, sport, dst, dport, _ in other:
        by_flow.setdefault(tuple(sorted([(src, sport), (dst, dport)])), set()).add(member)
    udp = {k: m for k, m in by_flow.items() if not {k[0][1], k[1][1]} & {7070, 8080}}
    assert len(udp) == 80 + 20                       # 40 IPv4 (both ways), 40 IPv6; RTP beside SIP on 5080
    assert all(len(m) == 1 for m in by_flow.values())                # a flow's packets, both ways: one member
    assert len(by_flow) - len(udp) == 10             # TCP to 7070 (handshakes, ACKs) and 8080 (HTTP too): by flow
    media = {k: m for k, m in udp.items() if k[0][1] >= 20000 and k[0][1] < 40000}
    both_ways = [k for k in media if k[0][0] == p.ip_a and sum(1 for s in other if (s[1], s[2]) == k[1]) > 0]
    assert len(both_ways) == 40                                      # b's answers (outgoing) were seen
    members = [next(iter(m)) for m in udp.values()]
    assert members.count(0) >= 25 and members.count(1) >= 25         # spread (binomial 100, 1/2: 5 sigma)


RESTART = r"""
import json, socket, sys, time
from otus_agent.capture.afpacket import NEW_GROUP, LiveCapture, Ring, RingConfig, fanout_id
from otus_agent.capture.fanout_bpf import sip_affinity
ifname = sys.argv[1]
cfg = RingConfig(block_size=4096, block_count=64, block_timeout_ms=5)   # no wrap in phase 1: its cursor is not 0
# as _run_workers makes them: the parent's sockets, one worker after the other, in a new group the
# kernel names (another process's group is never joined)
sock0 = LiveCapture.open_sockets([ifname], None, cfg, [NEW_GROUP], sip_affinity((5060,)))[0]
group = fanout_id(sock0)
socks = [sock0, LiveCapture.open_sockets([ifname], None, cfg, [group], sip_affinity((5060,)))[0]]
other = LiveCapture.open_sockets([ifname], None, cfg, [NEW_GROUP])[0]   # another capture's group
ids = [group, fanout_id(socks[1]), fanout_id(other)]
other.close()
rings = [Ring(ifname, None, cfg, sock=s) for s in socks]

def drain(members):
    got = []
    for member, r in members:
        for b in r.poll_blocks():
            for i in range(b.n):
                f = bytes(b.packet(i))
                if f[12:14] == b"\x08\x00" and f[23] == 17:
                    got.append([member, int.from_bytes(f[34:36], "big"), int.from_bytes(f[36:38], "big")])
    return got

def phase(members):
    print("ready", flush=True)
    sys.stdin.readline()          # the sender is done
    time.sleep(0.3)
    return drain(members)

first = phase(enumerate(rings))
cursor = rings[1].block
rings[1].mm.close()               # worker 1 dies: its mapping goes, its socket stays (the parent's)
second = phase([(0, rings[0])])
back = Ring(ifname, None, cfg, sock=socks[1])   # the restarted worker 1, on the same socket
start = back.block
second += drain([(1, back)])
drops = [r.read_stats()[1] for r in (rings[0], back)]
print(json.dumps({"first": first, "second": second, "cursor": cursor, "start": start, "drops": drops, "ids": ids}),
      flush=True)
"""

BURSTS = r"""
import socket, sys, time
me, peer = sys.argv[1], sys.argv[2]
for burst in range(int(sys.argv[3])):     # each burst retires a block or more (5 ms timeout)
    for i in range(40):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((me, 20000 + 2 * i))
        s.sendto(b"x" * 40, (peer, 30000 + 2 * i))
        s.close()
    time.sleep(0.03)
"""


def test_a_member_whose_worker_dies_keeps_its_place_and_its_packets():
    """_run_workers keeps its workers' sockets: when one dies its flows do not move to another member
    (closing it would move the group's last member into its place), and what comes until it is back waits
    in its ring; the restarted worker starts at the oldest block retired meanwhile (``Ring._first_block``:
    not block 0, the ring's cursor moved on before) and gets every packet of its flows once."""
    require_root_and()
    with veth_pair("fanrst", subnet=96) as p:
        cap = p.popen(p.ns_b, sys.executable, "-c", RESTART, p.if_b, stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True)
        try:
            for bursts in (5, 3):
                assert cap.stdout.readline().strip() == "ready"
                p.run(p.ns_a, sys.executable, "-c", BURSTS, p.ip_a, p.ip_b, str(bursts), timeout=60)
                cap.stdin.write("go\n")
                cap.stdin.flush()
            out, _ = cap.communicate(timeout=60)
        finally:
            stop(cap)
    assert cap.returncode == 0
    r = json.loads(out.strip().splitlines()[-1])
    owner = {}
    for member, sport, _ in r["first"]:
        assert owner.setdefault(sport, member) == member
    assert len(owner) == 40 and set(owner.values()) == {0, 1}
    assert all(sum(1 for _, s, _ in r["first"] if s == sport) == 5 for sport in owner)
    assert r["cursor"] != 0 and r["start"] == r["cursor"]   # the ring moved on; the newcomer read from there
    # every flow on its member still, each of its packets once, none dropped
    assert sorted((m, s) for m, s, _ in r["second"]) == sorted((owner[s], s) for s in owner for _ in range(3))
    assert r["drops"] == [0, 0]
    group, joined, other = r["ids"]
    assert group == joined and other != group   # one group for the workers, a new one for anybody else


OLD_KERNEL = r"""
import errno, socket, struct, sys
from otus_agent.capture import afpacket as A
refused = []
class Old(socket.socket):
    # a kernel before 4.2 (mocked: this one has the flag): PACKET_FANOUT_FLAG_UNIQUEID is EINVAL there
    def setsockopt(self, level, opt, value, *rest):
        if level == A.SOL_PACKET and opt == A.PACKET_FANOUT and struct.unpack("I", value)[0] >> 16 & 0x2000:
            refused.append(1)
            raise OSError(errno.EINVAL, "Invalid argument")
        return super().setsockopt(level, opt, value, *rest)
A.socket.socket = Old
cfg = A.RingConfig(block_size=4096, block_count=4)
first = A.LiveCapture.open_sockets([sys.argv[1]], None, cfg, [A.NEW_GROUP])[0]
group = A.fanout_id(first)
second = A.LiveCapture.open_sockets([sys.argv[1]], None, cfg, [group])[0]
print(group, A.fanout_id(second), len(refused))
"""


def test_without_kernel_named_groups_a_group_id_of_its_own():
    require_root_and()
    with veth_pair("fanold", subnet=98) as p:
        r = p.run(p.ns_b, sys.executable, "-c", OLD_KERNEL, p.if_b, timeout=30)
    group, joined, refused = map(int, r.stdout.split())
    assert refused == 1 and group == joined and group != 0   # the flag refused once, then an id of its own
