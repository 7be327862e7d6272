"""`otus run`: the real console script in a subprocess, as a user runs it."""
from __future__ import annotations

import json
import subprocess

import pytest

from ...conftest import otus_bin, pcap_bytes

OTUS = otus_bin()


def otus(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([OTUS, *args], capture_output=True, text=True, timeout=timeout)


def test_help_explains_every_option():
    r = otus("run", "--help")
    assert r.returncode == 0
    for opt in ("--pcap", "--demo", "--parsers", "--media-interim", "--media-heuristic", "--datagrams", "--output", "--no-verify-checksum", "--frag-timeout",
                "--frag-max-datagrams", "--frag-max-bytes", "--frag-max-fragments", "--no-vxlan", "--calls",
                "--no-error-records", "--sip-port", "--no-heuristic", "--correlation-header", "--discard-method"):
        assert opt in r.stdout
    assert otus("--help").returncode == 0


def test_run_workload_summary(workload_pcap):
    path, wl = workload_pcap
    r = otus("run", "--pcap", str(path))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stderr.strip().splitlines()[-1])
    assert s["packets"] == wl.packets
    assert s["reassembly"]["fragments"] == wl.fragments
    # every UDP datagram (reassembled when fragmented) and TCP segment comes out once
    assert s["l4_datagrams"] == wl.l4_datagrams
    assert wl.l4_datagrams == wl.sip_messages + 2 * 2 * len(wl.calls) + (wl.tcp_segments - sum(
        len(c.messages) for c in wl.calls if c.transport == "tcp"))
    assert s["drops"] == {}
    assert s["decode"]["vlan"] > 0 and s["decode"]["ipv6"] > 0 and s["decode"]["tcp"] > 0


def test_datagram_lines(workload_pcap, tmp_path):
    path, wl = workload_pcap
    out = tmp_path / "d.jsonl"
    r = otus("run", "--pcap", str(path), "--datagrams", "--output", str(out))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == wl.l4_datagrams
    assert sum(1 for x in lines if x["reassembled"]) == sum(1 for c in wl.calls if c.large and c.transport == "udp")
    assert {x["transport"] for x in lines} == {"udp", "tcp"}


def test_demo_runs():
    r = otus("run", "--demo", "--demo-calls", "20")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stderr.strip().splitlines()[-1])
    assert s["file"] == "demo" and s["l4_datagrams"] > 0


@pytest.mark.parametrize("setup,needle", [
    (lambda d: str(d / "missing.pcap"), "no such file"),
    (lambda d: str(d), "is a directory"),
    (lambda d: (d / "junk.pcap").write_bytes(b"garbage!" * 10) and str(d / "junk.pcap"), "not a pcap"),
    (lambda d: (d / "e.pcap").write_bytes(b"") or str(d / "e.pcap"), "empty file"),
    (lambda d: (d / "lt.pcap").write_bytes(pcap_bytes([b"x"], linktype=147)) and str(d / "lt.pcap"),
     "unsupported link type 147"),
    (lambda d: (d / "tr.pcap").write_bytes(pcap_bytes([b"\0" * 60] * 3)[:-10]) and str(d / "tr.pcap"),
     "truncated in the middle of a packet"),
])
def test_bad_input_is_one_clear_line(tmp_path, setup, needle):
    path = setup(tmp_path)
    r = otus("run", "--pcap", path)
    assert r.returncode == 2
    err = [x for x in r.stderr.splitlines() if x.startswith("otus: error:")]
    assert len(err) == 1 and needle in err[0], r.stderr
    assert "Traceback" not in r.stderr


def test_truncated_file_still_reports_what_it_read(tmp_path):
    p = tmp_path / "tr.pcap"
    p.write_bytes(pcap_bytes([b"\0" * 60] * 3)[:-10])
    r = otus("run", "--pcap", str(p))
    summary = json.loads(r.stderr.splitlines()[0])
    assert summary["packets"] == 2


@pytest.mark.parametrize("args,needle", [
    (["--frag-timeout", "0"], "must be > 0"),
    (["--frag-max-bytes", "100"], "at least 65535"),
    (["--frag-max-datagrams", "x"], "not an integer"),
    (["--sip-port", "70000"], "port out of range"),
    (["--output", "/nonexistent-dir/x.jsonl"], "cannot write"),
    (["--parsers", "sip,rtcp"], "--parsers: unknown parser rtcp; known: sip, rtp, flow, dns, detect"),
    (["--parsers", ","], "--parsers: unknown parser (none given)"),
    (["--parsers", "rtp"], "rtp finds its streams in SIP's SDP: add sip"),
    (["--parsers", "dns,detect"], "detect reads sip records and flow events"),
    (["--parsers", "sip,flow", "--datagrams"], "--datagrams replaces the parsers"),
    (["--media-interim", "0"], "must be > 0"),
])
def test_bad_options(workload_pcap, args, needle):
    r = otus("run", "--pcap", str(workload_pcap[0]), *args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_no_command_prints_help():
    r = otus()
    assert r.returncode == 2 and "run" in r.stderr


def test_sip_records_on_stdout(workload_pcap):
    path, wl = workload_pcap
    r = otus("run", "--pcap", str(path), "--calls")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    sip_recs = [x for x in recs if x["type"] == "sip"]
    calls = [x for x in recs if x["type"] == "call"]
    assert len(sip_recs) == wl.sip_messages
    assert not any("error" in x for x in sip_recs)
    assert len(calls) == len(wl.calls) and all(c["state"] == "ended" for c in calls)
    assert sorted(x["call_id"] for x in calls) == sorted(c.call_id for c in wl.calls)
    s = json.loads(r.stderr.strip().splitlines()[-1])
    assert s["sip"]["sip_messages"] == wl.sip_messages and s["sip"]["malformed"] == {}


def test_discard_and_no_error_records(tmp_path):
    from otus_agent.sim import packets as P
    good = (b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            b"From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\n"
            b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    bad = good.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    ip1, ip2 = bytes((192, 0, 2, 1)), bytes((192, 0, 2, 2))
    frames = [P.ethernet(b"\2" * 6, b"\4" * 6, 0x0800, P.ipv4(ip1, ip2, 17, P.udp(ip1, ip2, 5060, 5060, x)))
              for x in (good, bad)]
    f = tmp_path / "o.pcap"
    f.write_bytes(pcap_bytes(frames))
    r = otus("run", "--pcap", str(f))
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x.get("error") for x in recs] == [None, "cseq_method_mismatch"]
    r = otus("run", "--pcap", str(f), "--no-error-records", "--discard-method", "options")
    assert r.stdout == ""
    s = json.loads(r.stderr.strip().splitlines()[-1])["sip"]
    assert s["discarded"] == 1 and s["malformed"] == {"cseq_method_mismatch": 1}


# what `otus run --pcap` and `otus --help` must not load (issue 15, start-up): each costs tens to
# hundreds of ms of import, and neither command uses it
NOT_AT_STARTUP = ("pydantic", "otus_spec", "yaml", "prometheus_client", "confluent_kafka", "kubernetes",
                  "otus_agent.daemon", "otus_agent.kube", "otus_agent.observability", "otus_agent.engine.live",
                  "otus_agent.capture.afpacket", "otus_agent.reporters.kafka", "otus_agent.reporters.hep")

_LOADED = """
import sys
from otus_agent.cli.main import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
sys.stderr.write("LOADED " + " ".join(sorted(sys.modules)) + "\\n")
sys.exit(rc)
"""


@pytest.mark.parametrize("argv", [["run", "--pcap", "PCAP", "--output", "/dev/null"], ["--help"]],
                         ids=["run-pcap", "help"])
def test_startup_loads_only_what_the_command_runs(workload_pcap, argv):
    import sys
    argv = [str(workload_pcap[0]) if a == "PCAP" else a for a in argv]
    r = subprocess.run([sys.executable, "-c", _LOADED, *argv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = r.stderr.rsplit("LOADED ", 1)[1].split()
    heavy = [m for m in loaded if any(m == p or m.startswith(p + ".") for p in NOT_AT_STARTUP)]
    assert not heavy, f"{' '.join(argv)} loads {heavy}"
    assert ("otus_agent.sip.framing" in loaded) == (argv[0] == "run")   # the check sees real imports


def test_agent_and_validate_still_parse_and_report_errors(tmp_path):
    """Their modules load when they run: `otus agent` (flags defined in the CLI) and a bad task file."""
    r = otus("agent", "--help")
    assert r.returncode == 0 and "--task-file" in r.stdout and "--metrics-listen" in r.stdout
    bad = tmp_path / "t.yaml"
    bad.write_text("id: x\nworkers: [1]\n")
    r = otus("validate", "-f", str(bad))
    assert r.returncode == 2 and "workers" in r.stderr and "Traceback" not in r.stderr
    r = otus("agent", "--task-file", str(bad), "--status-interval", "0")
    assert r.returncode == 2 and r.stderr.startswith("otus: error: --status-interval must be >= 1")


def test_parsers_flag_runs_each_parser_and_keeps_sip_as_it_was(workload_pcap):
    """--parsers sip,flow,dns adds flow records and the parsers' counters; the SIP lines do not change."""
    path, wl = workload_pcap
    plain = otus("run", "--pcap", str(path))
    r = otus("run", "--pcap", str(path), "--parsers", "sip,flow,dns")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stderr.strip().splitlines()[-1])
    from otus_agent.capture.pcapfile import open_capture
    from otus_agent.flows import FlowStage
    alone = FlowStage()
    with open_capture(str(path)) as f:
        alone.run(f.batches())
    assert s["packets"] == wl.packets and "dns" in s and "rtp" not in s
    assert s["flow"]["packets"] == alone.packets and s["flow"]["created"] == alone.created > 0
    lines = r.stdout.splitlines()
    kinds = {json.loads(x)["type"] for x in lines}
    assert "flow" in kinds
    assert [x for x in lines if '"type":"flow"' not in x] == plain.stdout.splitlines()
