"""Flow table rate, offline: packets per CPU-second of FlowStage on a generated workload, beside
``tcpdump -r FILE -w /dev/null`` reading the same file (its CPU time, user + system), ratio printed.

Two figures for Otus: the flow table alone on already-decoded batches (what it adds to the pipeline,
which decodes once for all parsers) and decode + flow table. The workload is the SIP+RTP generator
(few flows, many packets) or, with ``--many-flows``, short TCP/UDP/ICMP conversations.
Usage: python bench/bench_flows.py [--calls N] [--rtp N] [--many-flows N]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import subprocess
import tempfile
import time
from array import array

from _common import workload

from otus_agent.capture.pcapfile import PacketBatch, open_capture
from otus_agent.decode import decoder as D
from otus_agent.flows import FlowStage
from otus_agent.sim import flowgen


def load(path: pathlib.Path) -> list[tuple[PacketBatch, array]]:
    """Batches copied out of the reader (it reuses its arrays), each with its decoded rows."""
    out = []
    dec = D.Decoder(4096, verify_ipv4_checksum=False)
    with open_capture(path) as r:
        for b in r.batches():
            nb = PacketBatch(b.buf, b.n, array("q", b.offs), array("q", b.caplens), array("q", b.wirelens),
                             array("q", b.ts_ns), array("q", b.links))
            out.append((nb, array("q", dec.decode(nb.buf, nb.n, nb.offs, nb.caplens, nb.links)[:nb.n * D.NF])))
    return out


def cpu_best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def tcpdump_cpu(path: pathlib.Path, repeat: int = 3) -> float | None:
    exe = shutil.which("tcpdump") or ("/usr/sbin/tcpdump" if os.path.exists("/usr/sbin/tcpdump") else None)
    if exe is None:
        return None
    best = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([exe, "-r", str(path), "-w", "/dev/null"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        best = min(best, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rtp", type=int, default=100)
    ap.add_argument("--many-flows", type=int, default=0, help="N short conversations instead of SIP+RTP")
    a = ap.parse_args()
    if a.many_flows:
        path = pathlib.Path(tempfile.mkdtemp(prefix="otus-bench-")) / "flows.pcap"
        flowgen.mixed_trace(seed=1, tcp_conns=a.many_flows // 2, udp_flows=a.many_flows // 2).write(str(path))
    else:
        path = workload(a.calls, a.rtp)
    batches = load(path)
    n = sum(b.n for b, _ in batches)

    def flows_only() -> None:
        st = FlowStage()
        for b, rows in batches:
            st.feed_batch(b, rows)

    def decode_and_flows() -> None:
        st = FlowStage()
        for b, _ in batches:
            st.feed_batch(b)

    t_flow = cpu_best(flows_only)
    t_both = cpu_best(decode_and_flows)
    t_dump = tcpdump_cpu(path)
    print(f"workload: {path} ({n} packets, {path.stat().st_size >> 20} MiB), compiled decode: {D.COMPILED}")
    print(f"flow table on decoded batches: {n / t_flow:12,.0f} packets per CPU-second")
    print(f"decode + flow table:           {n / t_both:12,.0f} packets per CPU-second")
    if t_dump:
        print(f"tcpdump -w /dev/null:          {n / t_dump:12,.0f} packets per CPU-second")
        print(f"ratio flow table / tcpdump:    {t_dump / t_flow:12.2f}")
        print(f"ratio decode+flows / tcpdump:  {t_dump / t_both:12.2f}")
    else:
        print("tcpdump not installed: no reference figure")


if __name__ == "__main__":
    main()
