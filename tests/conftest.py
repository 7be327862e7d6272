"""Shared fixtures: the third-party corpus, pure-Python builds of compiled modules."""
from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = pathlib.Path(os.environ.get("OTUS_CORPUS", ROOT.parent / "shared" / "corpus"))
SRC = ROOT / "src" / "otus_agent"


def otus_bin() -> str:
    """The console script of the environment running the tests."""
    import shutil
    return shutil.which("otus", path=os.path.dirname(sys.executable)) or "otus"


def corpus_path(rel: str) -> pathlib.Path:
    p = CORPUS / rel
    if not p.exists():
        pytest.skip(f"third-party corpus not present: {p}")
    return p


def load_pure(relpath: str, name: str) -> types.ModuleType:
    """Import a hot-path module from its .py source, bypassing the compiled build."""
    spec = importlib.util.spec_from_file_location(name, SRC / relpath)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def pure_fastpath() -> types.ModuleType:
    return load_pure("decode/l2l4_cy.py", "otus_pure_fastpath")


@pytest.fixture(scope="session")
def pure_ipfrag() -> types.ModuleType:
    return load_pure("reassembly/ipfrag_cy.py", "otus_pure_ipfrag")


@pytest.fixture(scope="session")
def workload_pcap(tmp_path_factory) -> tuple[pathlib.Path, object]:
    from otus_agent.sim.callgen import WorkloadSpec, generate
    path = tmp_path_factory.mktemp("wl") / "calls.pcap"
    with open(path, "wb") as f:
        wl = generate(f, WorkloadSpec(calls=300, seed=7, large_invite_ratio=0.2, tcp_ratio=0.2,
                                      vlan_ratio=0.2, ipv6_ratio=0.2, rtp_packets=2))
    return path, wl


def pcap_bytes(frames: list[bytes], linktype: int = 1, ts0: int = 1_000_000_000_000_000_000) -> bytes:
    from otus_agent.capture.pcapfile import PcapWriter
    b = io.BytesIO()
    w = PcapWriter(b, linktype, nanosecond=True)
    for i, fr in enumerate(frames):
        w.write(ts0 + i * 1000, fr)
    return b.getvalue()
