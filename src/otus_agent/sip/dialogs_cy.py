"""Call state by Call-ID (``--calls``): INVITE -> provisional -> final -> ACK -> BYE / CANCEL.

The one call state machine.  A bounded table (``max_calls``, oldest evicted, ``evictions`` counted;
idle calls time out on the capture clock, ``timeouts``).  When a call ends -- BYE answered, INVITE
rejected or cancelled, or timed out -- one summary record follows (sip/fields.py CALL_PROPERTIES):
setup time (INVITE to first 18x), answer time (INVITE to 2xx), duration (2xx to BYE), final status and
who ended it; ``flush`` gives the calls still open (state ``open:...``) at the end of a capture.

Compiled by Cython (setup.py): the compiled SIP lane (sip/writer_cy.py) cimports it (sip/dialogs_cy.pxd)
and calls ``CallTable.step`` with C fields from the scanner's offsets -- no Python call, no text for a
field the message's kind does not read, one object per call and none per message.  The general path of
the same stage feeds the same table through ``observe`` (a parsed message), ``observe_record`` (a record
of the Python fast path) or ``observe_fields``.  The pure build runs this source as Python.
"""
from __future__ import annotations

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

# C variables of the compiled build (declared in sip/dialogs_cy.pxd, so the lane cimports them)
K_NONE = 0          # the kind of a response's method, or of a missing CSeq method
K_OTHER = 1
K_INVITE = 2
K_BYE = 3
K_CANCEL = 4
S_TRYING = 0        # indexes into STATES
S_RINGING = 1
S_ANSWERED = 2
S_FAILED = 3
S_CANCELLED = 4
S_ENDED = 5
S_TIMED_OUT = 6
NO_TS = -(1 << 62)  # a timestamp not seen yet (None in the summary; capture times are >= 0)
STATES = ("trying", "ringing", "answered", "failed", "cancelled", "ended", "timed_out")
ENDED_BY = (None, "caller", "callee")       # _Call.ended_by indexes it
EXACT = cython.declare(cython.longlong, 1 << 53)   # below it, a C double holds a span exactly


KINDS = {"INVITE": K_INVITE, "BYE": K_BYE, "CANCEL": K_CANCEL}   # K_* of a method name; another: K_OTHER


@cython.cfunc
def _ms(a: cython.longlong, b: cython.longlong) -> object:
    """Milliseconds from capture time a to b (ns), Python's round((b - a) / 10**6, 3); None if either is
    NO_TS.  A span below EXACT divides as a double, which is what Python's int division gives."""
    d: cython.longlong
    if a == NO_TS or b == NO_TS:
        return None
    d = b - a
    if -EXACT < d < EXACT:
        return round(d / 1e6, 3)                 # compiled: a C double division, as Python's int / float
    return round((cython.cast(object, b) - cython.cast(object, a)) / 1_000_000, 3)


def ms(a: int | None, b: int | None) -> float | None:
    """_ms for Python callers (tests, the lane's test helper): None stands for NO_TS."""
    return _ms(NO_TS if a is None else a, NO_TS if b is None else b)


@cython.cclass
class _Call:
    """One call: NO_TS, 0 and S_* where the summary has None and state names.  Attributes (C fields
    compiled): sip/dialogs_cy.pxd."""

    @cython.cfunc
    def summary(self, open_: cython.bint) -> dict:
        """The call's summary record (sip/fields.py CALL_PROPERTIES, in this key order)."""
        final = None if self.final_status == 0 else self.final_status
        state = STATES[self.state]
        return {
            "v": 1, "type": "call", "call_id": self.call_id, "from_user": self.from_user, "to_user": self.to_user,
            "start_ts": self.invite_ts, "answer_ts": None if self.answer_ts == NO_TS else self.answer_ts,
            "end_ts": None if self.end_ts == NO_TS else self.end_ts,
            "setup_ms": _ms(self.invite_ts, self.ringing_ts), "answer_ms": _ms(self.invite_ts, self.answer_ts),
            "duration_ms": _ms(self.answer_ts, self.end_ts), "final_status": final,
            "ended_by": ENDED_BY[self.ended_by], "reinvites": self.reinvites,
            "state": ("open:" + state) if open_ else state,
        }


@cython.cclass
class CallTable:
    """The calls open now, by Call-ID, with their limit (``max_calls``: the oldest is evicted) and idle
    timeout.  Attributes: sip/dialogs_cy.pxd."""

    def __init__(self, max_calls: int = 100_000, timeout_s: float = 7200.0):
        if max_calls < 1 or timeout_s <= 0:
            raise ValueError("dialog limits: max_calls >= 1, timeout > 0")
        self.max_calls = max_calls
        self.timeout_ns = int(timeout_s * 1e9)
        self.calls = {}
        # the calls in the order they were added, for expiry and eviction; order[head:] still to look at.
        # next(iter(self.calls)) would walk over every deleted slot at the dict's front (calls end roughly
        # in the order they start), costing as much as the table is large on every message.  Ended calls
        # are skipped lazily; the queue is rebuilt from the table when it holds more than twice as many.
        self.order = []
        self.head = 0
        self.started = 0
        self.completed = 0
        self.evictions = 0
        self.timeouts = 0

    def counters(self) -> dict:
        return {"active": len(self.calls), "started": self.started, "completed": self.completed,
                "evictions": self.evictions, "timeouts": self.timeouts}

    @property
    def active(self) -> int:
        return len(self.calls)

    def call_ids(self) -> list:
        """The Call-IDs of the open calls, oldest first (tests, debugging)."""
        return list(self.calls)

    def queued(self) -> int:
        """Entries of the insertion-order queue still to look at (its bound is tested)."""
        return len(self.order) - self.head

    def observe(self, m, ts: int) -> list:
        """One parsed message (sip/message_cy.SipMessage); summaries of the calls that ended."""
        f, t = m.from_, m.to
        return self.observe_fields(
            ts, m.call_id, m.cseq_method, m.method if m.is_request else None, m.status_code or 0,
            f.params.get("tag") if f else None, f.uri.user if f and f.uri else None,
            t.uri.user if t and t.uri else None, t.params.get("tag") if t is not None else None)

    def observe_record(self, rec: dict, ts: int) -> list:
        """A SIP record of the Python fast path (its fields equal the message's)."""
        return self.observe_fields(ts, rec["call_id"], rec["cseq_method"], rec["method"], rec["status_code"] or 0,
                                   rec["from_tag"], rec["from_user"], rec["to_user"], rec["to_tag"])

    def observe_fields(self, ts: int, cid, cseq_method, method, code: int, from_tag, from_user, to_user,
                       to_tag) -> list:
        """``step`` on a message's fields (``method`` None: a response with status ``code``); summaries
        (dicts) of the calls that ended."""
        out: list = []
        c: _Call
        self.step(ts, cid, K_NONE if cseq_method is None else KINDS.get(cseq_method, K_OTHER),
                  K_NONE if method is None else KINDS.get(method, K_OTHER), code, from_tag, from_user, to_user,
                  to_tag, out)
        if not out:
            return out
        ended = []
        for c in out:
            ended.append(c.summary(False))
        return ended

    def flush(self) -> list:
        """Summaries of every call still open (end of a capture file); the table is empty after."""
        c: _Call
        out = []
        for c in self.calls.values():
            out.append(c.summary(True))
            c.live = False
        self.calls.clear()
        self.order = []
        self.head = 0
        return out

    @cython.cfunc
    def _oldest(self) -> _Call:
        """The call added first of those still in the table (which must not be empty)."""
        c: _Call
        while True:
            c = self.order[self.head]
            if c.live:
                return c
            self.head += 1

    @cython.cfunc
    def _remove(self, c: _Call) -> cython.void:
        del self.calls[c.call_id]
        c.live = False
        if self.head > 4096 and self.head * 2 > len(self.order):    # the queue's dead front: dropped
            del self.order[:self.head]
            self.head = 0

    @cython.cfunc
    def step(self, ts: cython.longlong, cid: object, csm: cython.int, mk: cython.int, code: cython.longlong,
             from_tag: object, from_user: object, to_user: object, to_tag: object, out: list) -> cython.int:
        """The state machine on one message: kinds (K_*) of its CSeq method ``csm`` and method ``mk``
        (K_NONE: a response with status ``code``).  Only the fields the kind reads need be given: users
        for an INVITE, the From tag for INVITE and BYE, the To tag for INVITE (only whether there is one:
        a re-INVITE) and for a 2xx to an INVITE (kept).  The calls that ended (out of the table, no longer
        changed) are appended to ``out``, expired ones first."""
        c: _Call
        if self.calls:
            while self.calls:                                    # idle calls time out, oldest first
                c = self._oldest()
                if c.last_ts + self.timeout_ns >= ts:
                    break
                self._remove(c)
                self.timeouts += 1
                c.state = S_TIMED_OUT
                out.append(c)
        if not cid or csm == K_NONE:
            return 0
        found = self.calls.get(cid)
        if mk != K_NONE:
            if mk == K_INVITE:
                if found is None:
                    while len(self.calls) >= self.max_calls:
                        self._remove(self._oldest())
                        self.evictions += 1
                    c = _Call.__new__(_Call)
                    c.call_id, c.from_tag, c.from_user, c.to_user, c.to_tag = cid, from_tag, from_user, to_user, None
                    c.invite_ts = c.last_ts = ts
                    c.ringing_ts = c.answer_ts = c.end_ts = NO_TS
                    c.final_status = 0
                    c.ended_by = 0
                    c.reinvites = 0
                    c.state = S_TRYING
                    c.bye_pending = False
                    c.live = True
                    self.calls[cid] = c
                    self.order.append(c)
                    if len(self.order) - self.head > 2 * len(self.calls) + 1024:
                        self.order = list(self.calls.values())
                        self.head = 0
                    self.started += 1
                else:
                    c = found
                    if to_tag is not None and c.state == S_ANSWERED:
                        c.reinvites += 1
            elif found is None:
                return 0
            else:
                c = found
                if mk == K_BYE:
                    if c.end_ts == NO_TS:
                        c.end_ts = ts
                        c.ended_by = 1 if from_tag is not None and from_tag == c.from_tag else 2
                    c.bye_pending = True
                elif mk == K_CANCEL:
                    if c.state == S_TRYING or c.state == S_RINGING:
                        c.ended_by = 1
            c.last_ts = ts
            return 0
        if found is None:
            return 0
        c = found
        c.last_ts = ts
        if csm == K_INVITE:
            if 180 <= code < 200 and c.ringing_ts == NO_TS:
                c.ringing_ts = ts
                if c.state == S_TRYING:
                    c.state = S_RINGING
            elif 200 <= code < 300 and c.answer_ts == NO_TS:
                c.answer_ts = ts
                c.final_status = code
                c.state = S_ANSWERED
                c.to_tag = to_tag
            elif code >= 300 and c.final_status == 0:
                c.final_status = code
                c.end_ts = ts
                c.state = S_CANCELLED if code == 487 else S_FAILED
                if c.ended_by == 0:
                    c.ended_by = 2
                self._remove(c)
                self.completed += 1
                out.append(c)
        elif csm == K_BYE and code >= 200 and c.bye_pending:
            c.state = S_ENDED
            self._remove(c)
            self.completed += 1
            out.append(c)
        return 0
