"""Records before and after the issue-14 redesign are byte-identical.

``tests/data/records-before-redesign.json`` holds the SHA-256 of the records
``otus run --pcap`` wrote for every corpus capture and for generated workloads,
plain and with ``--calls``, taken on the tree before the redesign
(``python -m tests.test_redesign_parity --write``). Kept until the redesign
has landed; then the parity tests of the compiled and pure builds carry on.

Fields added since (issue 18) are taken out before hashing, not pinned by regenerated goldens:
``fingerprint`` is on every SIP record; each record is parsed, the key removed and the record
serialised again as the writer does (``orjson.dumps``, which keeps the key order), so every other
byte must still be what it was.  ``capture``, ``src_k8s`` and ``dst_k8s`` need no such care: they
are absent outside a cluster, and this test checks it (a record carrying one would not match).
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
GOLDEN = HERE / "data" / "records-before-redesign.json"
CORPUS = HERE.parent.parent / "shared" / "corpus" / "pcap"
WORKLOADS = {
    "mixed": dict(calls=400, seed=11, large_invite_ratio=0.2, tcp_ratio=0.2, vlan_ratio=0.2, ipv6_ratio=0.2,
                  rtp_packets=2),
    "udp": dict(calls=300, seed=5, rtp_packets=0),
}
MODES = {"plain": [], "calls": ["--calls"]}


def _digest(pcap: pathlib.Path, extra: list[str]) -> str:
    """The records of one ``otus run`` (in this process: 68 start-ups would dominate the test)."""
    import contextlib
    import io

    from otus_agent.cli.main import main
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "records.jsonl"
        with contextlib.redirect_stderr(io.StringIO()):
            rc = main(["run", "--pcap", str(pcap), "--output", str(out), *extra])
        assert rc == 0, f"otus run {pcap} {extra} exited {rc}"
        return hashlib.sha256(_without_new_keys(out.read_bytes())).hexdigest()


NEW_KEYS = ("fingerprint",)   # on every SIP record since issue 18
# in the SIP record's sdp (and each of its media) when the body has them, since issue 16
SDP_KEYS = ("direction", "rtcp_mux", "rtcp")


def _without_new_keys(data: bytes) -> bytes:
    """The records with NEW_KEYS removed, re-serialised as the writer does (orjson, one line each)."""
    import orjson
    out = []
    for line in data.splitlines():
        rec = orjson.loads(line)
        if rec.get("type") == "sip":
            assert all(k in rec for k in NEW_KEYS), f"a SIP record without {NEW_KEYS}: {line[:200]!r}"
            for k in NEW_KEYS:
                del rec[k]
            sdp = rec.get("sdp")
            if isinstance(sdp, dict):
                for part in (sdp, *sdp.get("media", ())):
                    for k in SDP_KEYS:
                        part.pop(k, None)
        out.append(orjson.dumps(rec) + b"\n")
    return b"".join(out)


def _cases(tmp: pathlib.Path) -> dict[str, tuple[pathlib.Path, list[str]]]:
    from otus_agent.sim.callgen import WorkloadSpec, generate
    cases = {}
    for name, kw in WORKLOADS.items():
        path = tmp / f"{name}.pcap"
        with open(path, "wb") as f:
            generate(f, WorkloadSpec(**kw))
        for mode, extra in MODES.items():
            cases[f"workload/{name}/{mode}"] = (path, extra)
    if CORPUS.is_dir():
        for p in sorted(CORPUS.rglob("*.pcap*")):
            if "expected" in p.parts:
                continue
            for mode, extra in MODES.items():
                cases[f"corpus/{p.relative_to(CORPUS)}/{mode}"] = (p, extra)
    return cases


@pytest.mark.corpus
def test_records_are_byte_identical_to_before_the_redesign(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    cases = _cases(tmp_path)
    if not any(k.startswith("corpus/") for k in cases):
        pytest.skip("third-party corpus not present")
    got = {k: _digest(p, extra) for k, (p, extra) in cases.items()}
    assert set(got) == set(golden)
    differ = sorted(k for k in got if got[k] != golden[k])
    assert not differ, f"records changed for {differ}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        with tempfile.TemporaryDirectory() as d:
            out = {k: _digest(p, extra) for k, (p, extra) in _cases(pathlib.Path(d)).items()}
        GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(f"{len(out)} digests written to {GOLDEN}")
