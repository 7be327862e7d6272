"""The table of dialogs a SIP selector admitted (sip/select.py says what is selected and why).

Compiled by Cython (setup.py): the SIP lane asks ``admit`` about every message while a task has a
selector, so its per-message work is C; the pure build runs the same code as Python.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

from otus_agent.sip.select import IDLE_S, LINGER_S, MAX_DIALOGS, NS, Selector


@cython.cfunc
def _ends(is_request: cython.bint, method: Any, status: Any, cseq_method: Any) -> cython.bint:
    """Whether this message ends its dialog (or the transaction of an out-of-dialog request)."""
    if is_request:
        return method == "CANCEL"
    if status is None or status < 200:
        return False
    if cseq_method == "BYE":
        return True
    # a final failure to the INVITE ends the dialog; to an out-of-dialog request, its transaction
    return status >= 300 and cseq_method == "INVITE" or cseq_method not in ("INVITE", "ACK", "PRACK",
                                                                             "UPDATE", "INFO", "BYE")


@cython.cclass
class _Entry:
    """One admitted dialog: when it was last seen and when it ended (0: not yet), in ns."""

    def __init__(self, ts: int) -> None:
        self.last_ns = ts
        self.ended_ns = 0


@cython.cclass
class DialogSelector:
    """The selector plus the table of admitted dialogs.  ``admit`` is called once per message, in
    capture order, before its record is made."""
    # attributes: sip/select_cy.pxd (the compiled build's declarations)

    def __init__(self, selector: Selector, max_dialogs: int = MAX_DIALOGS, linger_s: float = LINGER_S,
                 idle_s: float = IDLE_S) -> None:
        if max_dialogs < 1 or linger_s < 0 or idle_s <= 0:
            raise ValueError("selector limits: max_dialogs >= 1, linger >= 0, idle > 0")
        self.selector = selector
        self.max_dialogs = max_dialogs
        self.linger_ns = int(linger_s * NS)
        self.idle_ns = int(idle_s * NS)
        self.dialogs = OrderedDict()
        self._ended = deque()            # (end time, Call-ID), oldest first
        self._idle_check = 0
        self.matched_dialogs = 0      # dialogs admitted (a task's "matched calls")
        self.matched_messages = 0
        self.unmatched = 0            # messages dropped: otus_sip_unmatched_total
        self.evictions = 0
        self.expired = 0

    @cython.ccall
    def admit(self, ts: cython.longlong, is_request: cython.bint, method: Any, status: Any, cseq_method: Any,
              call_id: Any, from_user: Any, to_user: Any, request_uri: Any, header: Any = None,
              in_dialog: cython.bint = False) -> cython.bint:
        """Whether this message is reported; updates the table (capture clock ``ts``, ns).
        ``in_dialog``: the request's To has a tag (only an initial request can open a selection).
        The text fields are str or None, ``status`` an int or None, ``header(name)`` a header's values
        (typed Any: the compiled build's declarations are sip/select_cy.pxd's)."""
        self._expire(ts)
        e: _Entry = self.dialogs.get(call_id) if call_id is not None else None
        if e is None and is_request and not in_dialog and self.selector.matches(method, from_user, to_user,
                                                                                request_uri, call_id, header):
            e = self._add(call_id, ts)
        if e is None:
            self.unmatched += 1
            return False
        e.last_ns = ts
        if call_id is not None:
            self.dialogs.move_to_end(call_id)
            if e.ended_ns and is_request and method not in ("ACK", "CANCEL"):
                e.ended_ns = 0       # a new request after a challenge (401/407) or a failed re-INVITE
            if not e.ended_ns and _ends(is_request, method, status, cseq_method):
                e.ended_ns = ts
                self._ended.append((ts, call_id))
        self.matched_messages += 1
        return True

    @cython.cfunc
    def _add(self, call_id: Any, ts: cython.longlong) -> _Entry:
        e: _Entry = _Entry(ts)
        self.matched_dialogs += 1
        if call_id is None:          # a request without Call-ID: reported, nothing to remember
            return e
        if len(self.dialogs) >= self.max_dialogs:
            self.dialogs.popitem(last=False)
            self.evictions += 1
        self.dialogs[call_id] = e
        return e

    @cython.cfunc
    def _expire(self, ts: cython.longlong) -> cython.void:
        d = self.dialogs
        ended = self._ended
        while ended and ts - ended[0][0] > self.linger_ns:
            t, cid = ended.popleft()
            x: _Entry = d.get(cid)
            if x is not None and x.ended_ns == t:     # not resumed, not evicted and re-added since
                del d[cid]
                self.expired += 1
        if len(self._ended) > 2 * self.max_dialogs:      # its bound: entries of resumed or evicted dialogs
            self._ended = _still_ended(ended, d)
        # the front is the least recently seen: once it is fresh, so is everything behind it; looked at
        # once per second of capture time (an idle dialog may outlive idle_s by up to a second)
        if ts < self._idle_check:
            return
        self._idle_check = ts + NS
        while d:
            cid, y = next(iter(d.items()))
            if ts - cython.cast(_Entry, y).last_ns <= self.idle_ns:
                break
            del d[cid]
            self.expired += 1

    def counters(self) -> dict:
        return {"matched_dialogs": self.matched_dialogs, "matched_messages": self.matched_messages,
                "unmatched": self.unmatched, "active": len(self.dialogs), "evictions": self.evictions,
                "expired": self.expired}


def _still_ended(ended: Any, d: Any) -> Any:
    """The end queue without the entries of dialogs resumed, evicted or re-added since (its own function:
    a generator inside ``_expire`` would cost a closure on every call)."""
    return deque((t, c) for t, c in ended if c in d and d[c].ended_ns == t)
