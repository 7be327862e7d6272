"""Start-up time of the `otus` console script, wall clock, best of N (issue 15: <= 0.2 s for a one-packet file).

Prints the best and median wall time of `otus run --pcap one-packet.pcap` (one SIP OPTIONS over UDP,
records to /dev/null) and `otus --help`, each run as a new process, as a user runs them: with bytecode
cached (an installed package has its .pyc; here they go to a temporary PYTHONPYCACHEPREFIX, after one
warm-up run) and without (PYTHONDONTWRITEBYTECODE=1: every module compiled at each start).
On a shared, busy machine wall time mostly measures waiting for a CPU: ``--realtime`` (root) runs each
command under SCHED_FIFO so it does not queue behind other processes (a few tenths of a second in all).
Usage: python bench/bench_startup.py [--repeat N] [--realtime]
       python -X importtime -m otus_agent.cli.main run --pcap FILE   (where the import time goes)
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from otus_agent.capture.pcapfile import PcapWriter
from otus_agent.sim import packets as P

TARGET_S = 0.2
OPTIONS = (b"OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
           b"From: <sip:alice@192.0.2.1>;tag=1\r\nTo: <sip:bob@192.0.2.2>\r\nCall-ID: startup-1\r\n"
           b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def one_packet_pcap(path: str) -> None:
    a, b = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
    frame = P.ethernet(b"\x02" * 6, b"\x04" * 6, 0x0800, P.ipv4(a, b, 17, P.udp(a, b, 5060, 5060, OPTIONS)))
    with open(path, "wb") as f:
        PcapWriter(f, 1).write(1_700_000_000_000_000_000, frame)


def _realtime() -> None:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))


def wall(cmd: list[str], repeat: int, env: dict[str, str], realtime: bool = False) -> tuple[list[float], list[float]]:
    """Wall and CPU (user+sys) seconds of each run: on a busy machine the CPU figure still means something."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, env=env,
                           preexec_fn=_realtime if realtime else None)
        walls.append(time.perf_counter() - t)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return walls, cpus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--realtime", action="store_true", help="run the commands under SCHED_FIFO (needs root)")
    a = ap.parse_args()
    otus = shutil.which("otus", path=os.path.dirname(sys.executable)) or "otus"
    with tempfile.TemporaryDirectory(prefix="otus-bench-") as d:
        pcap = os.path.join(d, "one-packet.pcap")
        one_packet_pcap(pcap)
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        envs = {"bytecode cached": {**base, "PYTHONPYCACHEPREFIX": os.path.join(d, "pycache")},
                "no bytecode cache": {**base, "PYTHONDONTWRITEBYTECODE": "1"}}
        for mode, env in envs.items():
            print(f"{mode}:")
            for label, cmd in (("otus run --pcap one-packet.pcap", [otus, "run", "--pcap", pcap]),
                               ("otus --help", [otus, "--help"]),
                               ("python -c pass (the interpreter)", [sys.executable, "-c", "pass"])):
                wall(cmd, 1, env)   # warm-up: fills the bytecode cache, the page cache
                t, cpu = wall(cmd, a.repeat, env, a.realtime)
                print(f"  {label:34s} wall best {min(t):.3f} s  median {statistics.median(t):.3f} s   "
                      f"cpu best {min(cpu):.3f} s   ({a.repeat} runs)")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a busy machine stretches wall times"
          f"{'; commands ran under SCHED_FIFO' if a.realtime else ''})")
    print(f"  target: otus run --pcap on a one-packet file <= {TARGET_S} s wall")


if __name__ == "__main__":
    main()
