"""Run a capture through SIP + media stages, and read tshark's RTP stream table (test helpers)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

from otus_agent.capture.pcapfile import open_capture
from otus_agent.engine.pipeline import EngineConfig, build_engine
from otus_agent.media.stage import MediaConfig, MediaStage
from otus_agent.reassembly.datagrams import Datagram, DatagramStage
from otus_agent.sip.framing import SipConfig, SipStage

TSHARK = shutil.which("tshark")
_ROW = re.compile(r"^\s*(?P<start>[\d.]+)\s+(?P<end>[\d.]+)\s+(?P<src>\S+)\s+(?P<sport>\d+)\s+(?P<dst>\S+)\s+"
                  r"(?P<dport>\d+)\s+0x(?P<ssrc>[0-9A-Fa-f]+)\s+(?P<payload>.*?)\s+(?P<pkts>\d+)\s+(?P<lost>-?\d+)\s+"
                  r"\([^)]*\)\s+(?P<min_delta>[\d.]+)\s+(?P<mean_delta>[\d.]+)\s+(?P<max_delta>[\d.]+)\s+"
                  r"(?P<min_jitter>[\d.]+)\s+(?P<mean_jitter>[\d.]+)\s+(?P<max_jitter>[\d.]+)")


def run_engine(path) -> tuple[list[dict], dict]:
    """The engine ``otus run --pcap FILE --parsers sip,rtp --calls`` builds: its records and summary."""
    out = bytearray()
    e = build_engine(EngineConfig(parsers=("sip", "rtp"), settings={"sip": SipConfig(call_summaries=True)}),
                     out.extend)
    with open_capture(str(path)) as r:
        e.run(r.batches())
    e.finish()
    return [json.loads(x) for x in bytes(out).splitlines()], e.summary()


def run_pcap(path, config: MediaConfig | None = None) -> tuple[list[dict], MediaStage, list[dict]]:
    """Every UDP datagram to both stages, SIP records to the media stage first (as the engine will)."""
    media = MediaStage(config)
    sip_records: list[dict] = []

    def on_sip(rec: dict) -> None:
        sip_records.append(rec)
        media.on_sip_record(rec)

    sip = SipStage(SipConfig(), on_sip)
    out: list[dict] = []
    last = [0]

    def both(d: Datagram) -> None:
        sip.on_datagram(d)
        media.feed(d)
        if d.ts_ns - last[0] >= 1_000_000_000:   # flush about once a second of capture time
            last[0] = d.ts_ns
            out.extend(media.flush(d.ts_ns))

    p = DatagramStage(sink=both)
    with open_capture(path) as r:
        p.run(r.batches())
    sip.finish()
    out.extend(media.finish())
    return out, media, sip_records


def tshark_streams(path, *extra: str) -> list[dict]:
    """``tshark -q -z rtp,streams`` parsed: one dict per row."""
    res = subprocess.run([TSHARK, "-r", str(path), "-q", "-z", "rtp,streams", *extra], capture_output=True,
                         text=True, timeout=300, check=True)
    rows = []
    for line in res.stdout.splitlines():
        m = _ROW.match(line)
        if m:
            g = m.groupdict()
            rows.append({"src_ip": g["src"], "src_port": int(g["sport"]), "dst_ip": g["dst"],
                         "dst_port": int(g["dport"]), "ssrc": int(g["ssrc"], 16), "packets": int(g["pkts"]),
                         "lost": int(g["lost"]), "max_delta_ms": float(g["max_delta"]),
                         "mean_jitter_ms": float(g["mean_jitter"]), "max_jitter_ms": float(g["max_jitter"]),
                         "payload": g["payload"]})
    return rows


def final_by_key(records: list[dict]) -> dict[tuple, dict]:
    """Final records keyed like tshark's rows; a stream split by an idle timeout would show twice."""
    out: dict[tuple, dict] = {}
    for r in records:
        if r["final"]:
            k = (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ssrc"])
            assert k not in out, f"stream reported twice: {k}"
            out[k] = r
    return out
