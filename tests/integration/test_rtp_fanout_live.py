"""Live ``--workers 2 --parsers sip,rtp``: every RTP stream counted as one worker and the file's truth count it.

The kernel's fanout hash sends a call's SIP and its RTP to different workers about half the time; the
workers share their SDP announcements (engine/live.Relay, media/discovery take/apply).  Generated calls
(sim/rtpgen.py: loss, duplicates, reordering, telephone events) are made harder for the relay: early media,
from 1 ms after each INVITE, and the SIP's worker stopped for ``STALL_S`` as the replay starts, so that
RTP reaches its worker before the INVITE's announcement does: the first packets are held and adopted.  The file, its frames addressed to the
capture side, is replayed with tcpreplay from namespace a into a veth; Otus captures in namespace b,
once with one worker and once with two.  Per stream, the two-worker run's counts equal the one-worker
run's, the offline engine's on the same file and tshark's ``-z rtp,streams`` (packets, lost).

RTCP is a flow of its own (port + 1), often hashed to another worker than its RTP: it is forwarded to
the stream's worker, so CNAME and RTCP's loss report agree too.  The
calls send no RTCP BYE: every stream of both runs ends by its call's BYE (``end_reason: bye``, after the
linger), which with two workers only the SIP's worker saw.  With ``--calls``, each call's record is made
on its SIP's worker, and its media section counts the streams the other worker had too (their parts sent
back when they ended): the packets and loss per direction of the file's truth, the worst quality of the
run's own media records.

Namespaces ``otus-rtps-<pid>-a/-b`` (tests/netns.veth_pair) are removed also on failure; every process is ended
by its handle.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from otus_agent.capture.pcapfile import PcapWriter, open_capture
from otus_agent.sim.rtpgen import RtpGenSpec, generate

from ..agent.media.helpers import TSHARK, run_engine, tshark_streams
from ..conftest import otus_bin
from ..netns import Pair, kill_a_worker, require_root_and, sh, stop, veth_pair, wait_for_packet_sockets

pytestmark = pytest.mark.netns

COUNTS = ("call_id", "direction", "ssrc", "payload_type", "codec", "packets", "bytes", "expected", "lost",
          "duplicates", "out_of_order", "seq_errors", "markers", "telephone_events", "cname", "rtcp_cumulative_lost")


def _counts(r: dict) -> dict:
    """What must not depend on the replay's timing.  Times, jitter and the round trip do: a replay faster
    than the file shortens the SR -> RR gap below the RR's DLSR, and the round trip comes out negative
    (not reported) for some calls with one worker as with two; the offline two-engine tests
    (tests/agent/engine/test_share_workers.py) compare those fields exactly."""
    return {f: r[f] for f in COUNTS}
CALLS, PACKETS, PPS = 24, 250, 5000
STALL_S = 0.4   # the SIP's worker stopped this long as the replay starts (SIGSTOP, SIGCONT): see _live


def _first_worker(proc: subprocess.Popen) -> int:
    """The PID of ``proc``'s first fanout worker (the earliest started child: worker 0, which all of SIP
    goes to, capture/fanout_bpf)."""
    children = [int(c) for c in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]

    def started(pid: int) -> int:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])   # field 22, starttime
    return min(children, key=lambda c: (started(c), c))


def _racy_calls(tmp_path) -> tuple[object, object]:
    """rtpgen's calls with early media: each call's RTP from 1 ms after its INVITE, whose offer announces
    both directions (the caller's RTP by its source until the answer names its destination)."""
    out = tmp_path / "racy.pcap"
    with open(out, "wb") as f:
        # no RTCP BYE: each stream must end by its call's BYE, which only the SIP's worker sees
        wl = generate(f, RtpGenSpec(calls=CALLS, packets=PACKETS, call_gap_ms=20, seed=16, rtcp_bye=False,
                                    media_after_ms=1))
    return out, wl


def _offline(path) -> list[dict]:
    return run_engine(path)[0]


def _finals(recs: list[dict]) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    for r in recs:
        if r["type"] == "media" and r["final"]:
            k = (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ssrc"])
            assert k not in out, f"stream reported twice: {k}"
            out[k] = r
    return out


def _addressed(p: Pair, src, out) -> None:
    """``src``'s frames addressed from namespace a's veth end to b's (tcpreplay sends them) into ``out``."""
    def mac(ns: str, ifname: str) -> str:
        return p.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()
    sh("tcprewrite", f"--enet-smac={mac(p.ns_a, p.if_a)}", f"--enet-dmac={mac(p.ns_b, p.if_b)}",
       f"--infile={src}", f"--outfile={out}")


def _replay_file(p: Pair, tmp_path) -> tuple[object, object]:
    """The racy calls, addressed for the veth."""
    racy, wl = _racy_calls(tmp_path)
    pcap = tmp_path / "replay.pcap"
    _addressed(p, racy, pcap)
    return pcap, wl


def _live(p: Pair, tmp_path, pcap, workers: int, *extra: str, stall: bool = False) -> tuple[dict, list[dict]]:
    out = tmp_path / f"records-{workers}-{'stall' if stall else 'run'}.jsonl"
    proc = p.popen(p.ns_b, otus_bin(), "run", "-i", p.if_b, "--parsers", "sip,rtp", "--workers", str(workers),
                   "--output", str(out), *extra, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_packet_sockets(p, p.ns_b, workers, timeout=20, settle=0.3)
        stalled = None
        if workers == 2 and stall:
            # the SIP's worker stalls (as under a burst of SIP, or a pause): its packets wait in its ring,
            # while the other worker gets RTP whose SDP it has not heard of, holds it and adopts it when the
            # announcements come; whatever the two rings' timers do, on every call starting in the stall
            stalled = _first_worker(proc)
            os.kill(stalled, signal.SIGSTOP)
            threading.Timer(STALL_S, os.kill, (stalled, signal.SIGCONT)).start()
        try:
            r = p.run(p.ns_a, "tcpreplay", "-q", "-i", p.if_a, f"--pps={PPS}", str(pcap), check=False, timeout=120)
        finally:
            if stalled is not None:
                time.sleep(STALL_S)
                os.kill(stalled, signal.SIGCONT)
        assert r.returncode == 0, r.stdout + r.stderr
        # past the BYE's linger (2 s) and a tick: streams end by their BYE, on every worker; and with
        # --calls a second for their parts to reach the call's worker and a tick there
        time.sleep(3.5 if "--calls" not in extra else 5.5)
        proc.send_signal(2)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(err.decode().strip().splitlines()[-1])
    return summary, [json.loads(x) for x in out.read_text().splitlines()]


def test_two_workers_count_every_stream_as_one_does(tmp_path):
    require_root_and("tcpreplay", "tcprewrite")
    with veth_pair("rtps", subnet=91) as p:
        pcap, wl = _replay_file(p, tmp_path)
        one, recs1 = _live(p, tmp_path, pcap, 1, "--calls")
        two, recs2 = _live(p, tmp_path, pcap, 2, "--calls", stall=True)

    offline = _offline(pcap)
    truth = _finals(offline)
    assert len(truth) == len(wl.streams) == 2 * CALLS
    for s in (one, two):
        assert s["kernel"]["kernel_drops"] == 0 and s["kernel"]["kernel_packets"] >= wl.frames
    got1, got2 = _finals(recs1), _finals(recs2)
    assert set(got1) == set(got2) == set(truth)
    for k, want in truth.items():
        w = _counts(want)
        assert _counts(got1[k]) == w, ("one worker", k)
        assert _counts(got2[k]) == w, ("two workers", k)
    assert {r["end_reason"] for r in recs1 + recs2 if r["type"] == "media" and r["final"]} == {"bye"}
    if TSHARK:
        rows = {(t["src_ip"], t["src_port"], t["dst_ip"], t["dst_port"], t["ssrc"]): t for t in tshark_streams(pcap)}
        assert set(rows) == set(truth)
        assert all((got2[k]["packets"], got2[k]["lost"]) == (t["packets"], t["lost"]) for k, t in rows.items())

    # both workers captured, the SDP of some streams was on the other worker, and the race was real: RTP
    # held before its announcement arrived, adopted, none lost on the way
    rtp, relay = two["rtp"], two["relay"]
    assert len(two["per_worker_packets"]) == 2 and min(two["per_worker_packets"]) > 0
    assert rtp["discovery_share_applied_sides"] > 0 and rtp["discovery_share_applied_ends"] > 0
    assert rtp["discovery_unannounced_adopted"] > 0, rtp
    assert rtp["discovery_unannounced_held"] == rtp["discovery_unannounced_adopted"], rtp
    assert rtp["discovery_share_rtcp_applied"] > 0 and rtp.get("discovery_share_rtcp_not_here", 0) == 0
    assert rtp["rtcp_packets"] == one["rtp"]["rtcp_packets"] == wl.rtcp_packets
    for lost in ("unannounced_evicted", "unannounced_overflow"):
        assert rtp.get(f"discovery_{lost}", 0) == 0
    assert relay.get("dropped", 0) == 0 and relay["received"] > 0 and relay["backlog"] == 0
    assert "relay" not in one and "discovery_share_applied_sides" not in one["rtp"]

    # call records: each call's media section has both its streams, wherever they were counted
    want = {r["call_id"]: r["media"] for r in offline if r["type"] == "call"}
    assert set(want) == set(wl.call_ids)
    for recs in (recs1, recs2):
        calls = {r["call_id"]: r["media"] for r in recs if r["type"] == "call"}
        assert set(calls) == set(want)
        finals = _finals(recs).values()
        for cid, m in calls.items():
            mine = [r for r in finals if r["call_id"] == cid]
            assert m["streams"] == want[cid]["streams"] == len(mine) == 2, (cid, m)
            assert {d: m[d] for d in ("to_caller", "to_callee")} == {d: want[cid][d] for d in ("to_caller", "to_callee")}
            assert m["worst_mos"] == min(r["mos"] for r in mine)
            assert m["max_jitter_ms"] == max(r["max_jitter_ms"] for r in mine)
    assert rtp["call_streams_reported"] == rtp["call_streams_remote"] > 0
    assert not any(rtp.get(k) for k in ("call_media_wait_expired", "call_media_incomplete_at_end",
                                        "call_media_remote_evicted", "call_media_evicted"))

    # the same counters as Prometheus families (the daemon's collector over this summary)
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from otus_agent.observability.metrics import TaskCollector
    from otus_spec import TaskSpec
    reg = CollectorRegistry()
    reg.register(TaskCollector(lambda: [(TaskSpec(id="two", interfaces=["lo"]), "running", two)]))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(generate_latest(reg).decode()) for s in f.samples}
    assert samples[("otus_media_unannounced_packets_total", (("outcome", "adopted"), ("task", "two")))] == \
        rtp["discovery_unannounced_adopted"]
    assert samples[("otus_media_shared_items_total", (("kind", "applied_sides"), ("task", "two")))] == \
        rtp["discovery_share_applied_sides"]
    assert samples[("otus_fanout_relay_datagrams_total", (("outcome", "received"), ("task", "two")))] == \
        relay["received"]
    assert samples[("otus_fanout_relay_backlog", (("task", "two"),))] == 0


def test_a_restarted_worker_keeps_the_calls_set_up_before(tmp_path):
    """A worker killed after the calls were set up comes back with an empty table; its hello gets it the
    survivor's (discovery.dump), so the streams the kernel sends it are still reported.

    The parent keeps the workers' packet sockets (engine/live._run_workers), so the killed worker's socket
    keeps its place in the fanout group and no flow moves: per stream, one of the survivor's all along
    (one record, every packet) or the dead worker's (one record, from the newcomer, which knows the stream
    only through the dump, counting the packets after the kill).  Never two records for one stream (when
    the socket went with the worker, the kernel moved the group's last member into its place, and the
    survivor's flows went to the newcomer: two records adding up to the stream).  Nothing the living
    workers saw is missing."""
    require_root_and("tcpreplay", "tcprewrite")
    with veth_pair("rtps", subnet=91) as p:
        pcap, wl = _replay_file(p, tmp_path)
        # part 1: every call's INVITE, 200 and ACK and 300 ms of their media; part 2: the rest
        split = RtpGenSpec().start_ns + (CALLS - 1) * 20_000_000 + 60_000_000 + 300_000_000
        parts = [tmp_path / "part1.pcap", tmp_path / "part2.pcap"]
        after: dict[tuple, int] = {}
        with open(parts[0], "wb") as f1, open(parts[1], "wb") as f2, open_capture(str(pcap)) as r:
            w = [PcapWriter(f1, 1, 65535, True), PcapWriter(f2, 1, 65535, True)]
            for b in r.batches():
                for i in range(b.n):
                    frame = bytes(b.packet(i))
                    late = b.ts_ns[i] >= split
                    w[late].write(b.ts_ns[i], frame)
                    sport, dport = int.from_bytes(frame[34:36], "big"), int.from_bytes(frame[36:38], "big")
                    if late and 5060 not in (sport, dport) and dport % 2 == 0:   # RTP (RTCP: odd ports)
                        k = (".".join(map(str, frame[26:30])), sport, ".".join(map(str, frame[30:34])), dport)
                        after[k] = after.get(k, 0) + 1
            for x in w:
                x.flush()
        out = tmp_path / "records.jsonl"
        proc = p.popen(p.ns_b, otus_bin(), "run", "-i", p.if_b, "--parsers", "sip,rtp", "--workers", "2",
                       "--output", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_packet_sockets(p, p.ns_b, 2, timeout=20, settle=0.3)
            r1 = p.run(p.ns_a, "tcpreplay", "-q", "-i", p.if_a, f"--pps={PPS}", str(parts[0]), check=False,
                       timeout=60)
            assert r1.returncode == 0, r1.stdout + r1.stderr
            time.sleep(0.5)   # both workers know every call now
            kill_a_worker(proc)
            wait_for_packet_sockets(p, p.ns_b, 2, timeout=20, settle=0.3)
            time.sleep(0.5)   # its hello answered
            r2 = p.run(p.ns_a, "tcpreplay", "-q", "-i", p.if_a, f"--pps={PPS}", str(parts[1]), check=False,
                       timeout=120)
            assert r2.returncode == 0, r2.stdout + r2.stderr
            time.sleep(3.5)
            proc.send_signal(2)
            _, err = proc.communicate(timeout=60)
        finally:
            stop(proc)
        assert proc.returncode == 0, err.decode()
    summary = json.loads(err.decode().strip().splitlines()[-1])
    assert summary["worker_restarts"] == 1 and summary["kernel"]["kernel_drops"] == 0
    truth = _finals(_offline(pcap))
    got: dict[tuple, list[int]] = {}
    for r in (json.loads(x) for x in out.read_text().splitlines()):
        if r["type"] == "media" and r["final"]:
            got.setdefault((r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ssrc"]), []).append(r["packets"])
    assert set(got) == set(truth)
    whole = [k for k, n in got.items() if n == [truth[k]["packets"]]]    # the survivor's
    died = [k for k, n in got.items() if n == [after[k[:4]]]]            # the dead worker's, from the newcomer
    odd = {k: (n, truth[k]["packets"], after[k[:4]]) for k, n in got.items() if k not in whole + died}
    assert not odd and died and whole, (odd, summary["rtp"], summary["relay"])
    assert summary["rtp"]["discovery_share_dumped"] > 0 and summary["relay"]["hellos"] >= 2


def test_a_proxied_call_is_one_record_with_two_workers(tmp_path):
    """Calls through a proxy and media relay (sim/rtpgen ``proxy``): both legs carry the Call-ID on two
    flows, which the kernel's hash would put on different workers (two call records for one call, and the
    two workers' SDP of one call side replacing each other's, streams unreported).  The SIP-affinity demux
    (capture/fanout_bpf) puts all of SIP on one worker: one record per call, its four streams, as one
    worker makes them; the media spread over both workers."""
    require_root_and("tcpreplay", "tcprewrite")
    src = tmp_path / "proxy-gen.pcap"
    with open(src, "wb") as f:
        wl = generate(f, RtpGenSpec(calls=CALLS, packets=PACKETS, call_gap_ms=20, seed=16, proxy=True))
    with veth_pair("rtps", subnet=91) as p:
        pcap = tmp_path / "proxy.pcap"
        _addressed(p, src, pcap)
        one, recs1 = _live(p, tmp_path, pcap, 1, "--calls")
        two, recs2 = _live(p, tmp_path, pcap, 2, "--calls")
    assert two["fanout"]["sip_affinity"] == 2 and min(two["per_worker_packets"]) > 0
    assert two["rtp"]["discovery_share_applied_sides"] > 0     # media on the worker without the SIP
    for s in (one, two):
        assert s["kernel"]["kernel_drops"] == 0
    truth = {(s.src_ip, s.src_port, s.dst_ip, s.dst_port, s.ssrc) for s in wl.streams}
    got1, got2 = _finals(recs1), _finals(recs2)
    assert set(got1) == set(got2) == truth
    for k in truth:
        assert _counts(got1[k]) == _counts(got2[k]), k
    calls1 = [r for r in recs1 if r["type"] == "call"]
    calls2 = [r for r in recs2 if r["type"] == "call"]
    assert sorted(r["call_id"] for r in calls2) == sorted(r["call_id"] for r in calls1) == sorted(wl.call_ids)
    for r in calls2:
        assert r["state"] == "ended" and r["media"]["streams"] == 4, r
