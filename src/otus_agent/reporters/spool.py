"""A bounded, crash-safe, first-in-first-out disk spool of (key, value) records.

Every record is appended here before it is sent, and the durable cursor only
moves past a record once the sink confirmed it, so records survive a broker
outage and an agent restart (at least once: a record confirmed just before a
crash, whose cursor update was lost, is sent again).

Layout: ``seg-NNNNNNNNNNNN.log`` files of ``[u32 length][u64 ms][u16 keylen]
[key][value]`` records, and ``cursor.json`` (first unconfirmed record),
replaced atomically.  A torn record at the end of the last segment (a crash
mid-write) is cut off at start-up.  When the spool holds ``max_bytes``, the
policy applies: ``drop-newest`` counts and drops new records, ``block`` makes
the writer wait (the capture then falls behind and the kernel counts drops).
"""
from __future__ import annotations

import json
import os
import struct
import threading
import time

HDR = struct.Struct("<IQH")
MAX_RECORD = 16 << 20


class Spool:
    def __init__(self, directory: str, max_bytes: int = 1 << 30, segment_bytes: int = 16 << 20,
                 policy: str = "drop-newest"):
        if policy not in ("drop-newest", "block"):
            raise ValueError(f"spool policy must be drop-newest or block, not {policy!r}")
        if max_bytes < segment_bytes or segment_bytes < 4096:
            raise ValueError("spool: max_bytes >= segment_bytes >= 4096")
        os.makedirs(directory, mode=0o750, exist_ok=True)
        self.dir, self.max_bytes, self.segment_bytes, self.policy = directory, max_bytes, segment_bytes, policy
        self.lock = threading.Condition()
        self.appended = 0
        self.dropped = 0
        self.acked = 0
        self._recover()

    # ------------------------------------------------------------ layout
    def _seg_path(self, n: int) -> str:
        return os.path.join(self.dir, f"seg-{n:012d}.log")

    def _segments(self) -> list[int]:
        return sorted(int(f[4:16]) for f in os.listdir(self.dir) if f.startswith("seg-") and f.endswith(".log"))

    def _recover(self) -> None:
        segs = self._segments()
        cur = {"segment": segs[0] if segs else 1, "offset": 0}
        try:
            with open(os.path.join(self.dir, "cursor.json")) as f:
                cur = json.load(f)
        except (FileNotFoundError, ValueError):
            pass
        self.cursor = (int(cur["segment"]), int(cur["offset"]))
        for n in segs:
            if n < self.cursor[0]:
                os.unlink(self._seg_path(n))  # fully confirmed before the stop
        segs = [n for n in segs if n >= self.cursor[0]] or [self.cursor[0]]
        last = segs[-1]
        path = self._seg_path(last)
        good = self._valid_length(path)
        if os.path.exists(path) and os.path.getsize(path) != good:
            with open(path, "r+b") as f:
                f.truncate(good)  # a torn record from a crash mid-write
        self.write_seg = last
        self.wf = open(path, "ab")
        self.read_pos = self.cursor  # where the next read() starts
        self.size = sum(os.path.getsize(self._seg_path(n)) for n in segs if os.path.exists(self._seg_path(n))) \
            - self.cursor[1]

    @staticmethod
    def _valid_length(path: str) -> int:
        if not os.path.exists(path):
            return 0
        good = 0
        with open(path, "rb") as f:
            while True:
                h = f.read(HDR.size)
                if len(h) < HDR.size:
                    return good
                ln, _, kl = HDR.unpack(h)
                if ln > MAX_RECORD or kl > ln:
                    return good
                body = f.read(ln)
                if len(body) < ln:
                    return good
                good += HDR.size + ln

    # ------------------------------------------------------------ writer side
    def append(self, records: list[tuple[bytes, bytes]], timeout: float | None = None) -> int:
        """Append records; returns how many were kept (the rest were dropped and counted)."""
        now = int(time.time() * 1000)
        buf = bytearray()
        kept = 0
        with self.lock:
            for key, value in records:
                n = HDR.size + len(key) + len(value)
                if len(key) + len(value) > MAX_RECORD or len(key) > 0xFFFF:
                    self.dropped += 1
                    continue
                if self.size + len(buf) + n > self.max_bytes:
                    if self.policy == "block":
                        self._flush(buf)
                        buf.clear()
                        if not self.lock.wait_for(lambda: self.size + n <= self.max_bytes, timeout):
                            self.dropped += 1
                            continue
                    else:
                        self.dropped += 1
                        continue
                buf += HDR.pack(len(key) + len(value), now, len(key)) + key + value
                kept += 1
            self._flush(buf)
            self.appended += kept
            self.lock.notify_all()
        return kept

    def _flush(self, buf: bytearray) -> None:
        if not buf:
            return
        if self.wf.tell() + len(buf) > self.segment_bytes and self.wf.tell() > 0:
            self.wf.close()
            self.write_seg += 1
            self.wf = open(self._seg_path(self.write_seg), "ab")
        self.wf.write(buf)
        self.wf.flush()  # in the page cache: survives the process; fsync on close/roll
        self.size += len(buf)

    # ------------------------------------------------------------ reader side
    def read(self, max_records: int) -> list[tuple[tuple[int, int], bytes, bytes, int]]:
        """Up to max_records records after the last one read: ((segment, end offset), key, value, ms)."""
        out = []
        with self.lock:
            seg, off = self.read_pos
            while len(out) < max_records:
                path = self._seg_path(seg)
                try:
                    f = open(path, "rb")
                except FileNotFoundError:
                    break
                with f:
                    f.seek(off)
                    while len(out) < max_records:
                        h = f.read(HDR.size)
                        if len(h) < HDR.size:
                            break
                        ln, ms, kl = HDR.unpack(h)
                        body = f.read(ln)
                        if len(body) < ln:
                            break
                        off += HDR.size + ln
                        out.append(((seg, off), body[:kl], body[kl:], ms))
                if len(out) < max_records and seg < self.write_seg:
                    seg, off = seg + 1, 0
                    continue
                break
            self.read_pos = (seg, off)
        return out

    def rewind(self) -> None:
        """Read again from the durable cursor (after the sink lost what it was given)."""
        with self.lock:
            self.read_pos = self.cursor

    def ack(self, pos: tuple[int, int], count: int) -> None:
        """Everything up to ``pos`` is confirmed: move the durable cursor, drop old segments."""
        with self.lock:
            old_seg, old_off = self.cursor
            if pos <= self.cursor:
                return
            freed = 0
            for n in range(old_seg, pos[0]):
                p = self._seg_path(n)
                if os.path.exists(p):
                    freed += os.path.getsize(p) - (old_off if n == old_seg else 0)
                    os.unlink(p)
            freed += pos[1] - (old_off if pos[0] == old_seg else 0)
            self.cursor = pos
            self.size -= freed
            self.acked += count
            tmp = os.path.join(self.dir, "cursor.json.tmp")
            with open(tmp, "w") as f:
                json.dump({"segment": pos[0], "offset": pos[1]}, f)
            os.replace(tmp, os.path.join(self.dir, "cursor.json"))
            self.lock.notify_all()

    def oldest_age_s(self) -> float:
        with self.lock:
            seg, off = self.cursor
            try:
                with open(self._seg_path(seg), "rb") as f:
                    f.seek(off)
                    h = f.read(HDR.size)
            except FileNotFoundError:
                return 0.0
            if len(h) < HDR.size:
                return 0.0
            return max(0.0, time.time() - HDR.unpack(h)[1] / 1000)

    def pending(self) -> int:
        """Bytes not yet confirmed."""
        return self.size

    def stats(self) -> dict:
        return {"spool_bytes": self.size, "spool_oldest_age_s": round(self.oldest_age_s(), 3),
                "spool_appended": self.appended, "spool_dropped": self.dropped, "spool_acked": self.acked}

    def close(self) -> None:
        with self.lock:
            self.wf.flush()
            os.fsync(self.wf.fileno())
            self.wf.close()
