"""Live capture on ``any`` (cooked AF_PACKET, raw-IP link type) with the default filter, in namespaces.

The shipped examples say ``interfaces: [any]`` and no filter: libpcap cannot
compile ``vlan`` for that link type, so the default filter must come in its
raw-IP form.  Both entry points are run for real: ``otus run -i any`` on a
replayed workload (VLAN tags, fragments, TCP, IPv6 included) and ``otus agent``
on a task file as the operator renders it.  Traffic is bounded (one replay,
ten datagrams) and stays between the test's two namespaces, removed afterwards.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from otus_agent.sim import packet_sockets

from ..conftest import otus_bin
from ..netns import stop, wait_for_packet_sockets
from .test_live_capture import _check_records, _finish, _replay, _workload, pair  # noqa: F401

pytestmark = pytest.mark.netns


def test_any_with_the_default_filter_keeps_every_message(pair, tmp_path):
    pcap, wl = _workload(pair, tmp_path, calls=60, vlan_ratio=0.3)
    out = tmp_path / "records.jsonl"
    proc = pair.popen(pair.ns_b, otus_bin(), "run", "-i", "any", "--output", str(out),
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_packet_sockets(pair, pair.ns_b, ifname="any")
        _replay(pair, pcap)
        time.sleep(0.5)
    finally:
        summary = _finish(proc)
    assert summary["interfaces"] == ["any"] and "vlan" in summary["filter"]   # shown in its Ethernet form
    sip = _check_records(out, wl)
    assert {r["transport"] for r in sip} == {"udp", "tcp"}
    assert summary["decode"]["raw_ip"] > 0 and summary["decode"].get("ethernet", 0) == 0


def _sip(port: int, i: int, host: str) -> bytes:
    return (f"OPTIONS sip:uas@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5999;branch=z9hG4bKany{i}\r\n"
            f"From: <sip:uac@{host}>;tag=a{i}\r\nTo: <sip:uas@{host}>\r\nCall-ID: any-{i}@test\r\n"
            f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def test_otus_agent_on_any_with_the_default_filter(pair, tmp_path):
    """The task as the operator renders the shipped example: interfaces [any], no bpf_filter."""
    out = tmp_path / "agent.jsonl"
    task = tmp_path / "task"
    task.mkdir()
    (task / "task.yaml").write_text(yaml.safe_dump({"id": "any-task", "interfaces": ["any"],
                                                    "reporters": [{"type": "file", "path": str(out)}]}))
    log = open(tmp_path / "agent.log", "wb")
    proc = pair.popen(pair.ns_b, otus_bin(), "agent", "--task-file", str(task / "task.yaml"),
                      "--state-dir", str(tmp_path / "state"), "--poll-interval", "0.2", "--metrics-listen", "",
                      stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_packet_sockets(pair, pair.ns_b, ifname="any")
        msgs = [_sip(5060, i, pair.ip_b) for i in range(10)]
        code = ("import socket,sys,json\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                f"for m in json.loads(sys.argv[1]): s.sendto(m.encode(), ({pair.ip_b!r}, 5060))\n")
        pair.run(pair.ns_a, "python3", "-c", code, json.dumps([m.decode() for m in msgs]))
        deadline = time.monotonic() + 20
        recs: list[dict] = []
        while time.monotonic() < deadline and len(recs) < 10:
            time.sleep(0.2)
            recs = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        assert proc.poll() is None, (tmp_path / "agent.log").read_text()[-2000:]
        assert sorted(r["call_id"] for r in recs) == sorted(f"any-{i}@test" for i in range(10)), \
            (tmp_path / "agent.log").read_text()[-2000:]
        assert "invalid filter" not in (tmp_path / "agent.log").read_text()
    finally:
        stop(proc, timeout=15)
        log.close()
    assert proc.returncode == 0, (tmp_path / "agent.log").read_text()[-2000:]


TUN_WRITER = r"""
import fcntl, os, struct, sys
from otus_agent.sim.packets import ipv4, udp
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH22s", sys.argv[1].encode(), 0x0001 | 0x1000, b""))  # TUNSETIFF: TUN, NO_PI
src, dst = bytes([10, 66, 0, 2]), bytes([10, 66, 0, 1])
for i in range(int(sys.argv[2])):
    sip = (f"OPTIONS sip:uas@10.66.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.66.0.2:5999;branch=z9hG4bKtun{i}\r\n"
           f"From: <sip:uac@10.66.0.2>;tag=t{i}\r\nTo: <sip:uas@10.66.0.1>\r\nCall-ID: tun-{i}@test\r\n"
           f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
    os.write(fd, ipv4(src, dst, 17, udp(src, dst, 5999, 5060, sip)))
    os.write(fd, ipv4(src, dst, 17, udp(src, dst, 5999, 53, b"not sip")))   # filtered out
os.close(fd)
"""


def test_a_tun_device_is_read_cooked_with_the_default_filter(tmp_path):
    """A device without Ethernet framing (tun, like WireGuard or IP-in-IP) is read as raw IP."""
    import os
    import sys

    from ..netns import require_root_and, sh
    require_root_and()
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("needs /dev/net/tun")
    ns, dev = f"otus-tun-{os.getpid() % 250}", f"ottun{os.getpid() % 250}"
    out = tmp_path / "records.jsonl"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "tuntap", "add", "dev", dev, "mode", "tun")
        sh("ip", "-n", ns, "addr", "add", "10.66.0.1/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, otus_bin(), "run", "-i", dev, "--output", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            packet_sockets.wait(ns, dev, settle=0.2, alive=lambda: None if proc.poll() is None else "otus ended")
            sh("ip", "netns", "exec", ns, sys.executable, "-c", TUN_WRITER, dev, "8")
            deadline = time.time() + 10
            while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 8):
                time.sleep(0.1)
        finally:
            summary = _finish(proc)
    finally:
        sh("ip", "netns", "del", ns, check=False)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["call_id"] for r in recs) == sorted(f"tun-{i}@test" for i in range(8))
    assert summary["decode"]["raw_ip"] == 8 and summary["decode"].get("ethernet", 0) == 0   # DNS filtered out
