"""The table of dialogs a SIP selector admitted (sip/select.py says what is selected and why).

Compiled by Cython (setup.py): the SIP lane asks about every message while a task has a selector, so
its per-message work is C; the pure build runs the same code as Python.

The table is open addressing with linear probing over C arrays of a fixed size, allocated once for
``max_dialogs`` (the documented limit) and filled as dialogs come: a message costs one hash of its
Call-ID's bytes, where the lane has them (no ``str`` made), and one probe.  The hash is CPython's
own keyed hash of bytes (SipHash, seeded per process, as ``hash(bytes)``: the pure build computes the
same value), so Call-IDs chosen to collide cannot be sent to make the probes long; a hash match is
confirmed on the bytes, so a collision can never admit a foreign dialog.  Each entry sits on two
intrusive lists: least recently seen first (idle expiry, eviction when full) and ended first (the
linger after the end).

Layout (C arrays, ``array('q')`` in the pure build):
- ``slots``: 2^k >= 2 * max_dialogs words; 0 = empty, else ``tag << 32 | (entry + 1)``, where ``tag``
  is the hash's top 31 bits and ``tag & mask`` its home slot (so moving a slot needs no entry).
- ``ent``: ``STRIDE`` words per entry (two cache lines): the hash, last seen, end time, the two lists'
  links, whether it is on the ended list, the Call-ID's length and, compiled, its bytes when they fit
  (``INLINE``: a probe then reads two adjacent lines); ``keys[entry]`` holds longer Call-IDs (all of
  them in the pure build).
"""
from __future__ import annotations

from typing import Any

try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

if cython.compiled:
    from cython.cimports.libc.stdlib import calloc, free
    from cython.cimports.libc.string import memcmp, memcpy
else:
    from array import array

from otus_agent.sip.select import IDLE_S, LINGER_S, MAX_DIALOGS, NS, Selector

# an entry's words in ``ent``: two cache lines, its Call-ID's bytes in the second
STRIDE = cython.declare(cython.Py_ssize_t, 16)
F_HASH = cython.declare(cython.Py_ssize_t, 0)
F_LAST = cython.declare(cython.Py_ssize_t, 1)     # last message, capture clock (ns)
F_ENDED = cython.declare(cython.Py_ssize_t, 2)    # when it ended (ns), while F_ON_END
F_LPREV = cython.declare(cython.Py_ssize_t, 3)    # least-recently-seen list (-1: none); F_LNEXT also links free entries
F_LNEXT = cython.declare(cython.Py_ssize_t, 4)
F_EPREV = cython.declare(cython.Py_ssize_t, 5)    # ended list, oldest end first
F_ENEXT = cython.declare(cython.Py_ssize_t, 6)
F_ON_END = cython.declare(cython.Py_ssize_t, 7)   # 1: ended, on the ended list
F_KLEN = cython.declare(cython.Py_ssize_t, 8)     # the Call-ID's length
F_KEY = cython.declare(cython.Py_ssize_t, 9)      # compiled: its bytes from here when at most INLINE
INLINE = cython.declare(cython.Py_ssize_t, 56)    # (STRIDE - F_KEY) words; longer ones are in ``keys``
TAG_BITS = cython.declare(cython.longlong, 0x7FFFFFFF)
LOW32 = cython.declare(cython.longlong, 0xFFFFFFFF)
MAX_CAPACITY = 1 << 28      # max_dialogs' own bound (the slots' tags and indices are 31 bits)


@cython.cfunc
@cython.exceptval(check=False)
def _hash(p: cython.p_uchar, n: cython.Py_ssize_t) -> cython.longlong:
    """The keyed hash of p[:n]; the pure build's ``p`` is the bytes themselves."""
    if cython.compiled:
        return _Py_HashBytes(p, n)     # select_cy.pxd: what hash(bytes) computes
    else:
        return hash(p)


@cython.cfunc
def _ends(is_request: cython.bint, method: Any, status: cython.longlong, cseq_method: Any) -> cython.bint:
    """Whether this message ends its dialog (or the transaction of an out-of-dialog request); ``status``
    -1 for none.  A request's end is its method's alone (the CSeq method is read for responses only)."""
    if is_request:
        return method == "CANCEL"
    if status < 200:
        return False
    if cseq_method == "BYE":
        return True
    # a final failure to the INVITE ends the dialog; to an out-of-dialog request, its transaction
    return status >= 300 and cseq_method == "INVITE" or cseq_method not in ("INVITE", "ACK", "PRACK",
                                                                             "UPDATE", "INFO", "BYE")


@cython.cclass
class DialogSelector:
    """The selector plus the table of admitted dialogs.  Every message is judged once, in capture
    order, before its record is made: ``admit`` (text fields: the general path), or from the lane
    ``find`` (the Call-ID's bytes) then ``open`` (an initial request not in the table) or ``step``."""
    # attributes: sip/select_cy.pxd (the compiled build's declarations)

    def __init__(self, selector: Selector, max_dialogs: int = MAX_DIALOGS, linger_s: float = LINGER_S,
                 idle_s: float = IDLE_S) -> None:
        if max_dialogs < 1 or max_dialogs > MAX_CAPACITY or linger_s < 0 or idle_s <= 0:
            raise ValueError(f"selector limits: 1 <= max_dialogs <= {MAX_CAPACITY}, linger >= 0, idle > 0")
        self.selector = selector
        self.max_dialogs = max_dialogs
        self.linger_ns = int(linger_s * NS)
        self.idle_ns = int(idle_s * NS)
        nslots: cython.Py_ssize_t = 8
        while nslots < 2 * max_dialogs:      # at most half full: short probes
            nslots *= 2
        self.mask = nslots - 1
        if cython.compiled:                  # zeroed and untouched until used: the memory grows with the table
            self.slots = cython.cast(cython.p_longlong, calloc(nslots, 8))
            self.ent = cython.cast(cython.p_longlong, calloc(max_dialogs * STRIDE, 8))
            if self.slots == cython.NULL or self.ent == cython.NULL:
                raise MemoryError("selector table")
        else:
            self.slots = array("q", bytes(8 * nslots))
            self.ent = array("q", bytes(8 * STRIDE * max_dialogs))
        self.keys = {}
        self.fresh = 0                       # entries below it have been used (the rest are zero)
        self.free_head = -1
        self.lru_head = self.lru_tail = -1
        self.end_head = self.end_tail = -1
        self.active = 0
        self._idle_check = 0
        self._h = 0
        self._kn = -1
        self._key = None
        self.matched_dialogs = 0      # dialogs admitted (a task's "matched calls")
        self.matched_messages = 0
        self.unmatched = 0            # messages dropped: otus_sip_unmatched_total
        self.evictions = 0
        self.expired = 0

    def __dealloc__(self) -> None:
        if cython.compiled:
            free(self.slots)
            free(self.ent)

    @cython.ccall
    def admit(self, ts: cython.longlong, is_request: cython.bint, method: Any, status: Any, cseq_method: Any,
              call_id: Any, from_user: Any, to_user: Any, request_uri: Any, header: Any = None,
              in_dialog: cython.bint = False) -> cython.bint:
        """Whether this message is reported; updates the table (capture clock ``ts``, ns).
        ``in_dialog``: the request's To has a tag (only an initial request can open a selection).
        The text fields are str or None, ``status`` an int or None, ``header(name)`` a header's values
        (typed Any: the compiled build's declarations are sip/select_cy.pxd's).  The Call-ID is keyed
        by its UTF-8 bytes: the lane's bytes for the ASCII Call-IDs it judges."""
        e: cython.longlong
        kp: cython.p_uchar
        if call_id is None:
            e = self.find(ts, cython.NULL, -1)
        else:
            key: bytes = call_id.encode("utf-8", "surrogatepass")
            self._key = key                  # alive while find's pointer is remembered
            if cython.compiled:
                kp = cython.cast(cython.p_uchar, key)
            else:
                kp = key
            e = self.find(ts, kp, len(key))
        if e < 0 and is_request and not in_dialog:
            return self.open(ts, method, call_id, from_user, to_user, request_uri, header)
        return self.step(e, ts, is_request, method, -1 if status is None else status, cseq_method)

    @cython.cfunc
    def find(self, ts: cython.longlong, cid: cython.p_uchar, n: cython.Py_ssize_t) -> cython.longlong:
        """Expire what is due at ``ts``, then the entry of the Call-ID cid[:n] (n < 0: the message has
        none), -1 when it is not admitted.  The Call-ID is remembered for an ``open`` that follows."""
        self._expire(ts)
        self._kn = n
        if n < 0:
            return -1
        self._kp = cid
        h: cython.longlong = _hash(cid, n)
        self._h = h
        return self._probe(cid, n, h)

    @cython.cfunc
    def open(self, ts: cython.longlong, method: Any, call_id: Any, from_user: Any, to_user: Any, request_uri: Any,
             header: Any) -> cython.bint:
        """An initial request whose Call-ID ``find`` did not find: judged by the selector, and when it
        matches, its dialog admitted."""
        if not self.selector.matches(method, from_user, to_user, request_uri, call_id, header):
            self.unmatched += 1
            return False
        self.matched_dialogs += 1
        if self._kn < 0:              # a request without Call-ID: reported, nothing to remember
            self.matched_messages += 1
            return True
        return self.step(self._insert(ts), ts, True, method, -1, None)

    @cython.cfunc
    def step_at(self, e: cython.longlong, ts: cython.longlong, is_request: cython.bint, method: Any,
                status: cython.longlong, csm: cython.p_uchar, csm_n: cython.Py_ssize_t) -> cython.bint:
        """``step`` with the CSeq method as the lane has it, csm[:csm_n] (csm_n < 0: none), made into
        text only when the end rule reads it: a final response of a dialog that has not ended."""
        cseq_method = None
        if e >= 0 and not is_request and status >= 200 and csm_n >= 0 and not self.ent[e * STRIDE + F_ON_END]:
            cseq_method = csm[:csm_n].decode("latin-1")
        return self.step(e, ts, is_request, method, status, cseq_method)

    @cython.cfunc
    def step(self, e: cython.longlong, ts: cython.longlong, is_request: cython.bint, method: Any,
             status: cython.longlong, cseq_method: Any) -> cython.bint:
        """A message of admitted entry ``e`` (``find``'s; -1: none, the message is dropped); ``status``
        -1 for a request."""
        ent = self.ent
        if e < 0:
            self.unmatched += 1
            return False
        b: cython.Py_ssize_t = e * STRIDE
        ent[b + F_LAST] = ts
        if e != self.lru_tail:
            self._lru_unlink(e)
            self._lru_append(e)
        if ent[b + F_ON_END] and is_request and method not in ("ACK", "CANCEL"):
            self._end_unlink(e)      # a new request after a challenge (401/407) or a failed re-INVITE
        if not ent[b + F_ON_END] and _ends(is_request, method, status, cseq_method):
            ent[b + F_ENDED] = ts
            self._end_append(e)
        self.matched_messages += 1
        return True

    # ------------------------------------------------------------ the table

    @cython.cfunc
    @cython.exceptval(check=False)
    def _same(self, e: cython.longlong, cid: cython.p_uchar, n: cython.Py_ssize_t) -> cython.bint:
        """Whether entry e's Call-ID is cid[:n], byte for byte (the hashes matched)."""
        b: cython.Py_ssize_t = e * STRIDE
        if self.ent[b + F_KLEN] != n:
            return False
        if cython.compiled:
            if n <= INLINE:
                return memcmp(cython.cast(cython.p_uchar, self.ent + b + F_KEY), cid, n) == 0
            k: bytes = self.keys[e]
            return memcmp(cython.cast(cython.p_uchar, k), cid, n) == 0
        else:
            return self.keys[e] == cid

    @cython.cfunc
    def _store_key(self, e: cython.longlong, b: cython.Py_ssize_t) -> cython.void:
        """The remembered Call-ID into entry e: in the entry itself when short (compiled), else ``keys``."""
        n: cython.Py_ssize_t = self._kn
        self.ent[b + F_KLEN] = n
        if cython.compiled:
            if n <= INLINE:
                memcpy(cython.cast(cython.p_uchar, self.ent + b + F_KEY), self._kp, n)
                return
        self.keys[e] = self._kp[:n]

    @cython.cfunc
    @cython.exceptval(check=False)
    def _probe(self, cid: cython.p_uchar, n: cython.Py_ssize_t, h: cython.longlong) -> cython.longlong:
        slots = self.slots
        tag: cython.longlong = (h >> 33) & TAG_BITS
        i: cython.longlong = tag & self.mask
        s: cython.longlong
        e: cython.longlong
        while True:
            s = slots[i]
            if s == 0:
                return -1
            if (s >> 32) == tag:
                e = (s & LOW32) - 1
                if self.ent[e * STRIDE + F_HASH] == h and self._same(e, cid, n):
                    return e
            i = (i + 1) & self.mask

    @cython.cfunc
    def _insert(self, ts: cython.longlong) -> cython.longlong:
        """A new entry for the Call-ID ``find`` remembered (not in the table): the least recently seen
        is evicted when the table is full."""
        ent = self.ent
        slots = self.slots
        e: cython.longlong
        if self.active >= self.max_dialogs:
            self._remove(self.lru_head)
            self.evictions += 1
        if self.free_head >= 0:
            e = self.free_head
            self.free_head = ent[e * STRIDE + F_LNEXT]
        else:
            e = self.fresh
            self.fresh += 1
        h: cython.longlong = self._h
        b: cython.Py_ssize_t = e * STRIDE
        ent[b + F_HASH] = h
        ent[b + F_LAST] = ts
        ent[b + F_ENDED] = 0
        ent[b + F_ON_END] = 0
        self._store_key(e, b)
        self._lru_append(e)
        tag: cython.longlong = (h >> 33) & TAG_BITS
        i: cython.longlong = tag & self.mask
        while slots[i] != 0:
            i = (i + 1) & self.mask
        slots[i] = (tag << 32) | (e + 1)
        self.active += 1
        return e

    @cython.cfunc
    @cython.exceptval(check=False)
    def _remove(self, e: cython.longlong) -> cython.void:
        """Entry e out of the table: its slot (the probe sequences behind it shifted back: no
        tombstones), both lists, its key; onto the free list."""
        ent = self.ent
        slots = self.slots
        mask: cython.longlong = self.mask
        b: cython.Py_ssize_t = e * STRIDE
        tag: cython.longlong = (ent[b + F_HASH] >> 33) & TAG_BITS
        want: cython.longlong = (tag << 32) | (e + 1)
        i: cython.longlong = tag & mask
        while slots[i] != want:
            i = (i + 1) & mask
        j: cython.longlong = i
        k: cython.longlong
        s: cython.longlong
        while True:
            j = (j + 1) & mask
            s = slots[j]
            if s == 0:
                break
            k = (s >> 32) & mask                 # its home slot
            # it stays when its home lies cyclically in (i, j]: the hole at i is not on its path
            if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
                continue
            slots[i] = s
            i = j
        slots[i] = 0
        self._lru_unlink(e)
        if ent[b + F_ON_END]:
            self._end_unlink(e)
        if not cython.compiled or ent[b + F_KLEN] > INLINE:
            del self.keys[e]
        ent[b + F_LNEXT] = self.free_head
        self.free_head = e
        self.active -= 1

    @cython.cfunc
    @cython.exceptval(check=False)
    def _expire(self, ts: cython.longlong) -> cython.void:
        ent = self.ent
        while self.end_head >= 0 and ts - ent[self.end_head * STRIDE + F_ENDED] > self.linger_ns:
            self._remove(self.end_head)
            self.expired += 1
        # the least recently seen first: once it is fresh, so is everything behind it; looked at once
        # per second of capture time (an idle dialog may outlive idle_s by up to a second)
        if ts < self._idle_check:
            return
        self._idle_check = ts + NS
        while self.lru_head >= 0 and ts - ent[self.lru_head * STRIDE + F_LAST] > self.idle_ns:
            self._remove(self.lru_head)
            self.expired += 1

    @cython.cfunc
    @cython.exceptval(check=False)
    def _lru_unlink(self, e: cython.longlong) -> cython.void:
        ent = self.ent
        p: cython.longlong = ent[e * STRIDE + F_LPREV]
        n: cython.longlong = ent[e * STRIDE + F_LNEXT]
        if p >= 0:
            ent[p * STRIDE + F_LNEXT] = n
        else:
            self.lru_head = n
        if n >= 0:
            ent[n * STRIDE + F_LPREV] = p
        else:
            self.lru_tail = p

    @cython.cfunc
    @cython.exceptval(check=False)
    def _lru_append(self, e: cython.longlong) -> cython.void:
        ent = self.ent
        t: cython.longlong = self.lru_tail
        ent[e * STRIDE + F_LPREV] = t
        ent[e * STRIDE + F_LNEXT] = -1
        if t >= 0:
            ent[t * STRIDE + F_LNEXT] = e
        else:
            self.lru_head = e
        self.lru_tail = e

    @cython.cfunc
    @cython.exceptval(check=False)
    def _end_unlink(self, e: cython.longlong) -> cython.void:
        ent = self.ent
        p: cython.longlong = ent[e * STRIDE + F_EPREV]
        n: cython.longlong = ent[e * STRIDE + F_ENEXT]
        if p >= 0:
            ent[p * STRIDE + F_ENEXT] = n
        else:
            self.end_head = n
        if n >= 0:
            ent[n * STRIDE + F_EPREV] = p
        else:
            self.end_tail = p
        ent[e * STRIDE + F_ON_END] = 0

    @cython.cfunc
    @cython.exceptval(check=False)
    def _end_append(self, e: cython.longlong) -> cython.void:
        ent = self.ent
        t: cython.longlong = self.end_tail
        ent[e * STRIDE + F_EPREV] = t
        ent[e * STRIDE + F_ENEXT] = -1
        ent[e * STRIDE + F_ON_END] = 1
        if t >= 0:
            ent[t * STRIDE + F_ENEXT] = e
        else:
            self.end_head = e
        self.end_tail = e

    # ------------------------------------------------------------ looking in

    def __contains__(self, call_id: str) -> bool:
        """Whether this Call-ID is admitted now (as of the last message: nothing expires here)."""
        key: bytes = call_id.encode("utf-8", "surrogatepass")
        kp: cython.p_uchar
        if cython.compiled:
            kp = cython.cast(cython.p_uchar, key)
        else:
            kp = key
        return self._probe(kp, len(key), _hash(kp, len(key))) >= 0

    def __len__(self) -> int:
        return self.active

    def counters(self) -> dict:
        return {"matched_dialogs": self.matched_dialogs, "matched_messages": self.matched_messages,
                "unmatched": self.unmatched, "active": self.active, "evictions": self.evictions,
                "expired": self.expired}
