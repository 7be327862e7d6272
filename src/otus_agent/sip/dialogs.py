"""Call state by Call-ID: INVITE -> provisional -> final -> ACK -> BYE / CANCEL.

A bounded table (``max_calls``, oldest evicted, ``evictions`` counted; idle
calls time out on the capture clock).  When a call ends -- BYE answered,
INVITE rejected or cancelled, or timed out -- ``finish`` yields one summary
record: setup time (INVITE to first 18x), answer time (INVITE to 2xx),
duration (2xx to BYE), final status and who ended it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from otus_agent.sip.message_cy import SipMessage

NS_PER_MS = 1_000_000


@dataclass(slots=True)
class Call:
    call_id: str
    from_tag: str | None
    from_user: str | None
    to_user: str | None
    invite_ts: int
    last_ts: int
    ringing_ts: int | None = None
    answer_ts: int | None = None
    end_ts: int | None = None
    final_status: int | None = None
    ended_by: str | None = None
    reinvites: int = 0
    state: str = "trying"         # trying, ringing, answered, failed, cancelled, ended
    to_tag: str | None = None
    bye_pending: bool = False


class DialogTracker:
    def __init__(self, max_calls: int = 100_000, timeout_s: float = 7200.0):
        if max_calls < 1 or timeout_s <= 0:
            raise ValueError("dialog limits: max_calls >= 1, timeout > 0")
        self.max_calls = max_calls
        self.timeout_ns = int(timeout_s * 1e9)
        self.calls: dict[str, Call] = {}
        # the calls in the order they were added, for expiry and eviction: next(iter(self.calls)) walks
        # over every deleted slot at the dict's front (calls end roughly in the order they start), which
        # costs as much as the table is large on every message.  Ended calls are skipped lazily; the
        # queue is rebuilt from the table when it holds more than twice as many (its bound).
        self._order: deque[Call] = deque()
        self.started = 0
        self.completed = 0
        self.evictions = 0
        self.timeouts = 0

    def counters(self) -> dict:
        return {"active": len(self.calls), "started": self.started, "completed": self.completed,
                "evictions": self.evictions, "timeouts": self.timeouts}

    def observe(self, m: SipMessage, ts: int) -> list[dict]:
        """Update state with one parsed message; return summaries of calls that ended."""
        f, t = m.from_, m.to
        return self.observe_fields(
            ts, m.call_id, m.cseq_method, m.method if m.is_request else None, m.status_code or 0,
            f.params.get("tag") if f else None, f.uri.user if f and f.uri else None,
            t.uri.user if t and t.uri else None, t_tag(m))

    def observe_record(self, rec: dict, ts: int) -> list[dict]:
        """Update state from a SIP record (the Python fast path's, whose fields equal the message's)."""
        return self.observe_fields(ts, rec["call_id"], rec["cseq_method"], rec["method"], rec["status_code"] or 0,
                                   rec["from_tag"], rec["from_user"], rec["to_user"], rec["to_tag"])

    def observe_fields(self, ts: int, cid: str | None, cseq_method: str | None, method: str | None, code: int,
                       from_tag: str | None, from_user: str | None, to_user: str | None,
                       to_tag: str | None) -> list[dict]:
        """The state machine on a message's fields (``method`` None: a response with status ``code``).

        ``observe`` feeds it from a parsed message.  The compiled lane's twin, sip/writer_cy.py
        CallTable.step (the same machine over C fields, fed from the scanner's offsets), is checked
        against this one by tests/agent/sip/test_lane_calls.py.  Only the fields the message's kind reads
        need be given: users for an INVITE, the From tag for INVITE and BYE, the To tag for INVITE (only
        whether there is one) and for a 2xx to an INVITE (kept)."""
        out: list[dict] = []
        if self.calls:
            self._expire(ts, out)
        if not cid or cseq_method is None:
            return out
        c = self.calls.get(cid)
        if method is not None:
            if method == "INVITE":
                if c is None:
                    while len(self.calls) >= self.max_calls:
                        del self.calls[self._oldest().call_id]
                        self.evictions += 1
                    c = Call(cid, from_tag, from_user, to_user, ts, ts)
                    self.calls[cid] = c
                    self._order.append(c)
                    if len(self._order) > 2 * len(self.calls) + 1024:
                        self._order = deque(self.calls.values())
                    self.started += 1
                elif to_tag is not None and c.state == "answered":
                    c.reinvites += 1
            elif c is None:
                return out
            elif method == "BYE":
                if c.end_ts is None:
                    c.end_ts = ts
                    c.ended_by = "caller" if from_tag is not None and from_tag == c.from_tag else "callee"
                c.bye_pending = True
            elif method == "CANCEL":
                if c.state in ("trying", "ringing"):
                    c.ended_by = "caller"
            c.last_ts = ts
            return out
        if c is None:
            return out
        c.last_ts = ts
        if cseq_method == "INVITE":
            if 180 <= code < 200 and c.ringing_ts is None:
                c.ringing_ts = ts
                if c.state == "trying":
                    c.state = "ringing"
            elif 200 <= code < 300 and c.answer_ts is None:
                c.answer_ts = ts
                c.final_status = code
                c.state = "answered"
                c.to_tag = to_tag
            elif code >= 300 and c.final_status is None:
                c.final_status = code
                c.end_ts = ts
                c.state = "cancelled" if code == 487 else "failed"
                if c.ended_by is None:
                    c.ended_by = "callee"
                out.append(self._finish(c))
        elif cseq_method == "BYE" and code >= 200 and c.bye_pending:
            c.state = "ended"
            out.append(self._finish(c))
        return out

    def _finish(self, c: Call) -> dict:
        self.calls.pop(c.call_id, None)
        self.completed += 1
        return summary(c)

    def _oldest(self) -> Call:
        """The call added first of those still in the table (which must not be empty)."""
        order, calls = self._order, self.calls
        while True:
            c = order[0]
            if calls.get(c.call_id) is c:
                return c
            order.popleft()

    def _expire(self, now: int, out: list) -> None:
        while self.calls:
            c = self._oldest()
            if c.last_ts + self.timeout_ns >= now:
                return
            del self.calls[c.call_id]
            self.timeouts += 1
            c.state = "timed_out"
            out.append(summary(c))

    def flush(self) -> list[dict]:
        """Summaries of every call still open (end of a capture file)."""
        out = [summary(c, open_=True) for c in self.calls.values()]
        self.calls.clear()
        self._order.clear()
        return out


def t_tag(m: SipMessage) -> str | None:
    return m.to.params.get("tag") if m.to is not None else None


def _ms(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None else round((b - a) / NS_PER_MS, 3)


def summary(c: Call, open_: bool = False) -> dict:
    return {
        "v": 1, "type": "call", "call_id": c.call_id, "from_user": c.from_user, "to_user": c.to_user,
        "start_ts": c.invite_ts, "answer_ts": c.answer_ts, "end_ts": c.end_ts,
        "setup_ms": _ms(c.invite_ts, c.ringing_ts), "answer_ms": _ms(c.invite_ts, c.answer_ts),
        "duration_ms": _ms(c.answer_ts, c.end_ts), "final_status": c.final_status,
        "ended_by": c.ended_by, "reinvites": c.reinvites, "state": ("open:" + c.state) if open_ else c.state,
    }
