"""Where the CPU goes per SIP message on the realistic PBX workload (issue 15's profile).

Timed stage runs in one process (CPU time, best of ``--repeat``), each adding one stage to the
last, on the workload of ``bench_realistic`` (``sim/pbx.py``), plus micro-runs of single
functions on the workload's own payloads, plus whole-process runs of ``otus run`` for start-up
and the output write.  Prints ns per SIP message per stage.  With ``--cprofile`` it also prints
cProfile's top functions for the plain and the ``--calls`` pipeline.  ``bench/PROFILE.md`` quotes
one run and says what the numbers point to.

Usage: python bench/profile_realistic.py [--calls 20000] [--repeat 3] [--cprofile]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pathlib
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_realistic import OTUS, measure, one_packet_file, workload  # noqa: E402

from otus_agent.capture.pcapfile import open_capture  # noqa: E402
from otus_agent.reassembly.datagrams import Datagram, DatagramStage  # noqa: E402
from otus_agent.reporters.sink import RecordSink  # noqa: E402
from otus_agent.sip import message_cy as sip  # noqa: E402
from otus_agent.sip.framing import SipConfig, SipStage  # noqa: E402
from otus_agent.sip.records import DEFAULT_CORRELATION, Correlator, fast_sip_record, sip_record  # noqa: E402
from otus_agent.sip.scan_cy import Scanner  # noqa: E402
from otus_agent.sip.sdp_cy import sdp_from_body  # noqa: E402
from otus_agent.sip.slots import LAYOUT as SCAN  # noqa: E402

try:
    from orjson import dumps
except ImportError:  # pragma: no cover
    import json

    def dumps(o):  # type: ignore[misc]
        return json.dumps(o).encode()


def cpu(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


class _NoCalls:
    """The call table left out (every message path calls one of these): the stage's cost without it."""

    def observe(self, m: object, ts: int) -> list:
        return []

    def observe_record(self, rec: dict, ts: int) -> list:
        return []

    def flush(self) -> list:
        return []

    def counters(self) -> dict:
        return {}


def pipeline(path: pathlib.Path, cfg: SipConfig, lane: bool = True, observe: bool = True) -> Callable[[], int]:
    """The record path of ``otus run --pcap`` (cli/main.py _run_file) into memory; returns messages."""
    def run() -> int:
        out = bytearray()
        sink = RecordSink(out.extend)
        st = SipStage(cfg, sink.emit, None, sink.emit_block if lane else None)
        if not observe and st.lane is None:   # the lane calls the table in C: it cannot be left out there
            st.dialogs = _NoCalls()            # type: ignore[assignment]
        pipe = DatagramStage(sink=st.on_datagram, lane=st.run_lane if st.lane is not None else None)
        with open_capture(path) as r:
            pipe.run(r.batches())
        st.finish()
        sink.flush()
        return st.summary()["sip_messages"]
    return run


def read_only(path: pathlib.Path) -> Callable[[], None]:
    def run() -> None:
        with open_capture(path) as r:
            for _ in r.batches():
                pass
    return run


def decode_only(path: pathlib.Path, sink: Callable[[Datagram], None] | None) -> Callable[[], None]:
    def run() -> None:
        with open_capture(path) as r:
            DatagramStage(sink=sink).run(r.batches())
    return run


def datagrams(path: pathlib.Path) -> list[Datagram]:
    got: list[Datagram] = []
    with open_capture(path) as r:
        DatagramStage(sink=got.append).run(r.batches())
    return got


def cprofile_top(fn: Callable[[], object], n: int = 22) -> str:
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).strip_dirs().sort_stats("tottime").print_stats(n)
    return "\n".join(line for line in s.getvalue().splitlines() if line.strip())[:6000]


def perf_top(cmd: list[str], n: int = 30) -> str:
    """perf's flat profile of a whole process (shared object + symbol): compiled functions by name."""
    import shutil
    if shutil.which("perf") is None:
        return "  perf not installed (apt-get install linux-perf)"
    with tempfile.TemporaryDirectory() as tmp:
        data = str(pathlib.Path(tmp) / "perf.data")
        r = subprocess.run(["perf", "record", "-F", "2999", "-o", data, "--", *cmd], capture_output=True, text=True)
        if r.returncode != 0:
            return f"  perf record failed: {r.stderr[-500:]}"
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
                              "--percent-limit", "0.4"], capture_output=True, text=True).stdout
    lines = [x for x in rep.splitlines() if x.strip() and not x.startswith("#")]
    return "\n".join(lines[:n])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--perf", action="store_true", help="perf's flat profile of `otus run` plain and --calls")
    a = ap.parse_args()
    R = a.repeat
    # the mixed workload: the first packets of bench_realistic's 100K-call file (the same traffic, shorter)
    full, finfo = workload(100_000)
    tmpdir = tempfile.TemporaryDirectory(prefix="otus-profile-")
    path = pathlib.Path(tmpdir.name) / "mixed.pcap"
    n_packets = finfo["packets"] * a.calls // finfo["calls"]
    # classic pcap like the bench file (editcap writes pcapng by default, which the reader walks in Python:
    # the "read" row measured that, not the pcap walk, before this was said)
    subprocess.run(["editcap", "-F", "nsecpcap", "-r", str(full), str(path), f"1-{n_packets}"], check=True)
    udp_path, udp_info = workload(a.calls // 2, tcp_ratio=0.0, large_invite_ratio=0.0, vlan_ratio=0.0, ipv6_ratio=0.0)
    tcp_path, tcp_info = workload(a.calls // 6, tcp_ratio=1.0, large_invite_ratio=0.0)
    frag_path, frag_info = workload(a.calls // 6, tcp_ratio=0.0, large_invite_ratio=1.0)
    plain = pipeline(path, SipConfig())
    M = plain()
    print(f"workload: first {n_packets:,} packets of {full.name} = {M:,} SIP messages "
          f"({n_packets / M:.2f} packets per message); ns per SIP message, CPU, best of {R}")

    def row(name: str, secs: float, msgs: int = M, note: str = "") -> float:
        ns = secs * 1e9 / msgs
        print(f"  {name:<58} {ns:>8,.0f} ns/msg  {note}")
        return ns

    print("cumulative stages (mixed workload):")
    t_read = row("read: pcap batches (open_capture, walk_pcap)", cpu(read_only(path), R))
    t_dec = row("+ decode L2-L4 + IP reassembly (DatagramStage, sink=None)", cpu(decode_only(path, None), R))
    t_dg = row("+ a Datagram object per L4 payload (sink=noop)", cpu(decode_only(path, lambda d: None), R))
    t_plain = row("= plain pipeline, UDP lane on (otus run --pcap)", cpu(plain, R), note=f"[{plain():,} msgs]")
    t_nolane = row("  plain, lane off (general fast path: Python per message)",
                   cpu(pipeline(path, SipConfig(), lane=False), R))
    t_general = row("  plain, fast path off (sip.parse + sip_record + orjson)",
                    cpu(pipeline(path, SipConfig(fast_path=False), lane=False), R))
    calls = pipeline(path, SipConfig(call_summaries=True))
    t_calls = row("= --calls pipeline (call_summaries=True)", cpu(calls, R), note=f"[{calls():,} msgs]")
    t_calls_no = row("  --calls, lane off, the call table left out",
                     cpu(pipeline(path, SipConfig(call_summaries=True), lane=False, observe=False), R))
    t_calls_py = row("  --calls, lane off (CallTable per message)",
                     cpu(pipeline(path, SipConfig(call_summaries=True), lane=False), R))
    print("by transport (plain pipeline, separate files):")
    t_udp = row("UDP only, no fragments", cpu(pipeline(udp_path, SipConfig()), R), udp_info["sip_messages"])
    t_tcp = row("TCP only (handshakes, ACKs, FINs)", cpu(pipeline(tcp_path, SipConfig()), R), tcp_info["sip_messages"],
                f"[{tcp_info['packets'] / tcp_info['sip_messages']:.2f} packets per message]")
    t_frag = row("UDP, every INVITE fragmented", cpu(pipeline(frag_path, SipConfig()), R), frag_info["sip_messages"])
    t_tcp_calls = row("TCP only, --calls", cpu(pipeline(tcp_path, SipConfig(call_summaries=True)), R),
                      tcp_info["sip_messages"])
    t_udp_calls = row("UDP only, --calls", cpu(pipeline(udp_path, SipConfig(call_summaries=True)), R),
                      udp_info["sip_messages"])

    print("single functions on the UDP file's SIP payloads (no lane):")
    dgs = [d for d in datagrams(udp_path) if d.proto == 17 and d.payload]
    pays = [d.payload for d in dgs]
    N = len(pays)
    sc = Scanner()
    o = sc.arr
    body_at = SCAN["O_BODY"]

    def scan_only() -> None:
        for x in pays:
            sc.scan(x, False)

    def scan_fields() -> None:
        for x in pays:
            if sc.scan(x, False) == 1:
                sc.fields(x)

    def scan_fields_sdp() -> None:
        for x in pays:
            if sc.scan(x, False) == 1:
                ct = sc.fields(x)["content_type"]
                if ct:
                    sdp_from_body(ct, x[o[body_at]:])
    t_scan = row("Scanner.scan", cpu(scan_only, R), N)
    t_fields = row("Scanner.scan + Scanner.fields", cpu(scan_fields, R), N)
    t_sdp = row("Scanner.scan + fields + sdp_from_body", cpu(scan_fields_sdp, R), N)
    recs: list[dict] = []

    def fast_records() -> None:
        recs.clear()
        for d in dgs:
            x = d.payload
            if sc.scan(x, False) == 1:
                bstart = o[body_at]
                cl = o[SCAN["O_CL"]]
                recs.append(fast_sip_record(x, sc, bstart, bstart + cl if cl >= 0 else len(x), d.ts_ns, d.src_ip,
                                            d.src_port, d.dst_ip, d.dst_port, "udp", None))
    t_frec = row("scan + fast_sip_record (dict)", cpu(fast_records, R), N)
    t_json = row("orjson.dumps of those records", cpu(lambda: [dumps(r) for r in recs], R), N)
    t_parse = row("sip.parse (general parser)", cpu(lambda: [sip.parse(x) for x in pays], R), N)
    msgs = [sip.parse(x) for x in pays]
    corr = Correlator(DEFAULT_CORRELATION)
    t_rec = row("sip_record from a parsed message",
                cpu(lambda: [sip_record(m, d.ts_ns, d.src_ip, d.src_port, d.dst_ip, d.dst_port, "udp", corr, None)
                             for m, d in zip(msgs, dgs)], R), N)
    from otus_agent.sip.dialogs_cy import CallTable

    def observe() -> None:
        t = CallTable()
        for m, d in zip(msgs, dgs):
            t.observe(m, d.ts_ns)
    t_obs = row("CallTable.observe (a parsed message)", cpu(observe, R), N)
    dg_udp = row("decode + Datagram objects, UDP file", cpu(decode_only(udp_path, lambda d: None), R),
                 udp_info["sip_messages"])

    print("whole process (otus run, user+sys from wait4):")
    with tempfile.TemporaryDirectory() as tmp:
        one = pathlib.Path(tmp) / "one.pcap"
        one_packet_file(path, one)
        st = min((measure([OTUS, "run", "--pcap", str(one), "--output", os.devnull]) for _ in range(5)),
                 key=lambda r: r["cpu"])
        print(f"  start-up (one-packet file): {st['cpu'] * 1e3:.0f} ms CPU, {st['wall'] * 1e3:.0f} ms wall"
              f"  = {st['cpu'] * 1e9 / 700_000:,.0f} ns/msg over a 700K-message file")
        full = min((measure([OTUS, "run", "--pcap", str(path), "--output", str(pathlib.Path(tmp) / "r.jsonl")])
                    for _ in range(R)), key=lambda r: r["cpu"])
        size = (pathlib.Path(tmp) / "r.jsonl").stat().st_size
        row("whole process, --output FILE (start-up included)", full["cpu"], note=f"[{size / M:.0f} B of JSON/msg]")
        devnull = min((measure([OTUS, "run", "--pcap", str(path), "--output", os.devnull]) for _ in range(R)),
                      key=lambda r: r["cpu"])
        row("whole process, --output /dev/null", devnull["cpu"])
        blob = os.urandom(64 << 10)

        def write_file() -> None:
            with open(pathlib.Path(tmp) / "w.bin", "wb") as f:
                for _ in range(size // len(blob) + 1):
                    f.write(blob)
        row("write the same bytes to a file, 64 KiB writes", cpu(write_file, R))
        imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "import otus_agent.cli.main"],
                             capture_output=True, text=True)
        heavy = sorted(((int(x.split("|")[1]), x.split("|")[2].strip()) for x in imp.stderr.splitlines()
                        if x.startswith("import time:") and x.split("|")[1].strip().isdigit()), reverse=True)[:8]
        print("  import otus_agent.cli.main, heaviest cumulative imports (us): "
              + ", ".join(f"{name} {us:,}" for us, name in heavy))

    print("derived (ns per message of the mixed workload unless said):")
    print(f"  read {t_read:,.0f} | decode+reassembly {t_dec - t_read:,.0f} | Datagram objects {t_dg - t_dec:,.0f}"
          f" | SIP (framing, scan, SDP, JSON, glue) {t_plain - t_dec:,.0f}")
    print(f"  lane vs Python fast path: {t_nolane - t_plain:,.0f} saved | general parser path costs "
          f"{t_general - t_plain:,.0f} more than the lane")
    print(f"  --calls: {t_calls - t_plain:,.0f} more than plain in the lane (compiled call table); lane off: "
          f"the call table {t_calls_py - t_calls_no:,.0f} per message")
    print(f"  UDP message in the lane {t_udp:,.0f}; TCP message {t_tcp:,.0f} ({t_tcp - t_udp:,.0f} more); "
          f"fragmented-INVITE workload {t_frag:,.0f}; TCP --calls {t_tcp_calls:,.0f}; UDP --calls {t_udp_calls:,.0f}")
    print(f"  UDP: decode+Datagram {dg_udp:,.0f}; scan {t_scan:,.0f}; fields {t_fields - t_scan:,.0f}; "
          f"SDP {t_sdp - t_fields:,.0f}; fast_sip_record {t_frec - t_scan:,.0f}; JSON {t_json:,.0f}; "
          f"parse {t_parse:,.0f}; sip_record {t_rec:,.0f}; observe {t_obs:,.0f}")
    if a.perf:
        for extra in ((), ("--calls",)):
            print(f"\nperf, otus run --pcap {' '.join(extra)} (whole process, % of samples):")
            print(perf_top([OTUS, "run", "--pcap", str(path), "--output", os.devnull, *extra]))
    if a.cprofile:
        print("\ncProfile, plain pipeline (tottime; compiled functions appear as one builtin call):")
        print(cprofile_top(plain))
        print("\ncProfile, --calls pipeline:")
        print(cprofile_top(calls))


if __name__ == "__main__":
    main()
