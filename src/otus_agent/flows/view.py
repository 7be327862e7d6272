"""The daemon's window on a live flow table: a Unix socket served by a thread of the capture process.

The flow table lives in the capture process (each fanout worker has its own), the HTTP API in the
daemon; ``/api/v1/connections`` and ``/api/v1/icmp`` ask every capture process of a task through
``<view_dir>/<pid>.sock`` (mode 0600, in the daemon's state directory).  One request per connection:
a JSON line (``{"what": "connections", ...}`` or ``{"what": "icmp", ...}``), one JSON reply, close.

The thread only reads: it takes a snapshot of the table's flows (``list(dict.values())`` is one step
under the GIL) and renders the rows it returns; a row's counters may be one packet apart from each
other, never torn objects.  Bounds: a request line of ``REQUEST_MAX`` bytes, ``ROWS_MAX`` rows per
answer, one request at a time (others wait in the listen backlog, then time out at the daemon).  The
capture path never waits for it beyond the GIL time the filter takes (a scan of at most
``FlowConfig.max_flows`` flows).
"""
from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Literal

import orjson

from otus_agent.flows.records import address
from otus_agent.flows.table import PROTO_NAMES, STATE_NAMES
from otus_agent.flows.walk_cy import Flow, flow_record

if TYPE_CHECKING:
    from otus_agent.flows.stage import FlowStage

log = logging.getLogger("otus.flows.view")
REQUEST_MAX = 4096
ROWS_MAX = 20_000       # rows one answer carries at most (the daemon pages over them)
SUN_PATH_MAX = 107      # sockaddr_un.sun_path, less its NUL
PROTO_NUMBERS = {v: k for k, v in PROTO_NAMES.items()}
# the filter values, as the API's schema spells them (tests/agent/flows/test_flow_view.py: equal to the table's)
FlowProto = Literal["tcp", "udp", "icmp", "icmpv6", "sctp"]
TcpState = Literal["none", "syn_sent", "syn_received", "established", "half_closed", "closed", "reset"]


def connections(stage: FlowStage, proto: str | None = None, ip: str | None = None, port: int | None = None,
                state: str | None = None, limit: int = 100) -> dict:
    """The flows matching every given filter, in creation order: their number and the first ``limit``."""
    pnum = PROTO_NUMBERS.get(proto, -1) if proto is not None else None
    raw = None
    if ip is not None:
        try:
            raw = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        except OSError:
            return {"total": 0, "connections": []}
    snum = STATE_NAMES.index(state) if state in STATE_NAMES else (-1 if state is not None else None)
    limit = max(0, min(limit, ROWS_MAX))
    hits = []
    for f in list(stage.flows.values()):
        if pnum is not None and f.proto != pnum:
            continue
        if port is not None and port != f.sport and port != f.dport:
            continue
        if raw is not None and raw != f.src and raw != f.dst:
            continue
        if snum is not None and (f.proto != 6 or f.state != snum):
            continue
        hits.append(f)
    first = heapq.nsmallest(limit, hits, key=flow_order) if len(hits) > limit else sorted(hits, key=flow_order)
    now = stage.now_ns
    return {"total": len(hits), "connections": [flow_record(f, "active", now) for f in first]}


def flow_order(f: Flow) -> tuple:
    """The order of connection pages: oldest first, then by five-tuple (``row_order`` of the same row)."""
    return f.first_ns, f.ipver, f.proto, f.src, f.sport, f.dst, f.dport


def row_order(r: dict) -> tuple:
    """``flow_order`` from a rendered row (the daemon merges the processes' pages with it)."""
    fam = socket.AF_INET6 if r["ipver"] == 6 else socket.AF_INET
    proto = PROTO_NUMBERS.get(r["proto"])
    return (r["first_ts"], r["ipver"], proto if proto is not None else int(r["proto"]),
            socket.inet_pton(fam, r["src_ip"]), r["src_port"], socket.inet_pton(fam, r["dst_ip"]), r["dst_port"])


def icmp(stage: FlowStage, limit: int = 100) -> dict:
    """ICMP counts by (version, type, code), the error join counters, and the last errors, newest first."""
    errors: list[dict] = []
    for t, rep, typ, code, ipver, proto, src, dst, sp, dp, joined in reversed(list(stage.icmp_recent)):
        if len(errors) >= limit:
            break
        errors.append({"ts": t, "reporter": address(rep) if rep else None, "version": ipver, "icmp_type": typ,
                       "icmp_code": code, "joined": joined,
                       "flow": {"proto": PROTO_NAMES.get(proto, str(proto)), "src_ip": address(src), "src_port": sp,
                                "dst_ip": address(dst), "dst_port": dp}})
    return {"types": [{"version": v, "type": t, "code": c, "packets": n}
                      for (v, t, c), n in sorted(stage.icmp_types.items())],
            "errors_joined": stage.icmp_errors_joined, "errors_unmatched": stage.icmp_errors_unmatched,
            "truncated": stage.icmp_truncated, "errors": errors}


LOOKUP_MAX = 100        # five-tuples one lookup asks about


def lookup(stage: FlowStage, flows: Any) -> dict:
    """Which of ``flows`` ([proto, src_ip, src_port, dst_ip, dst_port], either direction) the table holds: the
    daemon joins an ICMP error that another fanout worker saw (PACKET_FANOUT hashes it apart from its flow)."""
    if not isinstance(flows, list) or len(flows) > LOOKUP_MAX:
        raise ValueError(f"flows: a list of at most {LOOKUP_MAX} five-tuples")
    found = []
    for t in flows:
        try:
            proto, src, sp, dst, dp = t
            fam = socket.AF_INET6 if ":" in src else socket.AF_INET
            a, b, p = socket.inet_pton(fam, src), socket.inet_pton(fam, dst), PROTO_NUMBERS[proto]
        except (TypeError, ValueError, KeyError, OSError):
            raise ValueError("flows: each is [proto, src_ip, src_port, dst_ip, dst_port]") from None
        found.append((a, b, sp, dp, p) in stage.flows or (b, a, dp, sp, p) in stage.flows)
    return {"found": found}


def answer(stage: FlowStage, req: Any) -> dict:
    """One request (already decoded JSON) to its reply; a bad request gets ``{"error": ...}``."""
    if not isinstance(req, dict):
        return {"error": "request must be a JSON object"}
    what = req.get("what")

    def opt(name: str, kind: type) -> Any:
        v = req.get(name)
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise ValueError(f"{name}: expected {kind.__name__}")
        return v
    try:
        limit = opt("limit", int)
        limit = 100 if limit is None else limit
        if what == "connections":
            return connections(stage, opt("proto", str), opt("ip", str), opt("port", int), opt("state", str), limit)
        if what == "icmp":
            return icmp(stage, limit)
        if what == "lookup":
            return lookup(stage, req.get("flows"))
    except ValueError as e:
        return {"error": str(e)}
    return {"error": f"unknown request {what!r}"}


class ViewServer:
    """Serves ``answer`` on ``<view_dir>/<pid>.sock`` from a daemon thread until ``close``."""

    def __init__(self, path: str, stage: FlowStage):
        self.path, self.stage = path, stage
        self.requests = self.errors = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock.bind(path)
        os.chmod(path, 0o600)
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otus-flow-view", daemon=True)
        self.thread.start()

    @classmethod
    def open(cls, view_dir: str, stage: FlowStage) -> ViewServer | None:
        """The view of ``stage`` in ``view_dir``; None (logged) when it cannot be made: the capture goes on."""
        path = os.path.join(view_dir, f"{os.getpid()}.sock")
        if len(path.encode()) > SUN_PATH_MAX:
            log.warning(f"flow view off: socket path too long ({path})")
            return None
        try:
            os.makedirs(view_dir, mode=0o700, exist_ok=True)
            return cls(path, stage)
        except OSError as e:
            log.warning(f"flow view off: {path}: {e}")
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                self._serve(conn)
            except Exception as e:   # a bad client or a bug must not end the view, nor the capture
                self.errors += 1
                log.debug(f"flow view request failed: {type(e).__name__}: {e}")
            finally:
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        data = b""
        while b"\n" not in data and len(data) <= REQUEST_MAX:
            chunk = conn.recv(REQUEST_MAX + 1)
            if not chunk:
                break
            data += chunk
        self.requests += 1
        if len(data) > REQUEST_MAX:
            reply: dict = {"error": "request too large"}
        else:
            try:
                reply = answer(self.stage, orjson.loads(data.split(b"\n", 1)[0]))
            except orjson.JSONDecodeError:
                reply = {"error": "request is not JSON"}
        conn.sendall(orjson.dumps(reply) + b"\n")

    def counters(self) -> dict:
        return {"requests": self.requests, "errors": self.errors}

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self.thread.join(2)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
