"""Shared helpers for the benchmark scripts (not part of the installed package).

Generated workloads go to ``scratch_dir()`` directories, removed when the bench exits (set
``OTUS_BENCH_KEEP=1`` to keep them; their paths are printed). The one deliberate cache across runs is
``bench_realistic.py``'s (``/tmp/otus-bench-realistic``, keyed by the generator's source: the 100,000-call
PBX workload takes minutes to generate), which ``bench_select``, ``bench_live_realistic`` and
``profile_realistic`` share.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_pure(relpath: str, name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "src" / "otus_agent" / relpath)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def scratch_dir(prefix: str = "otus-bench-") -> pathlib.Path:
    """A new temporary directory, removed at exit unless OTUS_BENCH_KEEP=1."""
    d = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get("OTUS_BENCH_KEEP") == "1":
        atexit.register(print, f"kept: {d}", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, d, True)
    return d


def workload(calls: int, rtp: int, **kw) -> pathlib.Path:
    """The SIP+RTP generator's capture, in a scratch directory (removed at exit)."""
    from otus_agent.sim.callgen import WorkloadSpec, generate
    path = scratch_dir() / "w.pcap"
    with open(path, "wb") as f:
        generate(f, WorkloadSpec(calls=calls, rtp_packets=rtp, seed=42, **kw))
    return path


def best_of(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
