"""RTP analysis rate, single core, offline: ``otus run --pcap FILE --parsers sip,rtp`` against tshark.

The goal (issue 16) is >= 1,000,000 RTP packets per CPU-second end to end: the whole process's CPU
(user + sys of the child, start-up included) for ``otus run --pcap FILE --parsers sip,rtp --output
/dev/null`` on an RTP-heavy file.  Printed per run of it, with the best and the median:

- end to end: RTP packets / child CPU (start-up included: the goal's figure);
- start-up: the child CPU of the same command on a pcap with no packets (imports, the engine), so the
  file is big enough when start-up is a small share (default: 1,000 calls, ~3 million RTP packets);
- without start-up: RTP packets / (child CPU - start-up);
- ``tshark -q -z rtp,streams`` on the same file in the same run (child CPU) and the ratio.

Runs alternate Otus and tshark, so load from other work on the machine falls on both.  Optional:
``--in-process`` (the engine ``otus run`` builds, in this process: no start-up) and ``--stage-alone``
(MediaStage.feed_packet over datagrams decoded beforehand: memory for every datagram at once).
The workload is sim/rtpgen.py's (loss, duplicates, reordering, jitter, RTCP, sequence wrap), so the
analysis does real work; ``--keep FILE`` writes it there (and reuses it when it exists).
Usage: python bench/bench_rtp.py [--calls N] [--packets N] [--repeat N] [--keep FILE] [--in-process]
       [--stage-alone]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from otus_agent.capture.pcapfile import PcapWriter, open_capture
from otus_agent.engine.pipeline import Engine, EngineConfig
from otus_agent.media import rtp_cy
from otus_agent.media.stage import MediaStage
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.sim.rtpgen import RtpGenSpec, generate
from otus_agent.sip.framing import SipConfig, SipStage

GOAL = 1_000_000


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def child_cpu(cmd: list[str]) -> float:
    """user+sys CPU seconds of one child process run to the end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def count_rtp(path: pathlib.Path) -> tuple[int, int]:
    """(RTP packets, frames) the media stage accounts in the file: the numerator of every figure."""
    e = Engine(EngineConfig(parsers=("sip", "rtp")), lambda b: None)
    with open_capture(path) as r:
        e.run(r.batches())
    e.finish()
    s = e.summary()
    return s["rtp"]["rtp_packets"], s["packets"]


def fig(n: int, seconds: list[float]) -> str:
    return (f"best {n / min(seconds):12,.0f}  median {n / statistics.median(seconds):12,.0f} RTP packets/CPU-s"
            f"  (CPU s: {', '.join(f'{s:.2f}' for s in seconds)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--packets", type=int, default=1500, help="RTP packets per direction per call")
    ap.add_argument("--repeat", type=int, default=3, help="runs of otus (and of tshark), alternating")
    ap.add_argument("--keep", type=pathlib.Path, help="write the workload here (reused when it exists)")
    ap.add_argument("--in-process", action="store_true", help="also the engine in this process (no start-up)")
    ap.add_argument("--stage-alone", action="store_true", help="also MediaStage over pre-decoded datagrams")
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="otus-bench-rtp-"))
    path = a.keep or tmp / "rtp.pcap"
    if not path.exists():
        with open(path, "wb") as f:
            generate(f, RtpGenSpec(calls=a.calls, packets=a.packets, seed=42, call_gap_ms=20))
    empty = tmp / "empty.pcap"
    with open(empty, "wb") as f:
        PcapWriter(f, 1)
    n_rtp, frames = count_rtp(path)
    compiled = not rtp_cy.__file__.endswith(".py")
    print(f"workload: {path} ({path.stat().st_size / 1e6:,.0f} MB): {n_rtp:,} RTP packets of {frames:,} frames "
          f"(SIP, RTCP the rest), rtp_cy compiled={compiled}; load before: {os.getloadavg()[0]:.2f}")
    otus = str(pathlib.Path(sys.executable).parent / "otus")
    cmd = [otus, "run", "--pcap", str(path), "--parsers", "sip,rtp", "--output", os.devnull]
    start_cmd = [otus, "run", "--pcap", str(empty), "--parsers", "sip,rtp", "--output", os.devnull]
    tshark = shutil.which("tshark")
    t_cli: list[float] = []
    t_start: list[float] = []
    t_ts: list[float] = []
    for _ in range(a.repeat):
        t_start.append(child_cpu(start_cmd))
        t_cli.append(child_cpu(cmd))
        if tshark is not None:
            t_ts.append(child_cpu([tshark, "-r", str(path), "-q", "-z", "rtp,streams"]))
    startup = min(t_start)
    print(f"  otus run --pcap (sip,rtp), end to end     {fig(n_rtp, t_cli)}")
    print(f"  start-up (the same on an empty pcap)      {startup:.3f} CPU s best, "
          f"{statistics.median(t_start):.3f} median = {startup / min(t_cli):.0%} of the best run")
    print(f"  otus run, start-up taken out              {fig(n_rtp, [t - startup for t in t_cli])}")
    if t_ts:
        print(f"  tshark -q -z rtp,streams                  {fig(n_rtp, t_ts)}")
        print(f"  ratio (CPU tshark / otus run, end to end): best {min(t_ts) / min(t_cli):.2f}x, "
              f"median {statistics.median(t_ts) / statistics.median(t_cli):.2f}x")
    else:
        print("  tshark not installed: no ratio")
    if a.in_process:
        def whole():   # the engine as otus run builds it: with the media lane beside SIP
            e = Engine(EngineConfig(parsers=("sip", "rtp")), lambda b: None)
            with open_capture(path) as r:
                e.run(r.batches())
            e.finish()
        print(f"  in process (engine, no start-up)          {fig(n_rtp, [cpu(whole) for _ in range(2)])}")
    if a.stage_alone:
        sip_recs: list[dict] = []
        udp: list = []
        with open_capture(path) as r:
            DatagramStage(sink=lambda d: udp.append(d) if d.proto == 17 else None).run(r.batches())
        st0 = SipStage(SipConfig(), sip_recs.append)
        for d in udp:
            st0.on_datagram(d)

        def stage_only():
            m = MediaStage()
            for rec in sip_recs:
                m.on_sip_record(rec)
            for d in udp:
                m.feed_packet(d.ts_ns, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload)
            m.finish()
            assert m.counters()["rtp_packets"] == n_rtp
        print(f"  MediaStage.feed_packet alone              {fig(n_rtp, [cpu(stage_only) for _ in range(2)])}")
    ok = n_rtp / min(t_cli) >= GOAL
    print(f"  goal (issue 16): >= {GOAL:,} RTP packets/CPU-s end to end: {'met' if ok else 'NOT met'} "
          f"(best run); load after: {os.getloadavg()[0]:.2f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
