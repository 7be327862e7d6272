"""HEP v3 output received on loopback sockets and decoded by an independent decoder here
(written from the HEP3 chunk table, not using otus_agent.reporters.hep.decode)."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import threading

from ..conftest import corpus_path, otus_bin


def independent_decode(pkt: bytes) -> dict:
    assert pkt[:4] == b"HEP3"
    (total,) = struct.unpack("!H", pkt[4:6])
    assert total == len(pkt)
    chunks, pos = {}, 6
    while pos < total:
        vendor, ctype, ln = struct.unpack("!HHH", pkt[pos:pos + 6])
        assert vendor == 0 and ln >= 6
        chunks[ctype] = pkt[pos + 6:pos + ln]
        pos += ln
    assert pos == total
    fam = chunks[1][0]
    af = socket.AF_INET if fam == 2 else socket.AF_INET6
    return {
        "family": fam, "proto": chunks[2][0],
        "src": socket.inet_ntop(af, chunks[3 if fam == 2 else 5]), "dst": socket.inet_ntop(af, chunks[4 if fam == 2 else 6]),
        "sport": struct.unpack("!H", chunks[7])[0], "dport": struct.unpack("!H", chunks[8])[0],
        "ts_us": struct.unpack("!I", chunks[9])[0] * 1_000_000 + struct.unpack("!I", chunks[10])[0],
        "ptype": chunks[11][0], "agent": struct.unpack("!I", chunks[12])[0],
        "node": chunks.get(0x13, b"").decode(), "corr": chunks.get(0x11, b"").decode(), "payload": chunks[15],
        "auth": chunks.get(0x0E),
    }


def run_with_hep(pcap, hep: str, *extra: str, env=None) -> tuple[list[dict], dict]:
    r = subprocess.run([otus_bin(), "run", "--pcap", str(pcap), "--hep", hep, "--hep-node-name", "node-7",
                        "--hep-node-id", "4242", *extra], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()], json.loads(r.stderr.strip().splitlines()[-1])


def check(pkts: list[bytes], recs: list[dict], pcap_payloads: dict) -> None:
    assert len(pkts) == len(recs)
    for pkt, rec in zip(pkts, recs):
        h = independent_decode(pkt)
        assert (h["src"], h["sport"], h["dst"], h["dport"]) == (rec["src_ip"], rec["src_port"], rec["dst_ip"],
                                                               rec["dst_port"])
        assert h["proto"] == {"udp": 17, "tcp": 6, "sctp": 132, "ws": 6}[rec["transport"]]
        assert h["ts_us"] == rec["ts"] // 1000 and h["ptype"] == 1 and h["agent"] == 4242 and h["node"] == "node-7"
        assert h["corr"] == (rec["correlation_id"] or rec["call_id"])
        first = h["payload"].split(b"\r\n", 1)[0].decode("latin-1")
        assert first.startswith(rec["method"] or "SIP/2.0") and rec["call_id"].encode() in h["payload"]
        assert h["payload"] in pcap_payloads[rec["call_id"]]


def payloads_by_call(recs_file: str) -> dict:
    """Raw SIP payloads in the capture, by Call-ID, read with the L4 datagram dump (UDP)."""
    from otus_agent.capture.pcapfile import open_capture
    from otus_agent.reassembly.datagrams import DatagramStage
    out: dict = {}
    got = []
    with open_capture(recs_file) as r:
        DatagramStage(sink=got.append).run(r.batches())
    blob = b"".join(d.payload for d in got)
    for d in got:
        for line in d.payload.split(b"\r\n"):
            if line.lower().startswith(b"call-id:"):
                out.setdefault(line.split(b":", 1)[1].strip().decode(), blob)
    return out


def test_hep_udp_every_chunk():
    pcap = corpus_path("pcap/sip/wireshark-sample-aaa.pcap")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    recs, summary = run_with_hep(pcap, f"127.0.0.1:{rx.getsockname()[1]}", env={**os.environ,
                                                                             "OTUS_HEP_PASSWORD": "s3cret"})
    pkts = []
    try:
        while len(pkts) < len(recs):
            pkts.append(rx.recv(65535))
    except socket.timeout:
        pass
    rx.close()
    assert summary["report"]["hep_sent"] == len(recs) == 81
    check(pkts, recs, payloads_by_call(str(pcap)))
    assert independent_decode(pkts[0])["auth"] == b"s3cret"
    assert "s3cret" not in json.dumps(summary)


def test_hep_tcp_stream():
    pcap = corpus_path("pcap/sip/heplify-sip_ipv4_tcp.pcap")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    data = bytearray()

    def accept() -> None:
        c, _ = srv.accept()
        c.settimeout(10)
        while True:
            b = c.recv(65536)
            if not b:
                break
            data.extend(b)
        c.close()
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    recs, summary = run_with_hep(pcap, f"127.0.0.1:{srv.getsockname()[1]}", "--hep-proto", "tcp")
    t.join(10)
    srv.close()
    pkts, pos = [], 0
    while pos < len(data):
        (total,) = struct.unpack_from("!H", data, pos + 4)
        pkts.append(bytes(data[pos:pos + total]))
        pos += total
    assert len(recs) == 7 and summary["report"]["hep_sent"] == 7
    for pkt, rec in zip(pkts, recs):
        h = independent_decode(pkt)
        assert h["proto"] == 6 and h["sport"] == rec["src_port"] and rec["call_id"].encode() in h["payload"]


def test_hep_collector_down_is_counted():
    pcap = corpus_path("pcap/sip/heplify-sip_ipv4_tcp.pcap")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    recs, summary = run_with_hep(pcap, f"127.0.0.1:{port}", "--hep-proto", "tcp")
    rep = summary["report"]
    assert rep["hep_sent"] == 0 and rep["hep_dropped_disconnected"] + rep["hep_failed"] == len(recs)
