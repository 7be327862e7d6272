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

The admitted Call-IDs are a bounded table (``select_cy.DialogSelector``: a fixed-size C hash table keyed
by the Call-ID's bytes, which the compiled SIP lane probes once per message) of ``max_dialogs``, the
least recently seen evicted and counted when it is full (an evicted dialog's later messages are then
judged on their own).  An entry lives until its dialog
ends (BYE answered, INVITE answered with a final failure, CANCEL) plus ``linger_s`` for the
retransmissions that follow, or until it has been idle for ``idle_s``, on the capture clock.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

NS = 1_000_000_000
LINGER_S = 32.0        # RFC 3261 Timer B/F: a transaction's retransmissions are over by then
IDLE_S = 7200.0        # as the dialog table's timeout (sip/dialogs_cy.py)
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
    def from_options(cls, match: Mapping) -> Selector:
        """From the task's ``SipMatch`` (otus_spec) as a dict (``SipConfig.match``): the one conversion."""
        return cls(methods=tuple(m.upper() for m in match.get("methods") or ()),
                   from_user=tuple(match.get("from_user") or ()), to_user=tuple(match.get("to_user") or ()),
                   request_uri_prefix=tuple(match.get("request_uri_prefix") or ()),
                   request_uri=tuple(match.get("request_uri") or ()), call_id=tuple(match.get("call_id") or ()),
                   headers=tuple(HeaderCondition(str(h["name"]).lower(), h.get("equals"), h.get("contains"))
                                 for h in match.get("headers") or ()))

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


def header_getter(data: bytes, names: frozenset[str]) -> Callable[[str], list[str]]:
    """Header values from a raw message's header block, for the fast path (which has no parsed
    headers): only the names a selector asks for, compact forms not expanded (selectors name
    extension headers such as X-Tenant, which have none).  A header is a line after the start line
    whose text before its first colon is the name, case-insensitive, give or take white space; its
    value is the rest of the line, trimmed.  The names are searched for in the block (a C search per
    name, not a walk of every line: an INVITE has twenty headers, a selector one or two)."""
    end = data.find(b"\r\n\r\n")
    head = data[:end] if end >= 0 else data
    low = head.lower()          # the names are tokens (ASCII): case folds as the bytes do
    found: dict[str, list[str]] = {}
    for n in names:
        key = n.encode("latin-1")
        i = low.find(key)
        while i >= 0:
            start = low.rfind(b"\r\n", 0, i)      # the line it is on: never the start line
            eol = low.find(b"\r\n", i)
            if eol < 0:
                eol = len(low)
            colon = low.find(b":", i, eol)
            if start >= 0 and colon >= 0 and not low[start + 2:i].strip() and not low[i + len(key):colon].strip():
                found.setdefault(n, []).append(head[colon + 1:eol].strip().decode("utf-8", "replace"))
            i = low.find(key, i + 1)
    return lambda name: found.get(name, [])
