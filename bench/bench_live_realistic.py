"""Issue 15's live figures: the realistic PBX workload replayed over a veth pair at fixed rates.

tcpreplay (pinned to CPU 1) replays the workload of ``bench_realistic`` (``sim/pbx.py``, 100,000
calls by default) three times per rate into one end of a veth pair; ``otus run --interface`` with
one worker pinned to CPU 0 captures on the other end.  Per rate it prints the kernel's received and
dropped packets, and then the knee: the lowest rate with >= 0.1% drops.  Last, two workers (sharing
both cores with the replayer) at tcpreplay's top speed.  Root only; namespaces removed on exit.

``--mix rtp`` (issue 16's live figure): the workload is ``sim/rtpgen.py``'s instead, SIP calls with
their RTP/RTCP streams (PCMU 20 ms, loss, duplicates, reordering), run with ``--parsers sip,rtp``.
``--anchor tcpdump`` (issue 19): at each rate the same replay also goes to ``tcpdump -w /dev/null``
pinned to CPU 0, with Otus's own kernel filter for the parsers (none for ``flow``), so drops and
CPU compare on the same packets.

tcpreplay needs the frames addressed to the capture side: tcprewrite sets the veth's MACs.  At high
rates one packet per timing tick is more ticks than tcpreplay keeps up with: ``--pps-multi`` (default
``auto``: enough packets per tick for at most 20,000 ticks a second) sends several per tick, and each
rate's line gives the rate tcpreplay itself reports (a rate it fell short of by over 5% is marked).
``--netns-tag`` names the namespaces (otus-TAG-PID-a/b), so parallel runs never collide.
``--mirror``: the frames go to another MAC than the capture side's, as a SPAN port's copies do: the
capture side's IP stack drops them at once (no UDP socket lookup, no ICMP port unreachable per
packet), which on a veth pair runs on the sender's core, so tcpreplay reaches higher rates.

Usage: python bench/bench_live_realistic.py [--rates 100000,150000,200000,250000] [--calls N] [--loops 3]
       [--calls-summaries] [--parsers sip,flow] [--mix pbx|rtp] [--rtp-packets N] [--anchor tcpdump]
       [--pps-multi auto|N] [--netns-tag TAG] [--mirror]
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

from otus_agent.capture.bpf import DEFAULT_SIP_PORTS, default_filter  # noqa: E402
from otus_agent.engine.parsers import capture_clauses  # noqa: E402
from tests.netns import veth_pair  # noqa: E402

KNEE_PCT = 0.1
MIRROR_MAC = "02:00:00:00:16:99"   # --mirror: no interface has it
MAX_TICKS = 20_000   # tcpreplay timing ticks per second --pps-multi auto aims at


def pps_multi(choice: str, rate: int) -> int:
    """Packets per tcpreplay tick for ``rate``: ``auto`` keeps the ticks at or under MAX_TICKS a second."""
    return max(1, -(-rate // MAX_TICKS)) if choice == "auto" else int(choice)


def rtp_workload(calls: int, packets: int, tmp: Path) -> tuple[Path, dict]:
    """SIP calls and their RTP/RTCP (sim/rtpgen.py, impairments on), counts in bench_realistic's shape."""
    from otus_agent.sim.rtpgen import RtpGenSpec, generate
    path = tmp / "rtp-src.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=calls, packets=packets, seed=16, call_gap_ms=20))
    return path, {"packets": wl.frames, "sip_messages": calls * 5, "rtp": wl.rtp_packets, "rtcp": wl.rtcp_packets}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_live_realistic: needs root (network namespaces)")
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="100000,150000,200000,250000")
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--loops", type=int, default=3, help="replays of the file per rate")
    ap.add_argument("--calls-summaries", action="store_true", help="run the capture with --calls")
    ap.add_argument("--no-two-workers", action="store_true")
    ap.add_argument("--parsers", default=None, help="otus run --parsers (flow: the flow table over every "
                    "packet, issue 19's live figure; the default kernel filter widens as they need); "
                    "default sip, sip,rtp with --mix rtp")
    ap.add_argument("--mix", choices=("pbx", "rtp"), default="pbx",
                    help="pbx: bench_realistic's PBX signalling; rtp: SIP calls with their RTP streams")
    ap.add_argument("--rtp-packets", type=int, default=1500, help="--mix rtp: RTP packets per direction per call")
    ap.add_argument("--anchor", choices=("none", "tcpdump"), default="none",
                    help="tcpdump -w /dev/null with the same kernel filter on the same replay, per rate")
    ap.add_argument("--pps-multi", default="auto", help="tcpreplay --pps-multi: packets per timing tick "
                    f"(auto: at most {MAX_TICKS:,} ticks a second)")
    ap.add_argument("--netns-tag", default="blr", help="namespaces otus-TAG-PID-a/b (unique per run)")
    ap.add_argument("--mirror", action="store_true", help="frames to another MAC (a SPAN port's copies): "
                    "the capture side's IP stack drops them before any socket lookup")
    a = ap.parse_args()
    if a.parsers is None:
        a.parsers = "sip,rtp" if a.mix == "rtp" else "sip"
    otus = str(Path(sys.executable).parent / "otus")
    extra = (("--calls",) if a.calls_summaries else ()) + (("--parsers", a.parsers) if a.parsers != "sip" else ())
    clauses = capture_clauses(tuple(a.parsers.split(",")), {})
    bpf = str(default_filter(DEFAULT_SIP_PORTS, clauses))   # Otus's own filter; "" (every packet) for flow
    with veth_pair(a.netns_tag, subnet=84) as p, tempfile.TemporaryDirectory(prefix="otus-live-") as tmp:
        def mac(ns: str, i: str) -> str:
            return p.run(ns, "cat", f"/sys/class/net/{i}/address").stdout.strip()
        # the offline bench's file, its frames rewritten to the veth's MACs (the capture side's host traffic)
        src, info = rtp_workload(a.calls, a.rtp_packets, Path(tmp)) if a.mix == "rtp" else workload(a.calls)
        pcap = Path(tmp) / "live.pcap"
        dmac = MIRROR_MAC if a.mirror else mac(p.ns_b, p.if_b)
        subprocess.run(["tcprewrite", f"--enet-smac={mac(p.ns_a, p.if_a)}", f"--enet-dmac={dmac}",
                        "-i", str(src), "-o", str(pcap)], check=True, timeout=600)
        print(f"workload: {src.name}: {info['packets']:,} packets, {info['sip_messages']:,} SIP messages per "
              f"replay, {a.loops} replays per rate; one worker on CPU 0, tcpreplay on CPU 1; "
              f"otus {' '.join(extra) or 'defaults'}" + (f"; RTP {info['rtp']:,}, RTCP {info['rtcp']:,} per replay"
                                                          if a.mix == "rtp" else ""))
        results = []
        for rate in [int(x) for x in a.rates.split(",")]:
            multi = pps_multi(a.pps_multi, rate)
            r = run_one(p, "otus", pcap, rate, a.loops, 1, otus, extra, pps_multi=multi)
            results.append(r)
            short = " SHORT of the rate" if r["replay_pps"] < 0.95 * rate else ""
            print(f"  {rate:>7,} pps: sent {r['sent']:,} (tcpreplay {r['replay_pps']:,} pps{short}, "
                  f"--pps-multi {multi}), kernel received "
                  f"{r.get('received', 0):,}, dropped {r.get('dropped', 0):,} = {r['drop_pct']:.3f}%, "
                  f"SIP {r.get('sip', 0):,}, RTP {r.get('rtp', 0):,}, capture CPU {r['cpu_pct']}%")
            if a.anchor == "tcpdump":
                t = run_one(p, "tcpdump", pcap, rate, a.loops, 1, otus, tcpdump_filter=bpf, pps_multi=multi)
                r["tcpdump"] = t
                print(f"  {'':>7}      tcpdump -w /dev/null (same filter): sent {t['sent']:,} (tcpreplay "
                      f"{t['replay_pps']:,} pps), kernel received "
                      f"{t.get('received', 0):,}, dropped {t.get('dropped', 0):,} = {t['drop_pct']:.3f}%, "
                      f"capture CPU {t['cpu_pct']}%")
            sys.stdout.flush()
        knee = next((r["rate"] for r in results if r["drop_pct"] >= KNEE_PCT), None)
        below = [r["rate"] for r in results if r["drop_pct"] < KNEE_PCT and (knee is None or r["rate"] < knee)]
        print(f"  knee (first rate with >= {KNEE_PCT}% drops): "
              + (f"{knee:,} pps (clean up to {max(below):,} pps)" if knee and below else
                 f"{knee:,} pps (already at the lowest rate)" if knee else "none up to the highest rate"))
        if a.anchor == "tcpdump":
            t_knee = next((r["rate"] for r in results if r["tcpdump"]["drop_pct"] >= KNEE_PCT), None)
            print("  tcpdump's knee on the same replays: " + (f"{t_knee:,} pps" if t_knee else
                                                             "none up to the highest rate"))
        if not a.no_two_workers:
            r = run_one(p, "otus", pcap, None, a.loops, 2, otus, extra)
            print(f"  two workers, tcpreplay top speed: {r['replay_pps']:,} pps, sent {r['sent']:,}, kernel received "
                  f"{r.get('received', 0):,}, dropped {r.get('dropped', 0):,} = {r['drop_pct']:.3f}%, "
                  f"SIP {r.get('sip', 0):,}")
            print("  " + json.dumps(r))


if __name__ == "__main__":
    main()
