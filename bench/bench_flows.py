"""Flow table rate, offline: packets per CPU-second of FlowStage on a generated workload, beside
``tcpdump -r FILE -w /dev/null`` reading the same file (its CPU time, user + system), ratio printed.

Two figures for Otus: the flow table alone on already-decoded batches (what it adds to the pipeline,
which decodes once for all parsers) and decode + flow table. The workload is the SIP+RTP generator
(few flows, many packets) or, with ``--many-flows``, short TCP/UDP/ICMP conversations.
``--records`` gives the stage a sink, as the pipeline does: end and interval records are built (without
a sink the stage builds none). ``--baseline CHECKOUT`` (e.g. /work/main) measures that checkout's build
(its .venv and src) in the same run, each repeat alternating the two builds in fresh processes, and with
``--records`` checks that both wrote the same records (a digest of them, in order). ``--quiet-gc`` runs
each measurement after ``engine.pipeline.quiet_gc()``, as ``otus run --pcap`` and the fanout workers do
(start-up frozen, young collections 100x rarer); without it the interpreter's default collector runs.
The generated capture is removed at exit (``--keep`` keeps it and prints its path; ``--pcap`` reuses one).
Usage: python bench/bench_flows.py [--calls N] [--rtp N] [--many-flows N] [--records] [--repeat N]
       [--baseline CHECKOUT] [--pcap FILE] [--keep] [--quiet-gc]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array

HERE = pathlib.Path(__file__).resolve().parent


def load(path: pathlib.Path) -> list:
    """Batches copied out of the reader (it reuses its arrays), each with its decoded rows."""
    from otus_agent.capture.pcapfile import PacketBatch, open_capture
    from otus_agent.decode import decoder as D
    out = []
    dec = D.Decoder(4096, verify_ipv4_checksum=False)
    with open_capture(path) as r:
        for b in r.batches():
            nb = PacketBatch(b.buf, b.n, array("q", b.offs), array("q", b.caplens), array("q", b.wirelens),
                             array("q", b.ts_ns), array("q", b.links))
            out.append((nb, array("q", dec.decode(nb.buf, nb.n, nb.offs, nb.caplens, nb.links)[:nb.n * D.NF])))
    return out


def measure(path: pathlib.Path, records: bool, quiet: bool = False) -> dict:
    """One CPU-time measurement of both figures with the otus_agent on sys.path (this process's build)."""
    from otus_agent.flows import FlowStage, walk_cy
    batches = load(path)
    if quiet:
        from otus_agent.engine.pipeline import quiet_gc
        quiet_gc()
    out: dict = {"n": sum(b.n for b, _ in batches), "compiled": not walk_cy.__file__.endswith(".py")}
    recs: list[dict] = []
    for name, decoded in (("flows", True), ("both", False)):
        recs.clear()
        st = FlowStage(sink=recs.append if records else None)
        t = time.process_time()
        for b, rows in batches:
            st.feed_batch(b, rows if decoded else None)
        st.flush()
        out[name] = time.process_time() - t
    out["records"] = len(recs)
    out["digest"] = hashlib.sha256(json.dumps(recs).encode()).hexdigest()[:16] if records else None
    return out


def child(path: pathlib.Path, records: bool, checkout: pathlib.Path | None, quiet: bool = False) -> dict:
    """``measure`` in a fresh process of this build or of ``checkout``'s (its interpreter and sources)."""
    if checkout is None:
        py, env = sys.executable, dict(os.environ)
    else:   # no bytecode written into the other checkout
        py = str(checkout / ".venv" / "bin" / "python")
        env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = ([py, str(HERE / "bench_flows.py"), "--child", "--pcap", str(path)] + (["--records"] if records else [])
           + (["--quiet-gc"] if quiet else []))
    return json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=600).stdout)


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


def rates(n: int, runs: list[dict], key: str) -> str:
    cpu = [r[key] for r in runs]
    return f"best {n / min(cpu):11,.0f}  median {n / statistics.median(cpu):11,.0f} packets per CPU-second"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rtp", type=int, default=100)
    ap.add_argument("--many-flows", type=int, default=0, help="N short conversations instead of SIP+RTP")
    ap.add_argument("--records", action="store_true", help="a sink on the stage: records built, as in the pipeline")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", metavar="CHECKOUT", type=pathlib.Path,
                    help="another checkout whose build (CHECKOUT/.venv, CHECKOUT/src) is measured alternately")
    ap.add_argument("--pcap", type=pathlib.Path, help="measure this capture instead of generating one")
    ap.add_argument("--keep", action="store_true", help="keep the generated capture (its path is printed)")
    ap.add_argument("--quiet-gc", action="store_true", help="the collector as otus run --pcap sets it (quiet_gc)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one measurement, as JSON
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.pcap, a.records, a.quiet_gc)))
        return
    tmp = None
    if a.pcap:
        path = a.pcap
    else:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="otus-bench-flows-"))
        path = tmp / ("flows.pcap" if a.many_flows else "w.pcap")
        if a.many_flows:
            from otus_agent.sim import flowgen
            flowgen.mixed_trace(seed=1, tcp_conns=a.many_flows // 2, udp_flows=a.many_flows // 2).write(str(path))
        else:
            from otus_agent.sim.callgen import WorkloadSpec, generate
            with open(path, "wb") as f:
                generate(f, WorkloadSpec(calls=a.calls, rtp_packets=a.rtp, seed=42))
    try:
        builds = {"this build": None} if a.baseline is None else {f"before ({a.baseline})": a.baseline,
                                                                  "after (this build)": None}
        runs: dict[str, list[dict]] = {k: [] for k in builds}
        for _ in range(a.repeat):   # alternating, so the builds share the machine's load
            for k, checkout in builds.items():
                runs[k].append(child(path, a.records, checkout, a.quiet_gc))
        n = runs["this build" if a.baseline is None else "after (this build)"][0]["n"]
        print(f"workload: {path} ({n} packets, {path.stat().st_size >> 20} MiB), "
              f"records: {'sink' if a.records else 'none'}, {a.repeat} repeats, "
              f"collector: {'quiet_gc' if a.quiet_gc else 'default'}")
        for k, rs in runs.items():
            print(f"{k} (compiled walk: {rs[0]['compiled']}):")
            print(f"  flow table on decoded batches: {rates(n, rs, 'flows')}")
            print(f"  decode + flow table:           {rates(n, rs, 'both')}")
            if a.records:
                print(f"  records: {rs[0]['records']}, digest {rs[0]['digest']}")
        if a.baseline is not None:
            (b, bs), (_, ns) = runs.items()
            for key, label in (("flows", "flow table"), ("both", "decode + flows")):
                print(f"speed-up {label}: best {min(r[key] for r in bs) / min(r[key] for r in ns):.2f}x, "
                      f"median {statistics.median(r[key] for r in bs) / statistics.median(r[key] for r in ns):.2f}x")
            if a.records:
                same = bs[0]["digest"] == ns[0]["digest"] and bs[0]["records"] == ns[0]["records"]
                print(f"records identical to the baseline's: {same}")
        t_dump = tcpdump_cpu(path)
        if t_dump:
            print(f"tcpdump -w /dev/null:          {n / t_dump:12,.0f} packets per CPU-second (best of 3)")
        else:
            print("tcpdump not installed: no reference figure")
        print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        if tmp is not None:
            if a.keep:
                print(f"kept: {path}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
