"""SIP-semantic selectors (issue 18): report the dialogs a task asks for, drop the rest early.

A selector (a task's ``sip.match``) is a set of conditions combined with AND; each condition's list
is an OR: ``methods: [INVITE, MESSAGE]`` and ``from_user: [alice]`` select INVITEs or MESSAGEs from
alice.  Conditions look at initial requests only (no To tag: the request that opens a dialog or
stands alone, such as REGISTER), because that request carries what a person asks for (who calls
whom, which URI, which tenant header); one that matches admits its Call-ID, and from then on every
message of that Call-ID -- its responses, retransmissions, ACK, in-dialog requests and the BYE --
is reported whole, even when the later messages alone would not match.  Everything else is dropped
before a record is made and counted (``unmatched``); a dialog whose initial request was not
captured (capture started later) is not selected.

The admitted Call-IDs are a bounded table (``max_dialogs``, the oldest evicted and counted: an
evicted dialog's later messages are then judged on their own).  An entry lives until its dialog
ends (BYE answered, INVITE answered with a final failure, CANCEL) plus ``linger_s`` for the
retransmissions that follow, or until it has been idle for ``idle_s``, on the capture clock.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

NS = 1_000_000_000
LINGER_S = 32.0        # RFC 3261 Timer B/F: a transaction's retransmissions are over by then
IDLE_S = 7200.0        # as the dialog table's timeout (sip/dialogs.py)
MAX_DIALOGS = 100_000


@dataclass(frozen=True)
class HeaderCondition:
    name: str                  # lower-case header name
    equals: str | None = None
    contains: str | None = None

    def test(self, values: Iterable[str]) -> bool:
        for v in values:
            v = v.strip()
            if self.equals is not None and v == self.equals:
                return True
            if self.contains is not None and self.contains in v:
                return True
        return False


@dataclass(frozen=True)
class Selector:
    """One task's conditions (empty tuple: no condition on that key).  Method names are compared
    upper-case, users exactly (they are case-sensitive in SIP URIs), URIs by prefix or exactly."""
    methods: tuple[str, ...] = ()
    from_user: tuple[str, ...] = ()
    to_user: tuple[str, ...] = ()
    request_uri_prefix: tuple[str, ...] = ()
    request_uri: tuple[str, ...] = ()
    call_id: tuple[str, ...] = ()
    headers: tuple[HeaderCondition, ...] = ()

    @classmethod
    def from_options(cls, match: Mapping | object) -> Selector:
        """From the task's ``SipMatch`` (otus_spec) or its dict form: the one conversion."""
        get = match.get if isinstance(match, Mapping) else (lambda k, d=None: getattr(match, k, d))
        heads = []
        for h in get("headers", None) or ():
            hg = h.get if isinstance(h, Mapping) else (lambda k, d=None, h=h: getattr(h, k, d))
            heads.append(HeaderCondition(str(hg("name")).lower(), hg("equals", None), hg("contains", None)))
        return cls(methods=tuple(m.upper() for m in get("methods", None) or ()),
                   from_user=tuple(get("from_user", None) or ()), to_user=tuple(get("to_user", None) or ()),
                   request_uri_prefix=tuple(get("request_uri_prefix", None) or ()),
                   request_uri=tuple(get("request_uri", None) or ()), call_id=tuple(get("call_id", None) or ()),
                   headers=tuple(heads))

    @property
    def empty(self) -> bool:
        return not (self.methods or self.from_user or self.to_user or self.request_uri_prefix or self.request_uri
                    or self.call_id or self.headers)

    def matches(self, method: str | None, from_user: str | None, to_user: str | None, request_uri: str | None,
                call_id: str | None, header: Callable[[str], list[str]] | None = None) -> bool:
        """Whether a request with these fields is selected; ``header(name)`` gives a header's values
        (only called when the selector has header conditions)."""
        if self.methods and method not in self.methods:
            return False
        if self.from_user and from_user not in self.from_user:
            return False
        if self.to_user and to_user not in self.to_user:
            return False
        if self.request_uri or self.request_uri_prefix:
            uri = request_uri or ""
            if uri not in self.request_uri and not any(uri.startswith(p) for p in self.request_uri_prefix):
                return False
        if self.call_id and call_id not in self.call_id:
            return False
        if self.headers:
            if header is None:
                return False
            if not any(c.test(header(c.name)) for c in self.headers):
                return False
        return True

    def header_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.headers)


class _Entry:
    __slots__ = ("last_ns", "ended_ns")

    def __init__(self, ts: int) -> None:
        self.last_ns = ts
        self.ended_ns = 0


class DialogSelector:
    """The selector plus the table of admitted dialogs.  ``admit`` is called once per message, in
    capture order, before its record is made."""

    def __init__(self, selector: Selector, max_dialogs: int = MAX_DIALOGS, linger_s: float = LINGER_S,
                 idle_s: float = IDLE_S) -> None:
        if max_dialogs < 1 or linger_s < 0 or idle_s <= 0:
            raise ValueError("selector limits: max_dialogs >= 1, linger >= 0, idle > 0")
        self.selector = selector
        self.max_dialogs = max_dialogs
        self.linger_ns = int(linger_s * NS)
        self.idle_ns = int(idle_s * NS)
        self.dialogs: OrderedDict[str, _Entry] = OrderedDict()   # least recently seen first
        self._ended: deque[tuple[int, str]] = deque()            # (end time, Call-ID), oldest first
        self.matched_dialogs = 0      # dialogs admitted (a task's "matched calls")
        self.matched_messages = 0
        self.unmatched = 0            # messages dropped: otus_sip_unmatched_total
        self.evictions = 0
        self.expired = 0

    def admit(self, ts: int, is_request: bool, method: str | None, status: int | None, cseq_method: str | None,
              call_id: str | None, from_user: str | None, to_user: str | None, request_uri: str | None,
              header: Callable[[str], list[str]] | None = None, in_dialog: bool = False) -> bool:
        """Whether this message is reported; updates the table (capture clock ``ts``, ns).
        ``in_dialog``: the request's To has a tag (only an initial request can open a selection)."""
        self._expire(ts)
        e = self.dialogs.get(call_id) if call_id is not None else None
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
            if not e.ended_ns and self._ends(is_request, method, status, cseq_method):
                e.ended_ns = ts
                self._ended.append((ts, call_id))
        self.matched_messages += 1
        return True

    @staticmethod
    def _ends(is_request: bool, method: str | None, status: int | None, cseq_method: str | None) -> bool:
        if is_request:
            return method == "CANCEL"
        if status is None or status < 200:
            return False
        if cseq_method == "BYE":
            return True
        # a final failure to the INVITE ends the dialog; to an out-of-dialog request, its transaction
        return status >= 300 and cseq_method == "INVITE" or cseq_method not in ("INVITE", "ACK", "PRACK",
                                                                                 "UPDATE", "INFO", "BYE")

    def _add(self, call_id: str | None, ts: int) -> _Entry:
        e = _Entry(ts)
        self.matched_dialogs += 1
        if call_id is None:          # a request without Call-ID: reported, nothing to remember
            return e
        if len(self.dialogs) >= self.max_dialogs:
            self.dialogs.popitem(last=False)
            self.evictions += 1
        self.dialogs[call_id] = e
        return e

    def _expire(self, ts: int) -> None:
        d = self.dialogs
        ended = self._ended
        while ended and ts - ended[0][0] > self.linger_ns:
            t, cid = ended.popleft()
            e = d.get(cid)
            if e is not None and e.ended_ns == t:     # not resumed, not evicted and re-added since
                del d[cid]
                self.expired += 1
        # the front is the least recently seen: once it is fresh, so is everything behind it
        while d:
            cid, e = next(iter(d.items()))
            if ts - e.last_ns <= self.idle_ns:
                break
            del d[cid]
            self.expired += 1
        if len(ended) > 2 * self.max_dialogs:      # its bound: entries of resumed or evicted dialogs
            self._ended = deque((t, c) for t, c in ended if c in d and d[c].ended_ns == t)

    def counters(self) -> dict:
        return {"matched_dialogs": self.matched_dialogs, "matched_messages": self.matched_messages,
                "unmatched": self.unmatched, "active": len(self.dialogs), "evictions": self.evictions,
                "expired": self.expired}


def header_getter(data: bytes, names: frozenset[str]) -> Callable[[str], list[str]]:
    """Header values from a raw message's header block, for the fast path (which has no parsed
    headers): only the names a selector asks for, compact forms not expanded (selectors name
    extension headers such as X-Tenant, which have none)."""
    end = data.find(b"\r\n\r\n")
    head = data[:end if end >= 0 else len(data)]
    found: dict[str, list[str]] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        n = name.strip().decode("latin-1").lower()
        if n in names:
            found.setdefault(n, []).append(value.strip().decode("utf-8", "replace"))
    return lambda name: found.get(name, [])
