"""The console's record store: the last calls and their messages, in memory, bounded.

A window for people, not a database (Kafka stays the system of record).  Limits, each with a
counter: ``max_calls`` calls (the least recently updated call is evicted whole:
``evicted_calls``), ``max_bytes`` of stored record text across all calls (same eviction), and
``messages_per_call`` messages per call (later ones are counted in ``dropped_messages``, the call
itself stays), and ``MEDIA_PER_CALL`` media streams per call (each stream's latest media record,
interim or final; more streams are counted in ``dropped_media``).  Messages are kept as their JSON
line (bytes) and parsed again when asked for: a third of the memory of a dict.  A bounded feed
(``feed_max`` entries) carries new records to the live stream; a reader that falls further behind is
told how many it missed.
Thread-safe: the tap thread adds, HTTP handlers read.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

MEDIA_PER_CALL = 16
# what the console shows of a media record (issue 16's fields); the rest stays in Kafka
MEDIA_KEYS = ("direction", "src_ip", "src_port", "dst_ip", "dst_port", "ssrc", "codec", "packets", "lost",
              "loss_ratio", "duplicates", "out_of_order", "max_delta_ms", "mean_jitter_ms", "max_jitter_ms",
              "rtt_ms", "mos", "r_factor", "start_ts", "end_ts", "final", "end_reason")


def endpoint(ip: Any, port: Any) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class Call:
    call_id: str
    first_ts: int
    last_ts: int
    from_user: str | None = None
    to_user: str | None = None
    state: str = "new"
    final_status: int | None = None
    answer_ts: int | None = None
    end_ts: int | None = None
    summary_duration_ms: float | None = None
    agents: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    retrans: list[bool] = field(default_factory=list)
    keys: set[tuple] = field(default_factory=set)
    dropped_messages: int = 0
    size: int = 0
    method: str | None = None     # the method of the call's first request (INVITE, REGISTER...)
    media: dict[tuple, dict] = field(default_factory=dict)   # stream -> its latest media record (MEDIA_KEYS)

    def view(self) -> dict:
        if self.summary_duration_ms is not None:
            duration = self.summary_duration_ms / 1000
        elif self.answer_ts is not None:
            duration = ((self.end_ts or self.last_ts) - self.answer_ts) / 1e9
        else:
            duration = (self.last_ts - self.first_ts) / 1e9
        return {"call_id": self.call_id, "state": self.state, "method": self.method, "from_user": self.from_user,
                "to_user": self.to_user, "start": self.first_ts / 1e9, "last": self.last_ts / 1e9,
                "duration_s": round(duration, 3), "final_status": self.final_status, "agents": list(self.agents),
                "tasks": list(self.tasks), "messages": len(self.messages), "dropped_messages": self.dropped_messages,
                "retransmissions": sum(self.retrans), "media": list(self.media.values()),
                "worst_mos": min((m["mos"] for m in self.media.values() if isinstance(m.get("mos"), (int, float))),
                                 default=None)}


def _retrans_key(r: dict) -> tuple:
    """Same message again: same capture point, hop, transaction (branch, CSeq) and first line (the
    same message seen by two agents is two captures, not a retransmission)."""
    return (r.get("agent"), r.get("src_ip"), r.get("src_port"), r.get("dst_ip"), r.get("dst_port"), r.get("via_branch"),
            r.get("cseq_num"), r.get("cseq_method"), r.get("method"), r.get("status_code"))


def _advance(c: Call, r: dict) -> None:
    """The call's state from one SIP message (RFC 3261 INVITE dialog, coarse)."""
    method, code, cm = r.get("method"), r.get("status_code"), r.get("cseq_method")
    if method is not None:
        if c.method is None:
            c.method = method
        if method == "INVITE" and c.state in ("new",):
            c.state = "calling"
        elif method == "BYE" and c.state not in ("failed",):
            c.state, c.end_ts = "ended", r["ts"]
        elif method == "CANCEL" and c.state in ("calling", "ringing", "trying"):
            c.state = "cancelled"
        elif c.state == "new":
            c.state = method.lower()
        return
    if not isinstance(code, int):
        return
    if cm == "INVITE":
        if code < 200:
            if c.state in ("new", "calling", "trying"):
                c.state = "trying" if code == 100 else "ringing"
        elif code < 300:
            if c.answer_ts is None:
                c.answer_ts = r["ts"]
                c.final_status = code
            if c.state not in ("ended",):
                c.state = "answered"
        elif c.final_status is None or c.final_status < 300:
            if c.answer_ts is None:   # a failure after the answer belongs to a re-INVITE: the call stands
                c.final_status, c.end_ts = code, r["ts"]
                c.state = "cancelled" if code == 487 and c.state == "cancelled" else "failed"
    elif code >= 200 and c.method == cm and c.method != "INVITE" and c.final_status is None:
        c.final_status = code
        c.state = "completed" if code < 300 else "failed"


class RecordStore:
    def __init__(self, max_calls: int = 1000, max_bytes: int = 64 << 20, messages_per_call: int = 200,
                 feed_max: int = 10_000):
        self.max_calls, self.max_bytes, self.messages_per_call = max_calls, max_bytes, messages_per_call
        self.calls: OrderedDict[str, Call] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()
        self.feed: deque[tuple[int, bytes, str | None]] = deque(maxlen=feed_max)
        self.seq = 0
        self.records = self.evicted_calls = self.dropped_messages = self.without_call_id = self.bad_records = 0
        self.other_records = 0      # records of other types the tap carries (flow, dns, alert): not kept
        self.dropped_media = 0      # media streams past MEDIA_PER_CALL

    # ------------------------------------------------------------ writing
    def add_line(self, line: bytes) -> None:
        """One JSON record as the tap or Kafka delivers it; a line that is not a record is counted."""
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.bad_records += 1
            return
        if not isinstance(rec, dict) or not isinstance(rec.get("ts", 0), int):
            self.bad_records += 1
            return
        if rec.get("type") == "media" and isinstance(rec.get("call_id"), str) and rec["call_id"]:
            self._media(rec)
            return
        if rec.get("type") not in ("sip", "call"):
            if isinstance(rec.get("type"), str):   # another parser's record (flow, dns, alert): not a call's
                self.other_records += 1
            else:
                self.bad_records += 1
            return
        self.add(rec, bytes(line))

    def add(self, rec: dict, line: bytes | None = None) -> None:
        cid = rec.get("call_id")
        data = line if line is not None else orjson.dumps(rec)
        with self.lock:
            self.records += 1
            self.seq += 1
            self.feed.append((self.seq, data, cid if isinstance(cid, str) else None))
            if not isinstance(cid, str) or not cid:
                self.without_call_id += 1
                return
            if rec.get("type") == "call":
                self._summary(cid, rec)
            else:
                self._message(cid, rec, data)
            self._evict()

    def _media(self, rec: dict) -> None:
        """A media record: the stream's latest figures on its call (a stream before any SIP of its call
        opens the call, as a SIP record would)."""
        m = {k: rec.get(k) for k in MEDIA_KEYS}
        key = (m["ssrc"], m["src_ip"], m["src_port"], m["dst_ip"], m["dst_port"])
        ts = rec.get("start_ts")
        with self.lock:
            self.records += 1
            c = self._get(rec["call_id"], ts if isinstance(ts, int) else 0)
            if key not in c.media and len(c.media) >= MEDIA_PER_CALL:
                self.dropped_media += 1
                return
            c.media[key] = m
            self._evict()

    def _get(self, cid: str, ts: int) -> Call:
        c = self.calls.get(cid)
        if c is None:
            c = self.calls[cid] = Call(cid, ts, ts)
        else:
            self.calls.move_to_end(cid)
        return c

    def _summary(self, cid: str, rec: dict) -> None:
        c = self._get(cid, int(rec.get("start_ts") or 0))
        c.state = str(rec.get("state") or c.state)
        if isinstance(rec.get("final_status"), int):
            c.final_status = rec["final_status"]
        if isinstance(rec.get("duration_ms"), (int, float)):
            c.summary_duration_ms = float(rec["duration_ms"])
        c.from_user = c.from_user or rec.get("from_user")
        c.to_user = c.to_user or rec.get("to_user")

    def _message(self, cid: str, rec: dict, data: bytes) -> None:
        ts = rec.get("ts")
        ts = ts if isinstance(ts, int) else 0
        c = self._get(cid, ts)
        c.first_ts, c.last_ts = min(c.first_ts, ts), max(c.last_ts, ts)
        if c.from_user is None and rec.get("from_user") is not None:
            c.from_user, c.to_user = str(rec.get("from_user")), rec.get("to_user")
        for key, items in (("agent", c.agents), ("task", c.tasks)):
            v = rec.get(key)
            if isinstance(v, str) and v not in items and len(items) < 8:
                items.append(v)
        if len(c.messages) >= self.messages_per_call:
            c.dropped_messages += 1
            self.dropped_messages += 1
            return
        k = _retrans_key(rec)
        c.retrans.append(k in c.keys)
        c.keys.add(k)
        c.messages.append(data)
        c.size += len(data)
        self.bytes += len(data)
        _advance(c, rec)

    def _evict(self) -> None:
        while self.calls and (len(self.calls) > self.max_calls or self.bytes > self.max_bytes):
            _, old = self.calls.popitem(last=False)
            self.bytes -= old.size
            self.evicted_calls += 1

    # ------------------------------------------------------------ reading
    def query(self, call_id: str | None = None, from_user: str | None = None, to_user: str | None = None,
              since: float | None = None, until: float | None = None, status: str | None = None,
              q: str | None = None, limit: int = 200) -> list[dict]:
        """Newest first.  Text filters match a substring, case-insensitively; ``status`` is a final
        status code (``486``), a class (``4xx``) or a state (``answered``)."""
        def has(v: str | None, want: str | None) -> bool:
            return want is None or (v is not None and want.lower() in v.lower())
        out = []
        with self.lock:
            calls = list(reversed(self.calls.values()))
        for c in calls:
            if not (has(c.call_id, call_id) and has(c.from_user, from_user) and has(c.to_user, to_user)):
                continue
            if since is not None and c.last_ts / 1e9 < since or until is not None and c.first_ts / 1e9 > until:
                continue
            if status is not None and not _status_match(c, status):
                continue
            if q and not any(has(v, q) for v in (c.call_id, c.from_user, c.to_user, c.state)):
                continue
            out.append(c.view())
            if len(out) >= limit:
                break
        return out

    def call(self, call_id: str) -> dict | None:
        with self.lock:
            c = self.calls.get(call_id)
            return None if c is None else c.view()

    def messages(self, call_id: str) -> list[dict] | None:
        """The call's messages in capture order, each with its hop and retransmission mark."""
        with self.lock:
            c = self.calls.get(call_id)
            if c is None:
                return None
            pairs = list(zip(c.messages, c.retrans))
        out = []
        for i, (data, re) in enumerate(pairs):
            r = orjson.loads(data)
            out.append({"index": i, "ts": r.get("ts"), "src": endpoint(r.get("src_ip"), r.get("src_port")),
                        "dst": endpoint(r.get("dst_ip"), r.get("dst_port")), "retransmission": re,
                        "agent": r.get("agent"),
                        "label": r.get("method") or f"{r.get('status_code')} {r.get('reason_phrase') or ''}".strip(),
                        "record": r})
        out.sort(key=lambda m: (m["ts"] or 0, m["index"]))
        return out

    def since(self, seq: int, limit: int = 2000) -> tuple[int, int, list[tuple[int, bytes, str | None]]]:
        """Feed entries after ``seq``: (new last seq, entries missed, entries)."""
        with self.lock:
            if not self.feed or self.feed[-1][0] <= seq:
                return min(seq, self.seq), 0, []
            first = self.feed[0][0]
            missed = max(0, first - seq - 1)
            start = max(0, seq + 1 - first)
            items = [self.feed[i] for i in range(start, min(len(self.feed), start + limit))]
        return items[-1][0], missed, items

    def stats(self) -> dict:
        with self.lock:
            return {"calls": len(self.calls), "max_calls": self.max_calls, "bytes": self.bytes,
                    "max_bytes": self.max_bytes, "messages_per_call": self.messages_per_call,
                    "records": self.records, "evicted_calls": self.evicted_calls,
                    "dropped_messages": self.dropped_messages, "without_call_id": self.without_call_id,
                    "bad_records": self.bad_records, "other_records": self.other_records,
                    "dropped_media": self.dropped_media, "feed": len(self.feed),
                    "feed_max": self.feed.maxlen}

    def metrics(self) -> Iterable[tuple[str, str, str, float]]:
        """(name, type, help, value) for the Prometheus text endpoint."""
        s = self.stats()
        yield "otus_console_calls", "gauge", "calls held by the console store", s["calls"]
        yield "otus_console_bytes", "gauge", "record bytes held by the console store", s["bytes"]
        yield "otus_console_records_total", "counter", "records the console store received", s["records"]
        yield "otus_console_evicted_calls_total", "counter", "calls evicted (call or byte limit)", s["evicted_calls"]
        yield ("otus_console_dropped_messages_total", "counter", "messages not kept (per-call limit)",
               s["dropped_messages"])


def _status_match(c: Call, want: str) -> bool:
    w = want.strip().lower()
    if w.isdigit():
        return c.final_status == int(w)
    if len(w) == 3 and w[0].isdigit() and w[1:] == "xx":
        return c.final_status is not None and c.final_status // 100 == int(w[0])
    return c.state == w
