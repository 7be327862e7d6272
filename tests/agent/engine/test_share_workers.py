"""Fanout workers share rtp's announcements (Parser.share, engine/live.Relay).

Offline model of ``--workers 2``: a generated capture is split between two engines by flow (as the
kernel's fanout hash does), each engine gets its own packets in capture order, and what one takes
reaches the other only some batches later (the relay's lag: a loop iteration, a ring block's retire
timeout).  The media records of both together must equal one engine's on the whole file.  The relay
itself runs over real AF_UNIX socketpairs, as live.py makes them.
"""
from __future__ import annotations

import hashlib
import json
import socket
from typing import Callable

import pytest

from otus_agent.capture.pcapfile import PcapWriter, open_capture
from otus_agent.engine import live
from otus_agent.engine.live import Relay
from otus_agent.engine.parsers import Sharing
from otus_agent.engine.pipeline import EngineConfig, build_engine
from otus_agent.sim.rtpgen import RtpGenSpec, generate
from otus_agent.sip.framing import SipConfig


def _generate(tmp_path_factory, ipv6: bool = False, **spec):
    path = tmp_path_factory.mktemp("share") / "calls.pcap"
    with open(path, "wb") as f:   # calls 20 ms apart: RTP of one starts while others' SIP is in flight
        wl = generate(f, RtpGenSpec(**{"calls": 8, "packets": 150, "call_gap_ms": 20, "seed": 7, "ipv6": ipv6,
                                       **spec}))
    return path, wl


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return _generate(tmp_path_factory)


@pytest.fixture(scope="module", params=[False, True], ids=["ipv4", "ipv6"])
def captures(request, tmp_path_factory):
    return _generate(tmp_path_factory, request.param)


def _records(out: bytearray) -> list[dict]:
    return [json.loads(x) for x in bytes(out).splitlines()]


def _finals(recs: list[dict]) -> dict[tuple, dict]:
    return {(r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ssrc"]): r
            for r in recs if r["type"] == "media" and r["final"]}


def _config(calls: bool) -> EngineConfig:
    """sip,rtp; ``calls``: with call summary records (``--calls``)."""
    return EngineConfig(parsers=("sip", "rtp"), settings={"sip": SipConfig(call_summaries=True)} if calls else {})


def _one_engine(path, calls: bool = False) -> list[dict]:
    out = bytearray()
    e = build_engine(_config(calls), out.extend)
    with open_capture(str(path)) as r:
        e.run(r.batches())
    e.finish()
    return _records(out)


def _flow(frame: bytes) -> tuple[bytes, bytes, int, int]:
    """UDP over IPv4 or IPv6 (no extension headers) in Ethernet: the generator's frames."""
    if frame[12:14] == b"\x86\xdd":
        return frame[22:38], frame[38:54], int.from_bytes(frame[54:56], "big"), int.from_bytes(frame[56:58], "big")
    return frame[26:30], frame[30:34], int.from_bytes(frame[34:36], "big"), int.from_bytes(frame[36:38], "big")


def _sip_apart(frame: bytes) -> int:
    """The worst case: every SIP message on worker 0, every media packet on worker 1."""
    return 0 if _flow(frame)[2] == 5060 else 1


def _hash(frame: bytes) -> int:
    """A symmetric flow hash, as the kernel's fanout: both directions of a flow on one worker (RTCP, on
    port + 1, is a flow of its own and may land elsewhere than its RTP: then it is forwarded)."""
    s, d, sp, dp = _flow(frame)
    a, b = sorted(((s, sp), (d, dp)))
    return hashlib.sha256(a[0] + a[1].to_bytes(2, "big") + b[0] + b[1].to_bytes(2, "big")).digest()[0] % 2


def _split(path, tmp_path, route: Callable[[bytes], int]) -> list:
    files = [open(tmp_path / f"w{k}.pcap", "wb") for k in range(2)]
    writers = [PcapWriter(f, 1, 65535, True) for f in files]
    with open_capture(str(path)) as r:
        for b in r.batches():
            for i in range(b.n):
                frame = bytes(b.packet(i))
                writers[route(frame)].write(b.ts_ns[i], frame)
    for w, f in zip(writers, files):
        w.flush()
        f.close()
    return [tmp_path / f"w{k}.pcap" for k in range(2)]


def _two_workers(files, lag: int = 0, share: bool = True, calls: bool = False, idle_s: int = 0, lag_ms: int = 0,
                 batch: int = 4, lose: Callable[[list], bool] = lambda item: False) -> tuple[list[list[dict]], list]:
    """Both engines fed in capture order, ``batch`` packets a batch; what one takes reaches the other after
    it fed ``lag`` more batches of its own (applied before its next batch, as the live loop does), and not
    before ``lag_ms`` of capture time.  ``idle_s``: both tick (``Engine.tick``, as the live loop does once a
    second) every second of capture time, and go on ticking this many seconds after the last packet (a
    live capture running on until its end); a tick counts as a batch for the lag.  ``lose``: items the
    relay drops (its backlog full)."""
    outs = [bytearray(), bytearray()]
    engines = [build_engine(_config(calls), outs[k].extend) for k in range(2)]
    shares: list[Sharing | None] = [e.parsers["rtp"].share() if share else None for e in engines]
    readers = [open_capture(str(f), batch_size=batch) for f in files]
    its = [iter(r.batches()) for r in readers]
    nxt = [next(it, None) for it in its]
    fed = [0, 0]
    # per receiver: (deliver once it fed this many, and at this capture time, items)
    inbox: list[list[tuple[int, int, list]]] = [[], []]

    def step(k: int, now: int, work: Callable[[], None]) -> None:
        s = shares[k]
        if s is not None:
            due = [m for m in inbox[k] if m[0] <= fed[k] and m[1] <= now]
            for _, _, items in due:
                s.apply(items)
            inbox[k] = [m for m in inbox[k] if m not in due]
        work()
        fed[k] += 1
        if s is not None:
            items = [it for it in s.take() if not lose(it)]
            if items:
                inbox[1 - k].append((fed[1 - k] + lag, now + lag_ms * 1_000_000, json.loads(json.dumps(items))))

    next_tick = None
    while nxt[0] is not None or nxt[1] is not None:
        k = 0 if nxt[1] is None or (nxt[0] is not None and nxt[0].ts_ns[0] <= nxt[1].ts_ns[0]) else 1
        b = nxt[k]
        if idle_s:
            if next_tick is None:
                next_tick = b.ts_ns[0] + 1_000_000_000
            while b.ts_ns[0] >= next_tick:
                for j in range(2):
                    step(j, next_tick, lambda j=j, t=next_tick: engines[j].tick(t))
                next_tick += 1_000_000_000
        step(k, b.ts_ns[b.n - 1], lambda k=k, b=b: engines[k].feed(b))
        nxt[k] = next(its[k], None)
    for _ in range(idle_s):
        for j in range(2):
            step(j, next_tick, lambda j=j, t=next_tick: engines[j].tick(t))
        next_tick += 1_000_000_000
    for k, s in enumerate(shares):   # the last word, then the end of capture
        if s is not None:
            for _, _, items in inbox[k]:
                s.apply(items)
    for e in engines:
        e.finish()
    for r in readers:
        r.close()
    return [_records(o) for o in outs], [e.summary()["rtp"] for e in engines]


def test_sip_on_one_worker_media_on_the_other(captures, tmp_path):
    path, wl = captures
    want = _finals(_one_engine(path))
    assert len(want) == len(wl.streams)
    (rec0, rec1), (c0, c1) = _two_workers(_split(path, tmp_path, _sip_apart), lag=3)
    assert _finals(rec1) == want and not _finals(rec0)       # every field, RTCP's too (it is with its RTP)
    # the race happened and cost nothing: first packets held, then adopted when the 200 OK's SDP came
    assert c1["discovery_unannounced_adopted"] > 0 and c1["discovery_unannounced_held"] == \
        c1["discovery_unannounced_adopted"]
    assert c1["discovery_share_applied_ends"] == len(wl.call_ids)


def test_without_sharing_the_media_worker_sees_no_stream(capture, tmp_path):
    """The bug this fixes: the worker with the RTP never heard of its SDP."""
    path, _ = capture
    (rec0, rec1), _ = _two_workers(_split(path, tmp_path, _sip_apart), lag=3, share=False)
    assert not _finals(rec0) and not _finals(rec1)


def test_hashed_flows_every_stream_once_with_its_packets(captures, tmp_path):
    path, wl = captures
    want = _finals(_one_engine(path))
    files = _split(path, tmp_path, _hash)
    (rec0, rec1), counters = _two_workers(files, lag=2)
    got0, got1 = _finals(rec0), _finals(rec1)
    assert not set(got0) & set(got1)
    got = {**got0, **got1}
    assert got == want   # every field: RTCP hashed away from its RTP is forwarded to the stream's worker
    assert sum(c["rtp_packets"] for c in counters) == sum(w["packets"] for w in want.values())
    assert sum(c.get("discovery_share_rtcp_applied", 0) for c in counters) > 0
    assert sum(c.get("discovery_share_rtcp_not_here", 0) for c in counters) == 0
    assert sum(c["rtcp_packets"] for c in counters) == wl.rtcp_packets   # each counted once, where used


def test_relay_carries_takes_between_real_engines_in_order(capture, monkeypatch):
    """Two engines, each with its Relay over the socketpairs live.py makes; small datagrams (a take split)."""
    monkeypatch.setattr(live, "RELAY_DATAGRAM", 300)
    path, _ = capture
    mesh = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for pair in mesh:
            for s in pair:
                s.setblocking(False)
        engines = [build_engine(EngineConfig(parsers=("sip", "rtp")), bytearray().extend) for _ in range(2)]
        relays = [live._relay(e, (k, mesh[k][0], {1 - k: mesh[1 - k][1]})) for k, e in enumerate(engines)]
        assert all(r is not None for r in relays)
        with open_capture(str(path)) as r:
            for b in r.batches():
                engines[0].feed(b)
        relays[0].send()
        relays[1].receive()
        d0, d1 = (e.parsers["rtp"].summary.__self__.discovery for e in engines)
        assert d1.expected == d0.expected and len(d0.expected) > 0
        st0, st1 = relays[0].stats(), relays[1].stats()
        # the first datagram is worker 0's hello (its peer had nothing to dump for it: it learned nothing)
        assert st1["hellos"] == 1 and st0["sent"] > 2 and st0["sent"] == st1["received"] + 1
        assert st0["items_sent"] == st1["items_received"] and st0["backlog"] == 0 and not st1.get("bad")
    finally:
        for pair in mesh:
            for s in pair:
                s.close()


def test_a_restarted_worker_learns_the_calls_already_set_up(capture):
    """Its hello asks the peers for their tables (discovery.dump): calls that ended are left out."""
    path, wl = capture
    mesh = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for pair in mesh:
            for s in pair:
                s.setblocking(False)
        old = build_engine(EngineConfig(parsers=("sip", "rtp")), bytearray().extend)
        r0 = live._relay(old, (0, mesh[0][0], {1: mesh[1][1]}))
        with open_capture(str(path)) as r:
            for b in r.batches():
                old.feed(b)
        d0 = old.parsers["rtp"].summary.__self__.discovery
        r0.send()                         # worker 1 is not there yet: its socket keeps what was sent
        while True:                       # ... and a restarted worker 1 starts with an empty table
            try:
                mesh[1][0].recv(1 << 20)
            except BlockingIOError:
                break
        d0.end_call(wl.call_ids[0])       # one call ended (after its linger) before the restart
        new = build_engine(EngineConfig(parsers=("sip", "rtp")), bytearray().extend)
        r1 = live._relay(new, (1, mesh[1][0], {0: mesh[0][1]}))
        d1 = new.parsers["rtp"].summary.__self__.discovery
        assert d1.expected == {}
        r1.send()                         # hello
        r0.receive()
        r0.send()                         # the dump
        r1.receive()
        assert d1.expected == d0.expected and {ep.call_id for ep in d1.expected.values()} == set(wl.call_ids[1:])
        assert r0.stats()["hellos"] == 1 and d0.counters["share_dumped"] == 2 * (len(wl.call_ids) - 1)
    finally:
        for pair in mesh:
            for s in pair:
                s.close()


def test_relay_never_blocks_and_drops_the_oldest_when_a_peer_is_full(monkeypatch):
    monkeypatch.setattr(live, "RELAY_BACKLOG", 5)
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for s in (rx, tx):
            s.setblocking(False)
        tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)   # the kernel's part of the bound: small
        pending: list[list] = []
        got: list = []

        def take() -> list:
            out = pending.copy()
            pending.clear()
            return out
        sender = Relay(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), {1: tx}, {"rtp": Sharing(take, got.extend)})
        receiver = Relay(rx, {}, {"rtp": Sharing(list, got.extend)})
        for n in range(200):               # nobody reads: the socket fills, then the backlog
            pending.extend([["e", f"c{n}", n]])
            sender.send()
        st = sender.stats()
        assert st["peer_full"] > 0 and st["backlog"] == 5 and st["dropped"] == 200 - st["sent"] - 5
        receiver.receive()
        receiver.receive()
        sender.send()                      # room again: the backlog goes out
        receiver.receive()
        ids = [int(it[1][1:]) for it in got]
        assert ids == sorted(ids) and ids[-1] == 199 and len(ids) == st["sent"] + 5
        assert ids[:st["sent"]] == list(range(st["sent"]))   # what fit went first; the middle was dropped
        sender.rx.close()
    finally:
        rx.close()
        tx.close()


def test_relay_counts_what_it_cannot_read():
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        rx.setblocking(False)
        got: list = []
        r = Relay(rx, {}, {"rtp": Sharing(list, got.extend)})
        for data in (b"not json", b'["dns", []]', b'["rtp", 3]', b'["", ["hello", 7]]', b'["rtp", [["e", "c1", 5]]]'):
            tx.send(data)
        r.receive()
        assert r.stats()["bad"] == 4 and r.stats()["received"] == 1 and got == [["e", "c1", 5]]
    finally:
        rx.close()
        tx.close()


def _media_of_calls(recs: list[dict]) -> dict[str, dict]:
    calls = [r for r in recs if r["type"] == "call"]
    assert len({c["call_id"] for c in calls}) == len(calls)   # one record per call
    return {c["call_id"]: c["media"] for c in calls}


@pytest.fixture(scope="module", params=[True, False], ids=["rtcp_bye", "linger"])
def spaced(request, tmp_path_factory):
    """Calls 1.5 s apart (each 2 s of media): a live worker's clock passes one call's end while the next
    call's media runs; ``linger``: no RTCP BYE, the streams end a BYE linger after the BYE."""
    return _generate(tmp_path_factory, calls=6, packets=100, call_gap_ms=1500, rtcp_bye=request.param)


@pytest.mark.parametrize("route", [_sip_apart, _hash], ids=["sip_apart", "hashed"])
def test_call_records_carry_the_other_workers_streams(spaced, tmp_path, route):
    """Each call's record (made where its SIP is) has the media section one engine gives it, its streams'
    parts sent by the worker that has them; every part reported, none waited for in vain."""
    path, wl = spaced
    want = _media_of_calls(_one_engine(path, calls=True))
    assert len(want) == len(wl.call_ids) and all(m["streams"] == 2 for m in want.values())
    (rec0, rec1), counters = _two_workers(_split(path, tmp_path, route), lag_ms=40, batch=1, calls=True, idle_s=12)
    assert _media_of_calls(rec0 + rec1) == want
    assert sum(c.get("call_streams_reported", 0) for c in counters) == \
        sum(c.get("call_streams_remote", 0) for c in counters) > 0
    for c in counters:
        assert not any(c.get(k) for k in ("call_media_wait_expired", "call_media_incomplete_at_end",
                                          "call_media_evicted", "call_media_remote_evicted"))
    # the media records are those of one engine too (the reason a stream ended aside: ticks end them)
    one = {k: {**r, "end_reason": None} for k, r in _finals(_one_engine(path)).items()}
    assert {k: {**r, "end_reason": None} for k, r in {**_finals(rec0), **_finals(rec1)}.items()} == one
    if route is _sip_apart:   # the records came where the SIP is, once their streams had ended
        assert all(r["type"] != "call" for r in rec1)
        assert sum(c.get("discovery_share_streams_ended", 0) for c in counters) == len(wl.streams)


def test_a_call_record_waits_for_lost_parts_a_bounded_time(spaced, tmp_path):
    """The relay dropped the ended streams' parts: the call records go when the wait has passed (counted),
    with what came: the streams open nowhere any more, no part counted."""
    path, wl = spaced
    files = _split(path, tmp_path, _sip_apart)
    (rec0, rec1), (c0, c1) = _two_workers(files, lag_ms=40, batch=1, calls=True, idle_s=12, lose=lambda it: it[0] == "m")
    media = _media_of_calls(rec0)
    assert set(media) == set(wl.call_ids) and all(m["streams"] == 0 for m in media.values())
    assert c0["call_media_wait_expired"] == len(wl.call_ids) and not c0.get("call_media_incomplete_at_end")
    assert c0["call_streams_remote"] == len(wl.streams) and not c0.get("call_streams_reported")
    # ... and without the idle seconds the capture ends first: the calls still waiting go at its end
    (rec0, _), (c0, _) = _two_workers(files, lag_ms=40, batch=1, calls=True, lose=lambda it: it[0] == "m")
    assert set(_media_of_calls(rec0)) == set(wl.call_ids)
    assert c0.get("call_media_wait_expired", 0) + c0["call_media_incomplete_at_end"] == len(wl.call_ids)


def test_early_media_with_the_sip_worker_behind_counts_every_packet(tmp_path_factory, tmp_path):
    """Media from 1 ms after the INVITE (early media: the offer alone announces both directions; one
    worker counts the caller's RTP by its source until the answer names its destination) and the SIP's
    worker behind, so both sides' announcements reach the media worker in one apply, after the first
    packets of each direction.  Each direction must be counted from the offer on, as one worker does."""
    path, wl = _generate(tmp_path_factory, media_after_ms=1)
    want = _finals(_one_engine(path))
    assert len(want) == len(wl.streams)
    assert all(w["packets"] == t.sent + t.duplicated for t in wl.streams
               for w in [want[(t.src_ip, t.src_port, t.dst_ip, t.dst_port, t.ssrc)]])
    (rec0, rec1), (c0, c1) = _two_workers(_split(path, tmp_path, _sip_apart), lag=3)
    assert _finals(rec1) == want and not _finals(rec0)
    assert c1["discovery_unannounced_adopted"] > 0
    assert c1.get("discovery_unannounced_before_sdp", 0) == 0


@pytest.mark.parametrize("route", [_sip_apart, _hash], ids=["sip_apart", "hashed"])
def test_a_reused_call_id_with_two_workers_as_with_one(tmp_path_factory, tmp_path, route):
    """The capture looped with its Call-IDs, ports and SSRCs again 0.3 s after each call's BYE (inside the
    linger): the SIP's worker ends the old call at the new INVITE and tells the other (``["x", call id]``,
    ahead of the new offer), which ends its old streams then too, and applies the ends in order, so the
    old BYE's end never ends the new call.  The old call's record waits, under a key of its own, for the
    other worker's parts of its streams.  Both workers' records, media and call, equal one engine's.  (RTP of the new
    call reaching its worker before the news, less than the relay's lag after the INVITE, would still go
    to the old stream.)"""
    path, wl = _generate(tmp_path_factory, calls=3, packets=120)
    frames = []
    with open_capture(str(path)) as r:
        for b in r.batches():
            frames += [(b.ts_ns[i], bytes(b.packet(i))) for i in range(b.n)]
    span = frames[-1][0] - frames[0][0] + 300_000_000
    looped = tmp_path / "looped.pcap"
    with open(looped, "wb") as f:
        w = PcapWriter(f, 1, 65535, True)
        for k in range(3):
            for ts, frame in frames:
                w.write(ts + k * span, frame)
        w.flush()

    def per_key(recs: list[dict]) -> dict[tuple, list]:
        out: dict[tuple, list] = {}
        for r in recs:
            if r["type"] == "media" and r["final"]:
                k = (r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ssrc"])
                out.setdefault(k, []).append((r["start_ts"], r["packets"], r["lost"], r["end_reason"]))
        return {k: sorted(v) for k, v in out.items()}

    one = _one_engine(looped, calls=True)
    want = per_key(one)
    assert len(want) == len(wl.streams) and all(len(v) == 3 for v in want.values())
    # the relay's lag in capture time (a ring block's retire timeout), not in batches, and a batch per packet:
    # between the loops no packet comes, and a lag of batches, or a batch spanning the gap, would hold the
    # news (the RTCP BYE forwarded, the reuse) until the new call's RTP had started; ticks every second, as
    # the live loop's, so streams end by their BYE's linger and send their parts in time
    (rec0, rec1), counters = _two_workers(_split(looped, tmp_path, route), lag_ms=20, calls=True, batch=1, idle_s=5)
    got = per_key(rec0 + rec1)
    assert got == want
    # and the call records: the old call's waits, under a key of its own, for the other worker's parts of
    # its streams (they come after the new INVITE), and gets them, not the new call
    def sections(recs: list[dict]) -> list:
        return sorted((r["call_id"], r["start_ts"], json.dumps(r["media"], sort_keys=True))
                      for r in recs if r["type"] == "call")
    assert len(sections(one)) == 3 * len(wl.call_ids) and sections(rec0 + rec1) == sections(one)
    assert sum(c.get("call_id_reused", 0) for c in counters) == 2 * len(wl.call_ids)
    assert sum(c.get("discovery_share_applied_reuses", 0) for c in counters) == 2 * len(wl.call_ids)
