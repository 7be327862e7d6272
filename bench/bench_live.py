"""Live capture rate on a veth pair: the highest replay rate Otus takes with < 0.1% kernel drops.

Two namespaces joined by a veth pair; tcpreplay (pinned to CPU 1) replays a
generated SIP workload (UDP, TCP, fragments, IPv6) at fixed packet rates into
one end; the capture runs on the other end pinned to CPU 0.  For each rate it
prints the kernel's received/dropped counts and the capture's CPU use, for
Otus (full decoding + SIP parsing, records to /dev/null) and for
``tcpdump -w /dev/null`` as the reference.  Root only; cleans up after itself.

Usage: python bench/bench_live.py [--rates 20000,50000,...] [--calls N] [--workers N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otus_agent.sim import packet_sockets  # noqa: E402
from otus_agent.sim.callgen import WorkloadSpec, generate  # noqa: E402
from tests.netns import stop, veth_pair  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """user+sys CPU of a process and its children that have been waited for."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in parts[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    total = cpu_seconds(pid)
    try:
        for c in open(f"/proc/{pid}/task/{pid}/children").read().split():
            total += tree_cpu(int(c))
    except FileNotFoundError:
        pass
    return total


def wait_socket(p, ns: str, count: int) -> None:
    packet_sockets.wait(ns, p.if_b if ns == p.ns_b else p.if_a, count, timeout=15, settle=0.3)


def run_one(p, tool: str, pcap: Path, rate: int | None, loops: int, workers: int, otus: str,
            otus_args: tuple[str, ...] = (), tcpdump_filter: str | None = None, pps_multi: int = 1) -> dict:
    """One replay of ``pcap`` ``loops`` times at ``rate`` pps (None: tcpreplay's top speed) into one capture;
    ``tcpdump_filter``: tcpdump's filter instead of the SIP one ("" for none, every packet); ``pps_multi``:
    tcpreplay sends that many packets per timing tick (its --pps-multi: high rates need fewer ticks)."""
    if tool == "otus":
        cmd = [otus, "run", "-i", p.if_b, "--output", "/dev/null", "--workers", str(workers), *otus_args]
        if workers == 1:  # one capture core, the replayer on the other; N workers share both
            cmd = ["taskset", "-c", "0", *cmd]
    else:
        bpf = ("(udp or tcp) and port 5060 or (ip[6:2] & 0x3fff != 0) or (ip6 and ip6[6] == 44)"
               if tcpdump_filter is None else tcpdump_filter)
        cmd = ["taskset", "-c", "0", "tcpdump", "-i", p.if_b, "-w", "/dev/null", "-n", "-B", "32768",
               *([bpf] if bpf else [])]
    proc = p.popen(p.ns_b, *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_socket(p, p.ns_b, workers if tool == "otus" else 1)
        c0 = tree_cpu(proc.pid)
        t0 = time.monotonic()
        speed = ["--topspeed"] if rate is None else [f"--pps={rate}"] + ([f"--pps-multi={pps_multi}"]
                                                                        if pps_multi > 1 else [])
        r = p.run(p.ns_a, "taskset", "-c", "1", "tcpreplay", "-q", "-i", p.if_a, *speed,
                  f"--loop={loops}", "--preload-pcap", str(pcap), check=False, timeout=600)
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        c1 = tree_cpu(proc.pid)
    finally:
        proc.send_signal(2)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            stop(proc)
            err = b""
    sent, replay_pps = 0, 0.0
    for line in (r.stdout + r.stderr).splitlines():
        if "Actual:" in line and "packets" in line:
            sent = int(line.split("Actual:")[1].split("packets")[0].strip())
        if "Rated:" in line and "pps" in line:
            replay_pps = float(line.rsplit(",", 1)[1].split("pps")[0].strip())
    res = {"tool": tool, "rate": rate or "top", "sent": sent, "seconds": round(elapsed, 2),
           "replay_pps": round(replay_pps),
           "cpu_pct": round(100 * (c1 - c0) / max(elapsed, 1e-6), 1)}
    text = err.decode(errors="replace")
    if tool == "otus":
        s = json.loads(text.strip().splitlines()[-1])
        k = s["kernel"]
        sip = s.get("sip", {})          # absent when the task runs no sip parser (--parsers flow)
        res.update(received=k["kernel_packets"], dropped=k["kernel_drops"], sip=sip.get("sip_messages", 0),
                   malformed=sip.get("malformed_messages", 0), rtp=s.get("rtp", {}).get("rtp_packets", 0))
    else:
        for line in text.splitlines():
            if "packets received by filter" in line:
                res["received"] = int(line.split()[0])
            if "dropped by kernel" in line:
                res["dropped"] = int(line.split()[0])
    # PACKET_STATISTICS' tp_packets (Otus' kernel_packets, tcpdump's "received by filter") already counts the
    # dropped packets: the share dropped is dropped / received
    res["drop_pct"] = round(100 * res.get("dropped", 0) / max(res.get("received", 0), 1), 3)
    return res


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_live: needs root (network namespaces)")
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="20000,50000,100000,200000,400000")
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=5.0, help="approximate replay time per rate")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tools", default="otus,tcpdump")
    a = ap.parse_args()
    otus = str(Path(sys.executable).parent / "otus")
    with veth_pair("bench", subnet=81) as p, tempfile.TemporaryDirectory() as tmp:
        def mac(ns, i):
            return bytes.fromhex(p.run(ns, "cat", f"/sys/class/net/{i}/address").stdout.strip().replace(":", ""))
        pcap = Path(tmp) / "w.pcap"
        with open(pcap, "wb") as f:
            wl = generate(f, WorkloadSpec(calls=a.calls, seed=5, large_invite_ratio=0.1, tcp_ratio=0.1,
                                          ipv6_ratio=0.0, ipv4_pair=(p.ip_a, p.ip_b),
                                          mac_pair=(mac(p.ns_a, p.if_a), mac(p.ns_b, p.if_b))))
        print(f"workload: {wl.packets} packets, {wl.sip_messages} SIP messages per loop; workers={a.workers}")
        for rate in [int(x) for x in a.rates.split(",")]:
            loops = max(1, int(rate * a.seconds / wl.packets))
            for tool in a.tools.split(","):
                r = run_one(p, tool, pcap, rate, loops, a.workers, otus)
                print("  " + json.dumps(r))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
