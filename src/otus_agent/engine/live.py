"""Run the engine on live interfaces: one process, or N fanout workers.

Each worker owns its rings (joined to one PACKET_FANOUT group, hash by flow
with defragmentation, so a flow's fragments and segments stay together) and
its engine (``engine.pipeline.build_engine``, as ``otus run --pcap`` builds
it).  Workers send serialised record lines to the parent in batches over a
pipe; the parent writes them, restarts a worker that dies
(``worker_restarts``) and merges the final counters.

What one worker's parsers learn that the others need (``Parser.share``: rtp's SDP announcements, whose
RTP the kernel usually hashes to another worker) goes straight from worker to worker (``Relay``).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import signal
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any, Callable

from otus_agent.capture.afpacket import NEW_GROUP, CaptureError, LiveCapture, RingConfig, fanout_id
from otus_agent.capture.fanout_bpf import sip_affinity
from otus_agent.capture.pcaprotate import RotatingPcapWriter
from otus_agent.engine.parsers import Sharing
from otus_agent.engine.pipeline import Engine, EngineConfig, build_engine, quiet_gc
from otus_agent.reassembly.datagrams import DatagramConfig
from otus_agent.reporters.sink import HepSettings, KafkaSettings
from otus_agent.sip.framing import SipConfig

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_RESTARTS = 10  # a worker that keeps dying is a bug, not bad luck: give up and say so


class Histogram:
    """A fixed-bucket latency histogram that sums across workers like any other counter."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, v: float) -> None:
        i = 0
        while i < len(LATENCY_BUCKETS) and v > LATENCY_BUCKETS[i]:
            i += 1
        self.counts[i] += 1
        self.total += v

    def as_dict(self) -> dict:
        return {"buckets": dict(zip([str(b) for b in LATENCY_BUCKETS] + ["+Inf"], self.counts)),
                "sum": self.total, "count": sum(self.counts)}


@dataclass
class LiveConfig:
    interfaces: list[str]
    filter_expr: str | None
    ring: RingConfig = field(default_factory=RingConfig)
    workers: int = 1
    duration_s: float | None = None
    max_packets: int | None = None
    pcap_path: str | None = None
    pcap_max_bytes: int = 100 << 20
    pcap_max_files: int = 10
    stats_interval_s: float = 1.0
    on_stats: Callable[[dict], None] | None = None  # called with the counters so far, every stats_interval_s
    kafka: KafkaSettings | None = None
    hep: HepSettings | None = None
    lines: bool = True          # JSON lines to the console/file writer
    task: str = "run"
    # with workers: each worker appends its records to this file itself (whole-line writes with
    # O_APPEND), instead of relaying them through the parent; None: through the parent (stdout)
    output_path: str | None = None
    parsers: tuple[str, ...] = ("sip",)
    settings: dict[str, Any] = field(default_factory=dict)   # other parsers' settings (sip's comes apart)

    def engine_config(self, pipe_cfg: DatagramConfig, sip_cfg: SipConfig) -> EngineConfig:
        """What each capture process builds its engine from."""
        return EngineConfig(pipe_cfg, self.parsers, {**self.settings, "sip": sip_cfg}, self.kafka, self.hep, self.lines,
                            self.task)


# ratios are not added: each is made again from the merged counters it divides (media's loss ratio)
RATIOS = {"loss_ratio": ("lost_total", "expected_total")}


def merge_counts(a: dict, b: dict) -> dict:
    """Sum two counter trees (ints added, dicts merged, other values from ``b``; RATIOS recomputed)."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, dict)):
            out[k] = v
        elif isinstance(v, dict):
            out[k] = merge_counts(out.get(k, {}) if isinstance(out.get(k), dict) else {}, v)
        elif k in RATIOS:
            out[k] = max(out.get(k, 0), v)     # made again below when its counters are there
        else:
            out[k] = out.get(k, 0) + v
    for k, (num, den) in RATIOS.items():
        if k in out and isinstance(out.get(num), (int, float)) and isinstance(out.get(den), (int, float)):
            out[k] = out[num] / out[den] if out[den] else 0.0
    return out


class _Stop:
    def __init__(self) -> None:
        self.flag = False

    def __call__(self, *_: object) -> None:
        self.flag = True


TICK_S = 1.0   # how often the parsers' time-driven output runs (Engine.tick) during live capture

RELAY_DATAGRAM = 16 << 10   # bytes of items per relay datagram: a larger take is split (one item never)
RELAY_RECV = 256 << 10      # the receive buffer: an item larger than this is cut, and counted bad
RELAY_BACKLOG = 1024        # datagrams per peer waiting for room in its socket; full: the oldest goes (dropped)
RELAY_READS = 256           # datagrams applied per call: the capture loop is never held long


class Relay:
    """One fanout worker's end of the sharing mesh: the datagrams its peers write to it (``rx``), and
    the peers' sockets it writes to.  The parent makes one AF_UNIX datagram socketpair per worker before
    forking (a restarted worker gets the same one back); worker *i* reads the one end of pair *i* and
    writes to the other end of every other pair.  Why a mesh and not a relay through the parent: one hop
    fewer (the parent also writes the records, it would delay the announcements RTP is waiting for), the
    kernel keeps message boundaries, and nothing on the way can block.

    Non-blocking both ways: ``receive`` applies at most ``RELAY_READS`` datagrams per call; ``send`` writes
    what the parsers took, and what does not fit in a peer's socket (its kernel buffer, SO_SNDBUF) waits
    in that peer's backlog for the next call; a backlog holds at most ``RELAY_BACKLOG`` datagrams, beyond
    that the oldest is dropped (``dropped``: the peer misses those announcements, and the RTP it holds
    for them expires, counted by the parser).  Datagram: ``[parser name, [items...]]`` as JSON; name ""
    is the relay's own: ``["", ["hello", i]]``, which a worker sends when it starts, asks every peer for
    its parsers' ``dump`` (a restarted worker learns the calls already set up)."""

    def __init__(self, rx: socket.socket, peers: dict[int, socket.socket], shares: dict[str, Sharing],
                 me: int | None = None):
        self.rx, self.peers, self.shares = rx, peers, shares
        self.backlog: dict[int, deque[bytes]] = {i: deque() for i in peers}
        self.buf = bytearray(RELAY_RECV)
        self.c: Counter[str] = Counter()
        if me is not None:
            for q in self.backlog.values():
                q.append(json.dumps(["", ["hello", me]]).encode())

    def receive(self) -> None:
        """Apply what the peers sent (their order is kept per peer)."""
        for _ in range(RELAY_READS):
            try:
                n = self.rx.recv_into(self.buf)
            except BlockingIOError:
                return
            try:
                name, items = json.loads(bytes(self.buf[:n]))
                if name == "" and items[0] == "hello":
                    self._hello(items[1])
                    continue
                share = self.shares[name]
                if not isinstance(items, list):
                    raise TypeError(name)
            except (ValueError, KeyError, TypeError, IndexError):
                self.c["bad"] += 1
                continue
            self.c["received"] += 1
            self.c["items_received"] += len(items)
            share.apply(items)

    def _hello(self, peer: int) -> None:
        q = self.backlog[peer]
        self.c["hellos"] += 1
        for name, share in self.shares.items():
            for dgram in _pack(name, share.dump()):
                self._queue(q, dgram)

    def _queue(self, q: deque[bytes], dgram: bytes) -> None:
        if len(q) >= RELAY_BACKLOG:
            q.popleft()
            self.c["dropped"] += 1
        q.append(dgram)

    def send(self) -> None:
        """What the parsers learned since the last call, to every peer; then the backlogs, as room allows."""
        for name, share in self.shares.items():
            items = share.take()
            if items:
                self.c["items_sent"] += len(items)
                for dgram in _pack(name, items):
                    for q in self.backlog.values():
                        self._queue(q, dgram)
        for i, q in self.backlog.items():
            sock = self.peers[i]
            while q:
                try:
                    sock.send(q[0])
                except BlockingIOError:
                    self.c["peer_full"] += 1
                    break
                except OSError:   # larger than the socket can take at all (EMSGSIZE)
                    self.c["dropped"] += 1
                else:
                    self.c["sent"] += 1
                q.popleft()

    def stats(self) -> dict:
        return {**self.c, "backlog": sum(len(q) for q in self.backlog.values())}


Mesh = tuple[int, socket.socket, dict[int, socket.socket]]   # (this worker, its socket to read, the peers')


def _pack(name: str, items: list) -> list[bytes]:
    """``items`` as datagrams of about RELAY_DATAGRAM bytes each, in order."""
    head, size = json.dumps(name).encode(), 0
    out: list[bytes] = []
    part: list[bytes] = []
    for it in items:
        b = json.dumps(it, separators=(",", ":")).encode()
        if part and size + len(b) > RELAY_DATAGRAM:
            out.append(b"[" + head + b",[" + b",".join(part) + b"]]")
            part, size = [], 0
        part.append(b)
        size += len(b) + 1
    if part:
        out.append(b"[" + head + b",[" + b",".join(part) + b"]]")
    return out


def _relay(engine: Engine, mesh: Mesh | None) -> Relay | None:
    """The worker's relay, when it has peers and a parser that shares (switched to sharing here); its
    hello goes out with the first ``send``."""
    if mesh is None:
        return None
    shares = {n: p.share() for n, p in engine.parsers.items() if p.share is not None}
    me, rx, peers = mesh
    return Relay(rx, peers, shares, me) if shares else None


def fanout_program(engine_cfg: EngineConfig) -> list | None:
    """The fanout group's demux (capture/fanout_bpf): all of SIP to one worker when records join the
    messages of a call, which may be more than one flow (call summaries, rtp's SDP announcements): SIP's
    ports and, with the SIP heuristic on, payloads starting as SIP does on any other port; else
    None, the kernel's hash by flow (SIP spread over the workers too).  Also None when SIP listens on
    more ports than the program can test (then as before: a call's flows may land on different workers)."""
    sip = engine_cfg.settings.get("sip") or SipConfig()
    if not (sip.call_summaries or "rtp" in engine_cfg.parsers) or "sip" not in engine_cfg.parsers:
        return None
    try:
        return sip_affinity(tuple(sip.ports), sip.heuristic)
    except ValueError:
        return None


def _capture_loop(cfg: LiveConfig, engine_cfg: EngineConfig, emit_lines: Callable,
                  stop: Callable[[], bool], worker: int | None, socks: list[socket.socket] | None,
                  on_stats: Callable[[dict], None] | None = None,
                  mesh: Mesh | None = None) -> dict:
    """Capture until stopped; returns this process's summary.  ``socks``: a fanout worker's sockets,
    made by the parent (``_run_workers``); None: this process captures alone, on sockets of its own."""
    engine = build_engine(engine_cfg, emit_lines, worker)
    relay = _relay(engine, mesh)
    fanout = socks is not None
    prog = fanout_program(engine_cfg) if fanout else None
    cap = LiveCapture(cfg.interfaces, cfg.filter_expr, cfg.ring, socks=socks)
    writer = None
    if cfg.pcap_path:
        path = cfg.pcap_path if worker is None else f"{cfg.pcap_path.removesuffix('.pcap')}-w{worker}.pcap"
        writer = RotatingPcapWriter(path, cap.rings[0].linktype, cfg.pcap_max_bytes, cfg.pcap_max_files,
                                    cfg.ring.snaplen)
    start = time.monotonic()
    next_stats = start + cfg.stats_interval_s
    next_tick = start + TICK_S
    packets = 0
    # stage latencies: a batch's processing time, and capture time to records written
    lat_batch, lat_e2e = Histogram(), Histogram()

    def snapshot() -> dict:
        s = {**engine.summary(), "kernel": cap.stats(), "report": engine.report(),
             "latency": {"batch": lat_batch.as_dict(), "capture_to_record": lat_e2e.as_dict()}}
        if writer is not None:
            s["pcap_out"] = {"packets": writer.packets, "rotations": writer.rotations, "deleted": writer.deleted,
                             "files": len(writer.files)}
        if relay is not None:
            s["relay"] = relay.stats()
        if fanout:
            s["fanout"] = {"sip_affinity": 1 if prog is not None else 0}
        return s
    try:
        while not stop():
            if on_stats is not None and time.monotonic() >= next_stats:
                next_stats += cfg.stats_interval_s
                on_stats(snapshot())
            if cfg.duration_s is not None and time.monotonic() - start >= cfg.duration_s:
                break
            if relay is not None:   # also while no packets come: held RTP waits for these
                relay.receive()
                relay.send()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                engine.tick(time.time_ns())    # packet timestamps are wall-clock ns
                engine.flush()
            for batch in cap.batches(100):
                t0 = time.perf_counter()
                if relay is not None:   # the peers' announcements before this batch's RTP, ours right after
                    relay.receive()
                    engine.feed(batch)
                    relay.send()
                else:
                    engine.feed(batch)
                packets += batch.n
                if writer is not None:
                    for i in range(batch.n):
                        writer.write(batch.ts_ns[i], batch.packet(i), batch.wirelens[i])
                engine.flush()
                lat_batch.observe(time.perf_counter() - t0)
                if batch.n:
                    lat_e2e.observe(max(0.0, time.time() - batch.ts_ns[batch.n - 1] / 1e9))
            if cfg.max_packets is not None and packets >= cfg.max_packets:
                break
        # drain what the kernel already holds
        for batch in cap.batches(0):
            if relay is not None:
                relay.receive()
            engine.feed(batch)
        if relay is not None:   # the last word both ways (a peer stopping at the same time may miss ours)
            relay.receive()
            relay.send()
        engine.finish()
        s = snapshot()
        s["report"] = engine.close(cfg.kafka.flush_timeout_s if cfg.kafka is not None else 0)
    finally:
        cap.close()
        if writer is not None:
            writer.close()
    return s


def _worker_main(conn, worker: int, socks: list[list[socket.socket]], cfg: LiveConfig, engine_cfg: EngineConfig,
                 mesh: Mesh | None = None) -> None:
    """Worker ``worker`` captures on its sockets, ``socks[worker]`` (inherited: the others' it closes, its
    own it maps)."""
    stop = _Stop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, stop)
    quiet_gc()        # a process of its own running one capture loop
    out = None
    for j, theirs in enumerate(socks):
        if j != worker:
            for sock in theirs:
                sock.close()   # this process's copy only: the parent's keeps the socket in its group
    try:
        write = conn.send_bytes
        if cfg.output_path is not None:
            out = open(cfg.output_path, "ab", buffering=0)   # each write: whole lines, appended atomically
            write = out.write
        summary = _capture_loop(cfg, engine_cfg, write, lambda: stop.flag, worker, socks[worker],
                                lambda st: conn.send_bytes(b"\0STATS" + json.dumps(st).encode()), mesh)
        conn.send_bytes(b"\0SUMMARY" + json.dumps(summary).encode())
    except CaptureError as e:
        conn.send_bytes(b"\0ERROR" + str(e).encode())
    except Exception as e:  # report it: the parent prints one line and stops
        conn.send_bytes(b"\0ERROR" + f"worker {worker} failed: {type(e).__name__}: {e}".encode())
    finally:
        if out is not None:
            out.close()
        conn.close()


def run_live(cfg: LiveConfig, pipe_cfg: DatagramConfig, sip_cfg: SipConfig, write: Callable[[bytes], None]) -> dict:
    """Capture with ``cfg.workers`` processes; records go to ``write``; returns the merged summary.

    SIGINT and SIGTERM stop the capture cleanly (counters flushed, summary returned)."""
    engine_cfg = cfg.engine_config(pipe_cfg, sip_cfg)
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if cfg.workers <= 1:
            s = _capture_loop(cfg, engine_cfg, write, lambda: stop.flag, None, None, cfg.on_stats)
            s["workers"] = 1
            return s
        return _run_workers(cfg, engine_cfg, write, stop)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _run_workers(cfg: LiveConfig, engine_cfg: EngineConfig, write: Callable[[bytes], None], stop: _Stop) -> dict:
    ctx = mp.get_context("fork")
    procs: dict[int, tuple] = {}
    restarts = 0
    summaries: list[dict] = []
    latest: dict[int, dict] = {}
    errors: list[str] = []
    # the workers' sockets, made here (a bad filter, interface or privilege fails here, once) one worker
    # after the other, so worker i is member i of each interface's group (all of SIP goes to member 0,
    # capture/fanout_bpf), and kept here: a worker that dies keeps its place in the group (else the kernel
    # moves the last member into it, and flows move between workers: a stream reported in two parts) and
    # the packets that come until it is back wait in its ring (full: counted as the kernel's drops)
    # (each interface's group is new, its id the kernel's: never another process's group)
    prog = fanout_program(engine_cfg)
    socks: list[list[socket.socket]] = []
    groups = [NEW_GROUP] * len(cfg.interfaces)
    try:
        for _ in range(cfg.workers):
            socks.append(LiveCapture.open_sockets(cfg.interfaces, cfg.filter_expr, cfg.ring, groups, prog))
            groups = [fanout_id(sock) for sock in socks[0]]
    except BaseException:
        for theirs in socks:
            for sock in theirs:
                sock.close()
        raise
    # the sharing mesh (Relay): pair i's first end is worker i's to read, its second the others' to write
    mesh = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(cfg.workers)]
    for pair in mesh:
        for sock in pair:
            sock.setblocking(False)

    def start(i: int) -> None:
        parent_end, child_end = ctx.Pipe(duplex=False)
        ends = (i, mesh[i][0], {j: mesh[j][1] for j in range(cfg.workers) if j != i})
        p = ctx.Process(target=_worker_main, args=(child_end, i, socks, cfg, engine_cfg, ends), daemon=True)
        p.start()
        child_end.close()
        procs[i] = (p, parent_end, False)

    try:
        for i in range(cfg.workers):
            start(i)
        deadline = None if cfg.duration_s is None else time.monotonic() + cfg.duration_s
        stopping = False
        while procs:
            if not stopping and (stop.flag or (deadline is not None and time.monotonic() >= deadline)):
                stopping = True
                for p, _, _ in procs.values():
                    p.terminate()  # SIGTERM: the worker drains, flushes and reports
            for conn in wait([c for _, c, _ in procs.values()], timeout=0.2):
                i = next(k for k, v in procs.items() if v[1] is conn)
                try:
                    data = procs[i][1].recv_bytes()
                except (EOFError, OSError):
                    p = procs.pop(i)[0]
                    p.join(5)
                    if not stopping and not errors:
                        restarts += 1
                        if restarts > MAX_RESTARTS:
                            errors.append(f"capture workers died {restarts} times; giving up")
                            stop.flag = True
                        else:
                            start(i)
                    continue
                if data.startswith(b"\0STATS"):
                    latest[i] = json.loads(data[6:])
                    if cfg.on_stats is not None:
                        merged_now: dict = {}
                        for st in latest.values():
                            merged_now = merge_counts(merged_now, st)
                        cfg.on_stats(merged_now)
                elif data.startswith(b"\0SUMMARY"):
                    summaries.append(json.loads(data[8:]))
                elif data.startswith(b"\0ERROR"):
                    errors.append(data[6:].decode())
                    stop.flag = True
                else:
                    write(data)
    finally:
        for pair in mesh:
            for sock in pair:
                sock.close()
        for theirs in socks:
            for sock in theirs:
                sock.close()
    if errors:
        raise CaptureError(errors[0])
    merged: dict = {}
    for s in summaries:
        merged = merge_counts(merged, s)
    merged["workers"] = cfg.workers
    merged["worker_restarts"] = restarts
    merged["per_worker_packets"] = [s.get("packets", 0) for s in summaries]
    return merged
