"""Real media peers (issue 16): Otus's live media records against the wire's truth and tshark's analysis.

1. Two headless baresip instances (ausine source, aubridge player: no sound device) call each other
   across namespace r, which impairs the a->b direction with 2% loss and 10 ms +- 5 ms delay:
   ``tc qdisc netem`` on r's veth towards b when the kernel has sch_netem, otherwise (this test's own
   VM kernel has no netem) a userspace bridge in r with the same parameters (uniform delay, independent
   loss) -- the test says which.  tcpdump on a's veth counts what a sent, tcpdump on b's what arrived:
   Otus (``otus run --interface <b> --parsers sip,rtp``, live in b) reports the loss within +-0.5
   percentage points of what was dropped, and a jitter consistent with tshark's on b's capture.
2. SIPp (``-sn uac_pcap``: plays its g711a pcap, then an RFC 4733 DTMF digit) calls SIPp's own UAS:
   Otus's media record for each stream agrees with ``tshark -q -z rtp,streams`` on the same capture.

Every process is started by the test and ended by its handle; every loop is bounded in count and time;
the namespaces go also when a test fails.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Iterator

import pytest

from otus_agent.sim import packet_sockets

from ..agent.media.helpers import TSHARK, final_by_key, tshark_streams
from ..conftest import otus_bin
from ..netns import require_root_and, sh, stop, veth_pair

pytestmark = pytest.mark.netns

LOSS, DELAY_MS, JITTER_MS = 0.02, 10.0, 5.0
CALL_S = 12                      # 600 RTP packets per direction at 20 ms
# live capture and tcpdump read the same packets on the same veth, each with its own kernel timestamp;
# the offline replay of tcpdump's file must match tshark exactly (counts) and within 1% / 0.01 ms (times)
LIVE_JITTER_TOL = (0.25, 0.05)   # ms, relative

# a userspace netem for kernels without sch_netem: frames from L go to R after a uniform delay (or are
# lost), frames from R go to L at once.  Bounded: `duration` seconds, at most 64 frames per wakeup and
# 4096 frames in flight (more are dropped and counted).  UDP/IPv4 checksums are recomputed: frames read
# from a veth may carry a partial (offloaded) checksum.
BRIDGE = r"""
import heapq, json, random, select, signal, socket, struct, sys, time
left, right = sys.argv[1], sys.argv[2]
duration, loss, delay, jitter, seed = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
rng = random.Random(seed)
def sock(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((name, 0))
    s.setblocking(False)
    return s
def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def fix(f):
    if len(f) >= 42 and f[12:14] == b"\x08\x00" and f[23] == 17:
        ihl = (f[14] & 15) * 4
        u = 14 + ihl
        ulen = struct.unpack("!H", f[u + 4:u + 6])[0]
        seg = f[u:u + 6] + b"\0\0" + f[u + 8:u + ulen]
        c = csum(f[26:34] + struct.pack("!BBH", 0, 17, ulen) + seg) or 0xFFFF
        f = f[:u + 6] + struct.pack("!H", c) + f[u + 8:]
    return f
L, R = sock(left), sock(right)
stats = {"forwarded": 0, "dropped": 0, "overflow": 0, "returned": 0}
pending, n = [], 0
stop = [False]
signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
end = time.monotonic() + duration
while not stop[0] and time.monotonic() < end:
    now = time.monotonic()
    due = pending[0][0] if pending else end
    ready, _, _ = select.select([L, R], [], [], max(0.0, min(due, end) - now))
    for s in ready:
        for _ in range(64):
            try:
                frame, addr = s.recvfrom(65535)
            except BlockingIOError:
                break
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if s is R:
                L.send(fix(frame))
                stats["returned"] += 1
            elif rng.random() < loss:
                stats["dropped"] += 1
            elif len(pending) >= 4096:
                stats["overflow"] += 1
            else:
                n += 1
                heapq.heappush(pending, (time.monotonic() + rng.uniform(delay - jitter, delay + jitter) / 1000, n, frame))
    now = time.monotonic()
    while pending and pending[0][0] <= now:
        R.send(fix(heapq.heappop(pending)[2]))
        stats["forwarded"] += 1
print(json.dumps(stats), flush=True)
"""

BARESIP_CONFIG = """poll_method epoll
sip_listen {ip}:5060
audio_player aubridge,nil
audio_source ausine,440
audio_alert aubridge,nil
ausrc_srate 48000
ausrc_channels 2
rtp_ports 20000-20100
module_path /usr/lib/baresip/modules
module g711.so
module ausine.so
module aubridge.so
module_app account.so
module_app menu.so
"""


@dataclass
class Chain:
    """a -- r -- b: a and b share a subnet, r forwards between its two veth ends."""
    ns_a: str
    ns_r: str
    ns_b: str
    if_a: str
    if_ra: str
    if_rb: str
    if_b: str
    ip_a: str
    ip_b: str

    def popen(self, ns: str, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw)


@contextlib.contextmanager
def chain(tag: str, subnet: int) -> Iterator[Chain]:
    pid = os.getpid() % 250
    c = Chain(*(f"otus-{tag}-{pid}-{x}" for x in "arb"), *(f"ot{tag[:4]}{pid}{x}" for x in ("a", "ra", "rb", "b")),
              f"10.{subnet}.{pid}.1", f"10.{subnet}.{pid}.2")
    try:
        for ns in (c.ns_a, c.ns_r, c.ns_b):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            for k in ("all", "default"):   # no IPv6 autoconfiguration chatter on the wire
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1", check=False)
        sh("ip", "link", "add", c.if_a, "netns", c.ns_a, "type", "veth", "peer", "name", c.if_ra, "netns", c.ns_r)
        sh("ip", "link", "add", c.if_b, "netns", c.ns_b, "type", "veth", "peer", "name", c.if_rb, "netns", c.ns_r)
        for ns, ifname, ip in ((c.ns_a, c.if_a, c.ip_a), (c.ns_b, c.if_b, c.ip_b)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        for ifname in (c.if_ra, c.if_rb):
            sh("ip", "-n", c.ns_r, "link", "set", ifname, "promisc", "on", "up")
        yield c
    finally:
        for ns in (c.ns_a, c.ns_r, c.ns_b):
            sh("ip", "netns", "del", ns, check=False)


def netem_works(c: Chain) -> bool:
    """Kernel bridge in r plus netem on r's port towards b, when this kernel has sch_netem."""
    r = sh("ip", "netns", "exec", c.ns_r, "tc", "qdisc", "add", "dev", c.if_rb, "root", "netem",
           "loss", f"{LOSS * 100:g}%", "delay", f"{DELAY_MS:g}ms", f"{JITTER_MS:g}ms", check=False)
    if r.returncode != 0:
        return False
    sh("ip", "-n", c.ns_r, "link", "add", "br0", "type", "bridge")
    for ifname in (c.if_ra, c.if_rb):
        sh("ip", "-n", c.ns_r, "link", "set", ifname, "master", "br0")
    sh("ip", "-n", c.ns_r, "link", "set", "br0", "up")
    return True


def wait_sockets(ns: str, ifname: str, want: int, procs: list[subprocess.Popen], timeout: float = 15) -> None:
    """Until `want` captures (tcpdump's, Otus's, the bridge's) listen on `ifname` in ns, bound and running,
    or fail at `timeout` or when one of `procs` ends."""
    def alive() -> str | None:
        dead = [p.args for p in procs if p.poll() is not None]
        return f"ended: {dead}" if dead else None
    try:
        packet_sockets.wait(ns, ifname, want, timeout, settle=0.3, alive=alive)
    except packet_sockets.NotListening as e:
        raise AssertionError(f"{ns}: {e}") from None


def tcpdump(ns_run, ns: str, ifname: str, path: pathlib.Path) -> subprocess.Popen:
    return ns_run(ns, "tcpdump", "-Z", "root", "--immediate-mode", "-i", ifname, "-n", "-U", "-w", str(path),
                  "udp", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def otus_live(ns_run, ns: str, ifname: str, out: pathlib.Path) -> subprocess.Popen:
    return ns_run(ns, otus_bin(), "run", "--interface", ifname, "--parsers", "sip,rtp", "--duration", "50",
                  "--output", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rtp_per_ssrc(pcap: pathlib.Path) -> dict[tuple, int]:
    """(src, sport, dst, dport, ssrc) -> RTP packets, as tshark decodes them (RTP on the SDP's ports)."""
    r = subprocess.run([TSHARK, "-n", "-r", str(pcap), "-Y", "rtp", "-T", "fields", "-e", "ip.src", "-e", "udp.srcport",
                        "-e", "ip.dst", "-e", "udp.dstport", "-e", "rtp.ssrc"], capture_output=True, text=True,
                       timeout=60, check=True)
    out: dict[tuple, int] = {}
    for line in r.stdout.splitlines():
        src, sport, dst, dport, ssrc = line.split("\t")
        k = (src, int(sport), dst, int(dport), int(ssrc, 16))
        out[k] = out.get(k, 0) + 1
    return out


def otus_offline(pcap: pathlib.Path) -> list[dict]:
    r = subprocess.run([otus_bin(), "run", "--pcap", str(pcap), "--parsers", "sip,rtp"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if '"type":"media"' in x]


def media_records(path: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if '"type":"media"' in x]


def wait_final_media(path: pathlib.Path, n: int, procs: list[subprocess.Popen], timeout: float = 10) -> None:
    """Until Otus has written `n` final media records (a BYE ends its streams after a 2 s linger)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.args for p in procs if p.poll() is not None]
        if path.exists() and sum(r["final"] for r in media_records(path)) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path}: fewer than {n} final media records after {timeout} s")


def invite_call_ids(path: pathlib.Path) -> set[str]:
    recs = [json.loads(x) for x in path.read_text().splitlines() if '"type":"sip"' in x]
    return {r["call_id"] for r in recs if r.get("method") == "INVITE"}


def close(a: float, b: float, abs_tol: float = 0.01, rel: float = 0.01) -> bool:
    return abs(a - b) <= max(abs_tol, rel * abs(b)) + 0.0005   # + half of tshark's last printed digit


def assert_matches_tshark(records: list[dict], rows: list[dict], abs_tol: float = 0.01, rel: float = 0.01) -> None:
    got = final_by_key(records)
    for t in rows:
        k = (t["src_ip"], t["src_port"], t["dst_ip"], t["dst_port"], t["ssrc"])
        g = got.get(k)
        assert g is not None, f"tshark has a stream Otus did not report: {k} (Otus: {sorted(got)})"
        assert (g["packets"], g["lost"]) == (t["packets"], t["lost"]), (k, g, t)
        for f in ("max_delta_ms", "mean_jitter_ms", "max_jitter_ms"):
            assert close(g[f], t[f], abs_tol, rel), (k, f, g[f], t[f])


def test_two_baresips_through_an_impaired_link(tmp_path):
    require_root_and("baresip", "tcpdump", "tc")
    if TSHARK is None:
        pytest.skip("needs tshark (scripts/bootstrap installs it)")
    if not pathlib.Path("/usr/lib/baresip/modules/ausine.so").exists():
        pytest.skip("needs baresip's ausine and aubridge modules (Debian baresip-core)")
    cap_a, cap_b, out = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "otus.jsonl"
    with chain("bsp", subnet=91) as c:
        for who, ip in (("a", c.ip_a), ("b", c.ip_b)):
            d = tmp_path / who
            d.mkdir()
            (d / "config").write_text(BARESIP_CONFIG.format(ip=ip))
            (d / "accounts").write_text(f"<sip:{who}@{ip}>;regint=0;answermode=auto;audio_codecs=PCMU\n")
            (d / "contacts").write_text("")
        procs: list[subprocess.Popen] = []
        try:
            kernel = netem_works(c)
            if not kernel:
                procs.append(c.popen(c.ns_r, "python3", "-c", BRIDGE, c.if_ra, c.if_rb, "50", str(LOSS), str(DELAY_MS),
                                     str(JITTER_MS), str(os.getpid()), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True))
                wait_sockets(c.ns_r, c.if_ra, 1, procs)
                wait_sockets(c.ns_r, c.if_rb, 1, procs)
            procs += [tcpdump(c.popen, c.ns_a, c.if_a, cap_a), tcpdump(c.popen, c.ns_b, c.if_b, cap_b)]
            wait_sockets(c.ns_a, c.if_a, 1, procs)
            wait_sockets(c.ns_b, c.if_b, 1, procs)
            procs.append(otus_live(c.popen, c.ns_b, c.if_b, out))
            wait_sockets(c.ns_b, c.if_b, 2, procs)
            callee = c.popen(c.ns_b, "baresip", "-f", str(tmp_path / "b"), "-t", str(CALL_S + 15),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(callee)
            time.sleep(0.5)   # b listens
            # a dials, talks for CALL_S seconds, hangs up (BYE) as it quits
            caller = c.popen(c.ns_a, "baresip", "-f", str(tmp_path / "a"), "-t", str(CALL_S), "-e",
                             f"/dial sip:b@{c.ip_b}", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                log, _ = caller.communicate(timeout=CALL_S + 10)
            finally:
                stop(caller)
            assert "Call established" in log, log[-2000:]
            wait_final_media(out, 2, procs)
        finally:
            for p in reversed(procs):
                stop(p)
        bridge = None if kernel else json.loads(procs[0].stdout.read() or "null")
    at_a, at_b = rtp_per_ssrc(cap_a), rtp_per_ssrc(cap_b)   # RTP packets per stream on each end's veth
    up = [k for k in at_a if k[0] == c.ip_a]
    down = [k for k in at_b if k[0] == c.ip_b]
    assert len(up) == len(down) == 1, (at_a, at_b)
    up_k, down_k = up[0], down[0]
    sent = at_a[up_k]                                               # a's tap sees what a sent, before r
    truth_pct = 100 * (sent - at_b.get(up_k, 0)) / sent
    assert sent >= 40 * CALL_S and 0 < truth_pct < 6, (at_a, at_b, bridge)
    assert at_a.get(down_k) == at_b[down_k]                         # b -> a is not impaired

    live = final_by_key(media_records(out))
    assert {up_k, down_k} <= set(live), (sorted(live), up_k, down_k)
    u = live[up_k]
    otus_pct = 100 * u["lost"] / (u["packets"] + u["lost"])
    assert abs(otus_pct - truth_pct) <= 0.5, (otus_pct, truth_pct, u, "netem" if kernel else bridge)
    assert live[down_k]["lost"] == 0
    (call_id,) = invite_call_ids(out)
    for k in (up_k, down_k):
        assert live[k]["call_id"] == call_id and live[k]["codec"].upper().startswith("PCMU"), live[k]
        assert live[k]["end_reason"] == "bye", live[k]

    rows = [t for t in tshark_streams(cap_b) if (t["src_ip"], t["src_port"], t["dst_ip"], t["dst_port"], t["ssrc"])
            in (up_k, down_k)]
    assert len(rows) == 2, rows
    assert_matches_tshark(otus_offline(cap_b), rows)                # the same file: tshark's own tolerances
    for t in rows:                                                  # live: the same packets, Otus's own clock
        g = live[(t["src_ip"], t["src_port"], t["dst_ip"], t["dst_port"], t["ssrc"])]
        assert (g["packets"], g["lost"]) == (t["packets"], t["lost"]), (g, t)
        for f in ("mean_jitter_ms", "max_jitter_ms"):
            assert close(g[f], t[f], *LIVE_JITTER_TOL), (f, g[f], t[f], "netem" if kernel else "bridge")
    t_up = next(t for t in rows if t["src_ip"] == c.ip_a)
    print(f"impairment={'netem' if kernel else 'userspace bridge'} sent={sent} truth_loss={truth_pct:.2f}% "
          f"otus_loss={otus_pct:.2f}% a->b mean/max jitter otus={u['mean_jitter_ms']:.3f}/{u['max_jitter_ms']:.3f} ms "
          f"tshark={t_up['mean_jitter_ms']}/{t_up['max_jitter_ms']} ms; b->a otus="
          f"{live[down_k]['mean_jitter_ms']:.3f} ms")


def test_sipp_pcap_play_against_sipp_uas(tmp_path):
    require_root_and("sipp", "tcpdump")
    if TSHARK is None:
        pytest.skip("needs tshark (scripts/bootstrap installs it)")
    media = pathlib.Path("/usr/share/sip-tester")
    if not (media / "g711a.pcap").exists():
        pytest.skip("needs SIPp's media captures (Debian sip-tester)")
    (tmp_path / "pcap").mkdir()   # uac_pcap plays pcap/g711a.pcap and pcap/dtmf_2833_1.pcap, relative to its cwd
    for name in ("g711a.pcap", "dtmf_2833_1.pcap"):
        shutil.copy(media / name, tmp_path / "pcap" / name)
    cap, out = tmp_path / "b.pcap", tmp_path / "otus.jsonl"
    with veth_pair("spp", subnet=92) as p:
        procs: list[subprocess.Popen] = []
        try:
            procs.append(tcpdump(p.popen, p.ns_b, p.if_b, cap))
            wait_sockets(p.ns_b, p.if_b, 1, procs)
            procs.append(otus_live(p.popen, p.ns_b, p.if_b, out))
            wait_sockets(p.ns_b, p.if_b, 2, procs)
            uas = p.popen(p.ns_b, "sipp", "-sn", "uas", "-i", p.ip_b, "-p", "5060", "-m", "1", "-nostdin",
                          "-timeout", "30s", cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(uas)
            time.sleep(0.5)
            uac = p.popen(p.ns_a, "sipp", "-sn", "uac_pcap", "-i", p.ip_a, "-p", "5070", "-m", "1", "-nostdin",
                          "-timeout", "30s", f"{p.ip_b}:5060", cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
            try:
                log, _ = uac.communicate(timeout=35)
            finally:
                stop(uac)
            assert uac.returncode == 0, log[-2000:]
            uas.wait(10)
            assert uas.returncode == 0
            wait_final_media(out, 2, procs[:2])   # tcpdump and Otus still run; the UAS has ended
        finally:
            for q in reversed(procs):
                stop(q)
    rows = tshark_streams(cap)
    g711 = [t for t in rows if t["payload"] == "g711A"]
    assert len(g711) == 1 and g711[0]["packets"] == 236, rows        # every packet of SIPp's g711a.pcap
    live = media_records(out)
    assert_matches_tshark(live, g711, *LIVE_JITTER_TOL)
    assert_matches_tshark(otus_offline(cap), rows)
    rec = final_by_key(live)[(g711[0]["src_ip"], g711[0]["src_port"], g711[0]["dst_ip"], g711[0]["dst_port"],
                             g711[0]["ssrc"])]
    assert rec["codec"].upper().startswith("PCMA") and rec["payload_type"] == 8
    assert {r["call_id"] for r in live} == invite_call_ids(out) and rec["end_reason"] == "bye"
    print(f"sipp g711a: otus packets={rec['packets']} lost={rec['lost']} mean/max jitter={rec['mean_jitter_ms']:.3f}/"
          f"{rec['max_jitter_ms']:.3f} ms, tshark {g711[0]['mean_jitter_ms']}/{g711[0]['max_jitter_ms']} ms")
