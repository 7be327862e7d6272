"""Issue 15's live figures: the realistic PBX workload replayed over a veth pair at fixed rates.

tcpreplay (pinned to CPU 1) replays the workload of ``bench_realistic`` (``sim/pbx.py``, 100,000
calls by default) three times per rate into one end of a veth pair; ``otus run --interface`` with
one worker pinned to CPU 0 captures on the other end.  Per rate it prints the kernel's received and
dropped packets, and then the knee: the lowest rate with >= 0.1% drops.  Last, two workers (sharing
both cores with the replayer) at tcpreplay's top speed.  Root only; namespaces removed on exit.

tcpreplay needs the frames addressed to the capture side: tcprewrite sets the veth's MACs.

Usage: python bench/bench_live_realistic.py [--rates 100000,150000,200000,250000] [--calls N] [--loops 3]
       [--calls-summaries] [--parsers sip,flow]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live import run_one  # noqa: E402
from bench_realistic import workload  # noqa: E402

from tests.netns import veth_pair  # noqa: E402

KNEE_PCT = 0.1


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_live_realistic: needs root (network namespaces)")
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="100000,150000,200000,250000")
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--loops", type=int, default=3, help="replays of the file per rate")
    ap.add_argument("--calls-summaries", action="store_true", help="run the capture with --calls")
    ap.add_argument("--no-two-workers", action="store_true")
    ap.add_argument("--parsers", default="sip", help="otus run --parsers (flow: the flow table over every "
                    "packet, issue 19's live figure; the default kernel filter widens as they need)")
    a = ap.parse_args()
    otus = str(Path(sys.executable).parent / "otus")
    extra = (("--calls",) if a.calls_summaries else ()) + (("--parsers", a.parsers) if a.parsers != "sip" else ())
    with veth_pair("blr", subnet=83) as p, tempfile.TemporaryDirectory(prefix="otus-live-") as tmp:
        def mac(ns: str, i: str) -> str:
            return p.run(ns, "cat", f"/sys/class/net/{i}/address").stdout.strip()
        # the offline bench's file, its frames rewritten to the veth's MACs (the capture side's host traffic)
        src, info = workload(a.calls)
        pcap = Path(tmp) / "live.pcap"
        subprocess.run(["tcprewrite", f"--enet-smac={mac(p.ns_a, p.if_a)}", f"--enet-dmac={mac(p.ns_b, p.if_b)}",
                        "-i", str(src), "-o", str(pcap)], check=True, timeout=600)
        print(f"workload: {src.name}: {info['packets']:,} packets, {info['sip_messages']:,} SIP messages per "
              f"replay, {a.loops} replays per rate; one worker on CPU 0, tcpreplay on CPU 1; "
              f"otus {' '.join(extra) or 'defaults'}")
        results = []
        for rate in [int(x) for x in a.rates.split(",")]:
            r = run_one(p, "otus", pcap, rate, a.loops, 1, otus, extra)
            results.append(r)
            print(f"  {rate:>7,} pps: sent {r['sent']:,} (tcpreplay {r['replay_pps']:,} pps), kernel received "
                  f"{r.get('received', 0):,}, dropped {r.get('dropped', 0):,} = {r['drop_pct']:.3f}%, "
                  f"SIP {r.get('sip', 0):,}, capture CPU {r['cpu_pct']}%")
            sys.stdout.flush()
        knee = next((r["rate"] for r in results if r["drop_pct"] >= KNEE_PCT), None)
        below = [r["rate"] for r in results if r["drop_pct"] < KNEE_PCT and (knee is None or r["rate"] < knee)]
        print(f"  knee (first rate with >= {KNEE_PCT}% drops): "
              + (f"{knee:,} pps (clean up to {max(below):,} pps)" if knee and below else
                 f"{knee:,} pps (already at the lowest rate)" if knee else "none up to the highest rate"))
        if not a.no_two_workers:
            r = run_one(p, "otus", pcap, None, a.loops, 2, otus, extra)
            print(f"  two workers, tcpreplay top speed: {r['replay_pps']:,} pps, sent {r['sent']:,}, kernel received "
                  f"{r.get('received', 0):,}, dropped {r.get('dropped', 0):,} = {r['drop_pct']:.3f}%, "
                  f"SIP {r.get('sip', 0):,}")
            print("  " + json.dumps(r))


if __name__ == "__main__":
    main()
