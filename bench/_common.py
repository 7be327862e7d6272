"""Shared helpers for the benchmark scripts (not part of the installed package)."""
from __future__ import annotations

import importlib.util
import pathlib
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


def workload(calls: int, rtp: int, **kw) -> pathlib.Path:
    from otus_agent.sim.callgen import WorkloadSpec, generate
    path = pathlib.Path(tempfile.mkdtemp(prefix="otus-bench-")) / "w.pcap"
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
