"""Live capture across a veth pair: replayed calls, real SIP peers, fanout, errors.

Every test builds its own two namespaces, sends only to their addresses, bounds
its traffic (a fixed pcap replayed once, a few sipsak requests) and removes the
namespaces afterwards, also on failure.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.sim.callgen import WorkloadSpec, generate

from ..conftest import otus_bin
from ..netns import kill_a_worker, require_root_and, sh, stop, veth_pair, wait_for_packet_sockets

pytestmark = pytest.mark.netns


def _mac(p, ns: str, ifname: str) -> bytes:
    out = p.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()
    return bytes.fromhex(out.replace(":", ""))


def _start_otus(p, tmp_path, *args: str) -> tuple[subprocess.Popen, object]:
    out = tmp_path / "records.jsonl"
    proc = p.popen(p.ns_b, otus_bin(), "run", "-i", p.if_b, "--output", str(out), *args,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, out


def _finish(proc: subprocess.Popen) -> dict:
    proc.send_signal(2)  # SIGINT: stop cleanly, print the summary
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise
    assert proc.returncode == 0, err.decode()
    return json.loads(err.decode().strip().splitlines()[-1])


def _workload(p, tmp_path, calls: int = 150, vlan_ratio: float = 0.0):
    path = tmp_path / "calls.pcap"
    with open(path, "wb") as f:
        wl = generate(f, WorkloadSpec(calls=calls, seed=11, large_invite_ratio=0.2, tcp_ratio=0.2, vlan_ratio=vlan_ratio,
                                      ipv6_ratio=0.2, ipv4_pair=(p.ip_a, p.ip_b),
                                      ipv6_pair=(p.ip6_a, p.ip6_b),
                                      mac_pair=(_mac(p, p.ns_a, p.if_a), _mac(p, p.ns_b, p.if_b))))
    return path, wl


def _replay(p, pcap, pps: int = 3000) -> None:
    r = p.run(p.ns_a, "tcpreplay", "-q", "-i", p.if_a, f"--pps={pps}", str(pcap), check=False, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def _capture_replay(p, tmp_path, pcap, *args: str, sockets: int = 1, pps: int = 3000) -> tuple[dict, object]:
    """Start Otus on the pair's b end, replay ``pcap`` from the a end, stop Otus: (summary, records file)."""
    proc, out = _start_otus(p, tmp_path, *args)
    try:
        wait_for_packet_sockets(p, p.ns_b, count=sockets)
        _replay(p, pcap, pps=pps)
        time.sleep(0.5)
    finally:
        summary = _finish(proc)
    return summary, out


def _check_records(out, wl) -> list[dict]:
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    sip = [r for r in recs if r["type"] == "sip"]
    assert not [r for r in sip if "error" in r], [r["error"] for r in sip if "error" in r][:5]
    got = Counter((r["call_id"], r["cseq_num"], r["method"] or str(r["status_code"])) for r in sip)
    assert max(got.values()) == 1  # no duplicates
    expected = Counter()
    for c in wl.calls:
        # the generator's order: INVITE 100 180 200 ACK (CSeq 1), BYE 200 (CSeq 2)
        for idx, first in enumerate(c.messages):
            parts = first.split(" ")
            what = parts[1] if first.startswith("SIP/2.0") else parts[0]
            expected[(c.call_id, 2 if idx >= 5 else 1, what)] += 1
    assert got == expected
    return sip


@pytest.fixture
def pair():
    require_root_and("tcpreplay")
    with veth_pair("live", subnet=79) as p:
        p.ip6_a, p.ip6_b = f"fd79::{os.getpid() % 250}:1", f"fd79::{os.getpid() % 250}:2"
        for ns, ifn, ip in ((p.ns_a, p.if_a, p.ip6_a), (p.ns_b, p.if_b, p.ip6_b)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/64", "dev", ifn, "nodad")
        yield p


def test_replayed_calls_one_worker(pair, tmp_path):
    """UDP (with IPv4/IPv6 fragments), TCP segments, IPv6, VLAN tags: every message once."""
    pcap, wl = _workload(pair, tmp_path, vlan_ratio=0.3)
    summary, out = _capture_replay(pair, tmp_path, pcap)
    sip = _check_records(out, wl)
    assert {r["transport"] for r in sip} == {"udp", "tcp"}
    assert summary["reassembly"]["reassembled"] > 0 and summary["kernel"]["kernel_drops"] == 0
    assert summary["decode"]["vlan"] > 0  # tags seen (restored when the kernel moved them out)
    assert summary["kernel"]["kernel_packets"] >= wl.packets


def test_replayed_calls_two_fanout_workers(pair, tmp_path):
    pcap, wl = _workload(pair, tmp_path, calls=200)
    summary, out = _capture_replay(pair, tmp_path, pcap, "--workers", "2", sockets=2, pps=4000)
    _check_records(out, wl)
    assert summary["workers"] == 2 and len(summary["per_worker_packets"]) == 2
    assert all(n > 0 for n in summary["per_worker_packets"])  # the flows were shared


def test_two_workers_relayed_to_stdout(pair, tmp_path):
    """Without --output the workers' records come through the parent to stdout: all of them, once."""
    pcap, wl = _workload(pair, tmp_path, calls=120)
    out = tmp_path / "stdout.jsonl"
    with open(out, "wb") as f:
        proc = pair.popen(pair.ns_b, otus_bin(), "run", "-i", pair.if_b, "--workers", "2", stdout=f,
                          stderr=subprocess.PIPE)
        try:
            wait_for_packet_sockets(pair, pair.ns_b, count=2)
            _replay(pair, pcap, pps=4000)
            time.sleep(0.5)
        finally:
            summary = _finish(proc)
    _check_records(out, wl)
    assert summary["workers"] == 2


def test_two_workers_on_two_interfaces(pair, tmp_path):
    """Each interface is a fanout group of its own (the kernel's groups are per device): both workers on
    the veth and on lo, every replayed message once, SIP sent over lo captured too."""
    pcap, wl = _workload(pair, tmp_path, calls=60)
    out = tmp_path / "records.jsonl"
    proc = pair.popen(pair.ns_b, otus_bin(), "run", "-i", pair.if_b, "-i", "lo", "--workers", "2", "--output",
                      str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_packet_sockets(pair, pair.ns_b, count=2, proc=proc)
        wait_for_packet_sockets(pair, pair.ns_b, count=2, ifname="lo", proc=proc)
        _replay(pair, pcap)
        pair.run(pair.ns_b, "python3", "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                 "s.sendto(b'OPTIONS sip:lo@127.0.0.1 SIP/2.0\\r\\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKlo\\r\\n"
                 "From: <sip:a@127.0.0.1>;tag=1\\r\\nTo: <sip:lo@127.0.0.1>\\r\\nCall-ID: over-lo\\r\\n"
                 "CSeq: 1 OPTIONS\\r\\nContent-Length: 0\\r\\n\\r\\n', ('127.0.0.1', 5060))")
        time.sleep(0.5)
    finally:
        summary = _finish(proc)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["call_id"] for r in recs if r["type"] == "sip" and r["call_id"] == "over-lo"] == ["over-lo"]
    with open(tmp_path / "veth.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs if r.get("call_id") != "over-lo")
    _check_records(tmp_path / "veth.jsonl", wl)
    assert summary["workers"] == 2 and summary["kernel"]["kernel_drops"] == 0


def test_dead_worker_is_restarted(pair, tmp_path):
    pcap, wl = _workload(pair, tmp_path, calls=80)
    proc, out = _start_otus(pair, tmp_path, "--workers", "2")
    try:
        wait_for_packet_sockets(pair, pair.ns_b, count=2)
        kill_a_worker(proc)
        wait_for_packet_sockets(pair, pair.ns_b, count=2)
        _replay(pair, pcap)
        time.sleep(0.5)
    finally:
        summary = _finish(proc)
    assert summary["worker_restarts"] == 1
    _check_records(out, wl)


def test_pcap_rotation_is_readable(pair, tmp_path):
    pcap, wl = _workload(pair, tmp_path, calls=60)
    base = tmp_path / "cap" / "sip.pcap"
    base.parent.mkdir()
    summary, _ = _capture_replay(pair, tmp_path, pcap, "--write-pcap", str(base), "--pcap-max-bytes", "65536",
                                 "--pcap-max-files", "3")
    files = sorted(base.parent.glob("sip_*.pcap"))
    assert len(files) == 3 and summary["pcap_out"]["rotations"] >= 3 and summary["pcap_out"]["deleted"] >= 1
    for f in files:
        with open_capture(f) as r:
            assert sum(b.n for b in r.batches()) > 0
        assert subprocess.run(["tcpdump", "-nr", str(f)], capture_output=True).returncode == 0


def test_live_sipsak_kamailio(tmp_path):
    require_root_and("kamailio", "sipsak")
    from .test_real_sip_peers import KAMAILIO_CFG
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG)
    (tmp_path / "run").mkdir()
    with veth_pair("lsip", subnet=80) as p:
        kam = p.popen(p.ns_b, "kamailio", "-f", str(cfg), "-DD", "-E", "-l", f"udp:{p.ip_b}:5060",
                      "-l", f"tcp:{p.ip_b}:5060", "-Y", str(tmp_path / "run"),
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc, out = _start_otus(p, tmp_path)
        try:
            wait_for_packet_sockets(p, p.ns_b)
            time.sleep(0.5)
            sent = []
            for args in [["-s", f"sip:t@{p.ip_b}"]] * 2 + [["-E", "tcp", "-s", f"sip:t@{p.ip_b}"]]:
                r = p.run(p.ns_a, "sipsak", "-vvv", "-H", p.ip_a, *args, check=False, timeout=20)
                assert r.returncode == 0, r.stdout
                sent += [x.split(":", 1)[1].strip() for x in r.stdout.splitlines() if x.startswith("Call-ID:")]
            time.sleep(0.5)
        finally:
            summary = _finish(proc)
            stop(kam)
            for pid in sh("ip", "netns", "pids", p.ns_b, check=False).stdout.split():
                sh("kill", pid, check=False)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert set(sent) == {r["call_id"] for r in recs}
    assert Counter(r["transport"] for r in recs) == {"udp": 4, "tcp": 2}
    assert summary["sip"]["sip_messages"] == 6


def _otus_error(*args: str, user: str | None = None) -> str:
    cmd = [otus_bin(), "run", *args, "--duration", "1"]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otus: error:") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_clear_errors():
    require_root_and("setpriv")
    assert "syntax error" in _otus_error("-i", "lo", "--filter", "udp prot 5060")
    assert "no such interface: nosuchif0" in _otus_error("-i", "nosuchif0")
    msg = _otus_error("-i", "lo", user="65534")
    assert "CAP_NET_RAW" in msg and "run as root" in msg
    assert "need --interface" in _otus_error("--pcap", "/dev/null", "--workers", "2")
