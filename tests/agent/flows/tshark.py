"""tshark as the truth for the flow table: per-conversation packets and bytes."""
from __future__ import annotations

import collections
import re
import shutil
import subprocess

import pytest

from otus_agent.capture.pcapfile import open_capture
from otus_agent.flows import FlowConfig, FlowStage

# SIP's SDP makes tshark announce RTP conversations one direction at a time, splitting one five-tuple in
# two; the flow table is a transport view, so tshark's SIP dissector is off for the truth.
NEUTRAL = ("--disable-protocol", "sip")

Conv = tuple[str, str, int, int, int, int]  # endpoint low, endpoint high, pkts low->high, bytes, pkts high->low, bytes


def need_tshark() -> str:
    exe = shutil.which("tshark")
    if exe is None:
        pytest.skip("tshark not installed (scripts/bootstrap installs it)")
    return exe


def _ep(ip: str, port: str | int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _oriented(a: str, b: str, pab: int, bab: int, pba: int, bba: int) -> Conv:
    return (a, b, pab, bab, pba, bba) if a <= b else (b, a, pba, bba, pab, bab)


def tshark_conversations(path: str, proto: str) -> list[Conv]:
    """Per tcp.stream / udp.stream: packets and frame bytes per direction (exact, from fields); packets
    quoted inside ICMP errors are not in the conversation (as in ``-z conv``)."""
    out = subprocess.run(
        [need_tshark(), "-n", *NEUTRAL, "-r", path, "-Y", f"{proto} && !icmp && !icmpv6", "-T", "fields", "-E", "occurrence=l", "-e", f"{proto}.stream",
         "-e", "frame.len", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
         "-e", f"{proto}.srcport", "-e", f"{proto}.dstport"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    streams: dict[str, dict] = {}
    for line in out.splitlines():
        stream, flen, s4, d4, s6, d6, sp, dp = line.split("\t")
        if not stream:
            continue
        src, dst = _ep(s4 or s6, sp), _ep(d4 or d6, dp)
        c = streams.setdefault(stream, {"a": src, "b": dst, "n": collections.Counter()})
        key = "ab" if src == c["a"] else "ba"
        c["n"]["p" + key] += 1
        c["n"]["b" + key] += int(flen)
    return sorted(_oriented(c["a"], c["b"], c["n"]["pab"], c["n"]["bab"], c["n"]["pba"], c["n"]["bba"])
                  for c in streams.values())


_CONV_LINE = re.compile(r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+\S+\s+\w+\s+(\d+)\s+\S+\s+\w+\s+(\d+)")


def tshark_conv_frames(path: str, proto: str) -> list[tuple[str, str, int]]:
    """``-q -z conv,PROTO``: the endpoints and total frames of each conversation."""
    out = subprocess.run([need_tshark(), "-n", *NEUTRAL, "-r", path, "-q", "-z", f"conv,{proto}"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = _CONV_LINE.match(line)
        if m:
            a, b = sorted((m.group(1), m.group(2)))
            rows.append((a, b, int(m.group(5))))
    return sorted(rows)


def otus_conversations(path: str, proto: str, config: FlowConfig | None = None) -> tuple[list[Conv], FlowStage]:
    recs: list[dict] = []
    st = FlowStage(config, sink=recs.append)
    with open_capture(path) as r:
        st.run(r.batches())
    st.flush()
    convs = sorted(_oriented(_ep(r["src_ip"], r["src_port"]), _ep(r["dst_ip"], r["dst_port"]), r["src_packets"],
                             r["src_bytes"], r["dst_packets"], r["dst_bytes"])
                   for r in recs if r["event"] == "end" and r["proto"] == proto)
    return convs, st


def tshark_v6_form(conv_frames: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """tshark writes IPv6 endpoints as ADDR:PORT without brackets; ours bracket them."""
    def norm(ep: str) -> str:
        host, _, port = ep.rpartition(":")
        return f"[{host}]:{port}" if ":" in host else ep
    return sorted(tuple(sorted((norm(a), norm(b)))) + (n,) for a, b, n in conv_frames)  # type: ignore[misc]
