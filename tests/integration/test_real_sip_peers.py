"""A real SIP exchange between two network namespaces, captured by tcpdump, read by Otus.

kamailio (registrar/responder) runs in one namespace, sipsak sends OPTIONS over
UDP and TCP and REGISTERs from the other; tcpdump writes the pcap.  Otus must
report exactly the messages on the wire: the Call-IDs sipsak used, every
request answered, none duplicated, none malformed -- and tshark, an
independent dissector, must see the same messages.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter

import pytest

from ..conftest import otus_bin
from ..netns import require_root_and, sh, stop, veth_pair

pytestmark = pytest.mark.netns

KAMAILIO_CFG = """#!KAMAILIO
debug=1
log_stderror=yes
children=1
tcp_children=1
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
request_route {
    if (is_method("OPTIONS|REGISTER")) { sl_send_reply("200", "OK"); exit; }
    sl_send_reply("404", "Not Here");
}
"""


def _otus(pcap) -> tuple[list[dict], dict]:
    r = subprocess.run([otus_bin(), "run", "--pcap", str(pcap)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()], json.loads(r.stderr.splitlines()[-1])


def test_sipsak_and_kamailio_exchange(tmp_path):
    require_root_and("kamailio", "sipsak", "tcpdump")
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(KAMAILIO_CFG)
    pcap = tmp_path / "exchange.pcap"
    (tmp_path / "run").mkdir()
    with veth_pair("sip", subnet=78) as p:
        kam = p.popen(p.ns_b, "kamailio", "-f", str(cfg), "-DD", "-E", "-l", f"udp:{p.ip_b}:5060",
                      "-l", f"tcp:{p.ip_b}:5060", "-Y", str(tmp_path / "run"),
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dump = p.popen(p.ns_b, "tcpdump", "-Z", "root", "--immediate-mode", "-i", p.if_b, "-n", "-U", "-w", str(pcap), "port", "5060",
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 10
            while time.time() < deadline and not pcap.exists():
                time.sleep(0.1)
            time.sleep(1.0)  # kamailio binds, tcpdump attaches
            sent = []
            runs = [["-s", f"sip:test@{p.ip_b}"]] * 3 + [["-E", "tcp", "-s", f"sip:test@{p.ip_b}"]] * 2 + [
                ["-U", "-C", f"sip:{u}@{p.ip_a}", "-s", f"sip:{u}@{p.ip_b}"] for u in ("alice", "bob")]
            for args in runs:
                r = p.run(p.ns_a, "sipsak", "-vvv", "-H", p.ip_a, *args, check=False, timeout=20)
                assert r.returncode == 0, r.stdout + r.stderr
                sent += [line.split(":", 1)[1].strip() for line in r.stdout.splitlines()
                         if line.startswith("Call-ID:")]
            time.sleep(0.5)
        finally:
            stop(dump)
            stop(kam)
            for pid in sh("ip", "netns", "pids", p.ns_b, check=False).stdout.split():
                sh("kill", pid, check=False)  # kamailio children, started by this test
    recs, summary = _otus(pcap)
    assert recs, (sent, summary["packets"], dump.stderr.read().decode())
    assert not [r for r in recs if "error" in r]
    assert set(sent) == {r["call_id"] for r in recs}
    reqs = Counter((r["call_id"], r["cseq_num"], r["method"]) for r in recs if r["method"])
    resps = Counter((r["call_id"], r["cseq_num"], r["cseq_method"]) for r in recs if r["status_code"] == 200)
    assert reqs == resps  # every request answered once
    assert max(reqs.values()) == 1  # no duplicates
    assert Counter(r["transport"] for r in recs if r["method"] == "OPTIONS") == {"udp": 3, "tcp": 2}
    assert {r["method"] for r in recs if r["method"]} >= {"OPTIONS", "REGISTER"}
    if shutil.which("tshark"):
        t = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "sip", "-T", "fields", "-e", "sip.Call-ID",
                            "-e", "sip.CSeq.seq", "-e", "sip.Method", "-e", "sip.Status-Code"],
                           capture_output=True, text=True, timeout=60)
        theirs = Counter(tuple(line.split("\t")) for line in t.stdout.splitlines() if line.strip())
        ours = Counter((r["call_id"], str(r["cseq_num"]), r["method"] or "", str(r["status_code"] or ""))
                       for r in recs)
        assert ours == theirs
