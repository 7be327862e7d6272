"""RTP analysis rate, single core, offline: MediaStage against tshark -z rtp,streams on the same file.

Prints RTP packets per CPU-second for: MediaStage alone (datagrams decoded beforehand), the
whole file path in process (the engine ``otus run`` builds: decode -> SIP -> media lane ->
records as JSON), ``otus run --pcap FILE --parsers
sip,rtp`` end to end (CPU time of the child: start-up, decode, SIP, media, JSON to /dev/null), and
``tshark -q -z rtp,streams`` on the same file in the same run (CPU time of the child), and the
ratios.  The workload is sim/rtpgen.py's (loss, duplicates, reordering,
jitter, RTCP), so the analysis does real work.
Usage: python bench/bench_rtp.py [--calls N] [--packets N]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import time

from _common import scratch_dir

from otus_agent.capture.pcapfile import open_capture
from otus_agent.engine.pipeline import Engine, EngineConfig
from otus_agent.media import rtp_cy
from otus_agent.media.stage import MediaStage
from otus_agent.reassembly.datagrams import DatagramStage
from otus_agent.sim.rtpgen import RtpGenSpec, generate
from otus_agent.sip.framing import SipConfig, SipStage


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def best(fn, repeat: int) -> float:
    return min(cpu(fn) for _ in range(repeat))


def child_cpu(cmd: list[str]) -> float:
    """user+sys CPU seconds of one child process run to the end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--packets", type=int, default=1500, help="RTP packets per direction per call")
    a = ap.parse_args()
    path = scratch_dir() / "rtp.pcap"
    with open(path, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=a.calls, packets=a.packets, seed=42, call_gap_ms=20))
    sip_recs: list[dict] = []
    udp: list = []
    with open_capture(path) as r:
        DatagramStage(sink=lambda d: udp.append(d) if d.proto == 17 else None).run(r.batches())
    st0 = SipStage(SipConfig(), sip_recs.append)
    for d in udp:
        st0.on_datagram(d)
    n_rtp = wl.rtp_packets
    compiled = not rtp_cy.__file__.endswith(".py")
    print(f"workload: {a.calls} calls, {n_rtp} RTP + {wl.rtcp_packets} RTCP packets, {wl.frames} frames, "
          f"rtp_cy compiled={compiled}")

    def stage_only():
        m = MediaStage()
        for rec in sip_recs:
            m.on_sip_record(rec)
        for d in udp:
            m.feed_packet(d.ts_ns, d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.payload)
        m.finish()
        assert m.counters()["rtp_packets"] == n_rtp
    t_stage = best(stage_only, 3)
    print(f"  MediaStage alone            {n_rtp / t_stage:12,.0f} RTP packets/CPU-s")

    def whole():   # the engine as otus run builds it: with the media lane beside SIP
        e = Engine(EngineConfig(parsers=("sip", "rtp")), lambda b: None)
        with open_capture(path) as r:
            e.run(r.batches())
        e.finish()
    t_whole = best(whole, 2)
    print(f"  file -> media records       {n_rtp / t_whole:12,.0f} RTP packets/CPU-s (engine: decode, SIP, lane, JSON)")
    otus = str(pathlib.Path(sys.executable).parent / "otus")
    t_cli = min(child_cpu([otus, "run", "--pcap", str(path), "--parsers", "sip,rtp", "--output", os.devnull])
                for _ in range(2))
    print(f"  otus run --pcap (sip,rtp)   {n_rtp / t_cli:12,.0f} RTP packets/CPU-s (end to end, child CPU)")
    tshark = shutil.which("tshark")
    if tshark is None:
        print("  tshark not installed: no ratio")
        return
    t_ts = child_cpu([tshark, "-r", str(path), "-q", "-z", "rtp,streams"])
    print(f"  tshark -q -z rtp,streams    {n_rtp / t_ts:12,.0f} RTP packets/CPU-s (whole file)")
    print(f"  ratio to tshark (CPU time tshark / Otus): otus run --pcap {t_ts / t_cli:.2f}x, "
          f"in-process file path {t_ts / t_whole:.2f}x, MediaStage alone {t_ts / t_stage:.2f}x")
    print("  goal (issue 16): >= 1,000,000 RTP packets/CPU-s offline")

if __name__ == "__main__":
    main()
