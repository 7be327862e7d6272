"""The selector's C table (sip/select_cy.py) keeps the rules of the table it replaced, message for message.

``Reference`` is the previous implementation (an ``OrderedDict`` of ``str`` Call-IDs, a deque of
ends), kept here as the specification: admit, the 401/407 challenge, linger after the end, idle
expiry, LRU eviction and every counter.  Random message streams with small tables (evictions,
long probe clusters, slots shifted back on removal) must give the same verdicts and counters in
the compiled and the pure build.  The pure build also runs with a hash that collides for every
Call-ID (a stand-in: no colliding pair of the real keyed hash can be made in a test): equality on
the bytes must still tell the dialogs apart.
"""
from __future__ import annotations

import random
from collections import OrderedDict, deque

import pytest

from otus_agent.sip import select_cy
from otus_agent.sip.select import NS, Selector
from otus_spec import SipMatch

from ...conftest import load_pure

PURE = load_pure("sip/select_cy.py", "otus_pure_select_table")
BUILDS = {"installed": select_cy, "pure": PURE}


def _ends(is_request, method, status, cseq_method) -> bool:
    if is_request:
        return method == "CANCEL"
    if status is None or status < 200:
        return False
    if cseq_method == "BYE":
        return True
    return status >= 300 and cseq_method == "INVITE" or cseq_method not in ("INVITE", "ACK", "PRACK",
                                                                             "UPDATE", "INFO", "BYE")


class _Entry:
    def __init__(self, ts: int) -> None:
        self.last_ns = ts
        self.ended_ns = 0


class Reference:
    """The previous DialogSelector (select_cy.py before the C table), verbatim but for the types."""

    def __init__(self, selector, max_dialogs, linger_s, idle_s):
        self.selector = selector
        self.max_dialogs = max_dialogs
        self.linger_ns = int(linger_s * NS)
        self.idle_ns = int(idle_s * NS)
        self.dialogs: OrderedDict = OrderedDict()
        self._ended: deque = deque()
        self._idle_check = 0
        self.matched_dialogs = self.matched_messages = self.unmatched = self.evictions = self.expired = 0

    def admit(self, ts, is_request, method, status, cseq_method, call_id, from_user, to_user, request_uri,
              header=None, in_dialog=False):
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
                e.ended_ns = 0
            if not e.ended_ns and _ends(is_request, method, status, cseq_method):
                e.ended_ns = ts
                self._ended.append((ts, call_id))
        self.matched_messages += 1
        return True

    def _add(self, call_id, ts):
        e = _Entry(ts)
        self.matched_dialogs += 1
        if call_id is None:
            return e
        if len(self.dialogs) >= self.max_dialogs:
            self.dialogs.popitem(last=False)
            self.evictions += 1
        self.dialogs[call_id] = e
        return e

    def _expire(self, ts):
        d = self.dialogs
        ended = self._ended
        while ended and ts - ended[0][0] > self.linger_ns:
            t, cid = ended.popleft()
            x = d.get(cid)
            if x is not None and x.ended_ns == t:
                del d[cid]
                self.expired += 1
        if ts < self._idle_check:
            return
        self._idle_check = ts + NS
        while d:
            cid, y = next(iter(d.items()))
            if ts - y.last_ns <= self.idle_ns:
                break
            del d[cid]
            self.expired += 1

    def counters(self):
        return {"matched_dialogs": self.matched_dialogs, "matched_messages": self.matched_messages,
                "unmatched": self.unmatched, "active": len(self.dialogs), "evictions": self.evictions,
                "expired": self.expired}


# Call-IDs that differ in one byte, by length only, by case, non-ASCII, empty, long
CALL_IDS = ([f"a84b4c76e66710@pc33.atlanta.com-{i}" for i in range(150)] + ["x", "X", "xx", "", "é@h", "e@h",
            "\udcff-surrogate", "z" * 300, "z" * 299 + "y",
            # about the length the compiled entry holds in place (56 bytes): longer ones are kept apart
            "k" * 55, "k" * 56, "k" * 55 + "l", "k" * 57, "k" * 56 + "l"])
REQUESTS = ["INVITE", "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "MESSAGE", "UPDATE", "INFO"]
CSEQ = ["INVITE", "INVITE", "BYE", "REGISTER", "CANCEL", "OPTIONS", "MESSAGE", "PRACK", "UPDATE", "INFO"]
STATUSES = [100, 100, 180, 180, 183, 200, 200, 401, 407, 486, 487, 500]


def _stream(rnd: random.Random, n: int):
    """Messages in capture order: (ts, admit's arguments after ts)."""
    ts = NS     # the capture clock starts after 0 (0 is "not ended" in the reference)
    recent = CALL_IDS[:1]
    for _ in range(n):
        r = rnd.random()
        ts += int(rnd.choice([0, 0.001, 0.01, 0.1, 0.5]) * NS) if r < 0.97 else int(rnd.choice([33, 61, 7300]) * NS)
        if rnd.random() < 0.02:
            cid = None
        elif rnd.random() < 0.7:            # most messages belong to a call of the last few seconds
            cid = rnd.choice(recent)
        else:
            cid = rnd.choice(CALL_IDS)
            recent = [*recent[-24:], cid]
        if rnd.random() < 0.55:
            method = rnd.choice(REQUESTS)
            in_dialog = method in ("ACK", "BYE") or rnd.random() < 0.15
            yield ts, (True, method, None, method, cid, rnd.choice(["alice", "bob"]), "carol", "sip:carol@x",
                       None, in_dialog)
        else:
            yield ts, (False, None, rnd.choice(STATUSES), rnd.choice(CSEQ), cid, None, None, None, None, False)


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("max_dialogs,seed", [(1, 1), (3, 2), (5, 3), (12, 4), (64, 5), (100_000, 6)])
def test_same_verdicts_and_counters_as_the_previous_table(build, max_dialogs, seed):
    sel = Selector.from_options(SipMatch(methods=["INVITE", "REGISTER", "OPTIONS", "CANCEL"],
                                         from_user=["alice"]).model_dump())
    ref = Reference(sel, max_dialogs, 5.0, 60.0)
    new = BUILDS[build].DialogSelector(sel, max_dialogs=max_dialogs, linger_s=5.0, idle_s=60.0)
    rnd = random.Random(seed)
    admitted = 0
    for i, (ts, args) in enumerate(_stream(rnd, 6000)):
        want = ref.admit(ts, *args)
        assert new.admit(ts, *args) == want, (i, ts, args)
        admitted += want
        assert new.counters() == ref.counters(), (i, ts, args)
        if i % 50 == 0:
            assert {c for c in CALL_IDS if c in new} == set(ref.dialogs)
            assert len(new) == len(ref.dialogs)
    c = new.counters()
    # the stream reached every rule: admitted and dropped, linger and idle expiry, evictions when small
    assert admitted > 100 and c["unmatched"] > 100 and c["expired"] > 10
    assert c["evictions"] > 0 or max_dialogs > 20


# the pure build's _hash gets the key's bytes; a slot's home is the hash's bits from 33 up, masked
FAKE_HASHES = {"one value": lambda p, n: 0x5EED5EED5EED,
               "four homes side by side": lambda p, n: (len(p) % 4) << 33,
               "three homes across the end": lambda p, n: (len(p) % 3 + 14) << 33}   # 16 slots: 14, 15, 0


@pytest.mark.parametrize("hashed", sorted(FAKE_HASHES))
def test_colliding_hashes_never_admit_a_foreign_dialog(monkeypatch, hashed):
    """Every Call-ID with the same hash (or one of a few): long probe clusters, told apart by the bytes."""
    monkeypatch.setattr(PURE, "_hash", FAKE_HASHES[hashed])
    sel = Selector.from_options(SipMatch(methods=["INVITE"], from_user=["alice"]).model_dump())
    ds = PURE.DialogSelector(sel, max_dialogs=8, linger_s=5.0, idle_s=60.0)
    ref = Reference(sel, 8, 5.0, 60.0)
    for i, (ts, args) in enumerate(_stream(random.Random(9), 4000)):
        assert ds.admit(ts, *args) == ref.admit(ts, *args), (i, args)
        assert ds.counters() == ref.counters()
    # a Call-ID never admitted, with the admitted ones' hash, is not let in
    t = 10_000 * NS
    assert ds.admit(t, True, "INVITE", None, "INVITE", "admitted", "alice", "b", "sip:b", None, False)
    assert "admitted" in ds and "admitted?" not in ds
    assert not ds.admit(t, False, None, 200, "INVITE", "admitted?", None, None, None)
    assert not ds.admit(t, True, "BYE", None, "BYE", "admitte", None, None, None, None, True)


def test_the_table_is_fixed_at_its_limit():
    sel = Selector.from_options(SipMatch(methods=["INVITE"]).model_dump())
    with pytest.raises(ValueError, match="max_dialogs"):
        select_cy.DialogSelector(sel, max_dialogs=0)
    with pytest.raises(ValueError, match="max_dialogs"):
        select_cy.DialogSelector(sel, max_dialogs=select_cy.MAX_CAPACITY + 1)
    ds = select_cy.DialogSelector(sel, max_dialogs=1000)
    for i in range(5000):      # 5x the limit: the oldest go, the table stays at its size
        assert ds.admit((i + 1) * NS // 100, True, "INVITE", None, "INVITE", f"call-{i}", "a", "b", "sip:b")
    c = ds.counters()
    assert (c["active"], c["evictions"], c["matched_dialogs"]) == (1000, 4000, 5000)
    assert "call-3999" not in ds and "call-4000" in ds and "call-4999" in ds
