"""SIP selectors (sip/select.py): conditions, whole dialogs, the bounded table."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from otus_agent.sip import select_cy
from otus_agent.sip.select import NS, Selector, header_getter
from otus_spec import SipMatch, SipOptions

from ...conftest import load_pure

# the dialog table runs compiled in the lane and as Python in the pure build: every test runs both
BUILDS = {"installed": select_cy, "pure": load_pure("sip/select_cy.py", "otus_pure_select")}


@pytest.fixture(params=sorted(BUILDS), autouse=True)
def build(request, monkeypatch):
    monkeypatch.setitem(globals(), "DialogSelector", BUILDS[request.param].DialogSelector)
    return request.param


DialogSelector = select_cy.DialogSelector


def _sel(**kw):
    return DialogSelector(Selector.from_options(SipMatch(**kw).model_dump()))


def _req(ds, ts: float, method: str, cid: str, fu: str = "alice", tu: str = "bob",
         ruri: str = "sip:bob@example.com", header=None, in_dialog: bool | None = None) -> bool:
    if in_dialog is None:
        in_dialog = method in ("ACK", "BYE")
    return ds.admit(int(ts * NS), True, method, None, method, cid, fu, tu, ruri, header, in_dialog)


def _resp(ds, ts: float, status: int, cseq_method: str, cid: str) -> bool:
    return ds.admit(int(ts * NS), False, None, status, cseq_method, cid, "alice", "bob", None)


def test_lists_are_or_keys_are_and():
    s = Selector.from_options(SipMatch(methods=["invite", "MESSAGE"], from_user=["alice"]).model_dump())
    assert s.matches("INVITE", "alice", "x", "sip:x", "c1")
    assert s.matches("MESSAGE", "alice", "x", "sip:x", "c1")
    assert not s.matches("INVITE", "carol", "x", "sip:x", "c1")
    assert not s.matches("REGISTER", "alice", "x", "sip:x", "c1")
    u = Selector.from_options(SipMatch(request_uri_prefix=["sip:+1555"], request_uri=["sip:911@pbx"]).model_dump())
    assert u.matches("INVITE", None, None, "sip:+15551234@gw", None)
    assert u.matches("INVITE", None, None, "sip:911@pbx", None)
    assert not u.matches("INVITE", None, None, "sip:911@pbx;user=phone", None)
    assert not u.matches("INVITE", None, None, None, None)


def test_header_conditions_equal_or_contain():
    s = Selector.from_options(SipMatch(headers=[{"name": "X-Tenant", "equals": "acme"},
                                                {"name": "X-Route", "contains": "eu-"}]).model_dump())
    raw = b"INVITE sip:b@x SIP/2.0\r\nx-tenant:  acme \r\nX-Route: to-eu-west\r\n\r\nbody"
    get = header_getter(raw, s.header_names())
    assert get("x-tenant") == ["acme"] and s.matches("INVITE", None, None, None, None, get)
    other = header_getter(b"INVITE sip:b@x SIP/2.0\r\nX-Tenant: acme-2\r\n\r\n", s.header_names())
    assert not s.matches("INVITE", None, None, None, None, other)
    assert not s.matches("INVITE", None, None, None, None, None)   # headers asked for, none given


def test_a_matching_dialog_is_reported_whole_and_the_rest_counted():
    ds = _sel(to_user=["bob"])
    # a call to bob: every message, including the callee's BYE whose From/To are bob/alice
    assert _req(ds, 0, "INVITE", "c1")
    assert _resp(ds, 0.1, 100, "INVITE", "c1") and _resp(ds, 0.2, 180, "INVITE", "c1")
    assert _resp(ds, 0.3, 200, "INVITE", "c1") and _req(ds, 0.31, "ACK", "c1")
    assert _req(ds, 9, "BYE", "c1", fu="bob", tu="alice")
    assert _resp(ds, 9.1, 200, "BYE", "c1")
    assert _resp(ds, 9.6, 200, "BYE", "c1")            # a retransmitted 200 within the linger
    # a call to carol: nothing of it
    assert not _req(ds, 1, "INVITE", "c2", tu="carol")
    assert not _resp(ds, 1.1, 200, "INVITE", "c2")
    assert not _req(ds, 1.2, "BYE", "c2", fu="carol", tu="alice")
    c = ds.counters()
    assert (c["matched_dialogs"], c["matched_messages"], c["unmatched"]) == (1, 8, 3)
    # the ended dialog leaves the table after the linger; a late stray message is judged alone
    assert not _resp(ds, 9.1 + 33, 200, "BYE", "c1")
    assert ds.counters()["active"] == 0 and ds.counters()["expired"] == 1


def test_only_an_initial_request_opens_a_selection():
    ds = _sel(from_user=["alice"])
    assert not _req(ds, 0, "BYE", "c9")                          # in-dialog, its INVITE never seen
    assert not _req(ds, 0, "INFO", "c9", in_dialog=True)
    assert _req(ds, 1, "MESSAGE", "c8", in_dialog=False)         # out of dialog: judged
    assert ds.counters()["unmatched"] == 2


def test_a_challenged_invite_keeps_its_dialog():
    ds = _sel(from_user=["alice"])
    assert _req(ds, 0, "INVITE", "c1")
    assert _resp(ds, 0.1, 407, "INVITE", "c1") and _req(ds, 0.2, "ACK", "c1")
    assert _req(ds, 0.3, "INVITE", "c1")                # with credentials: the dialog goes on
    assert _resp(ds, 0.5, 200, "INVITE", "c1")
    assert _req(ds, 300, "BYE", "c1", fu="bob", tu="alice")   # long after the 407's linger


def test_the_table_is_bounded_and_idle_dialogs_expire():
    ds = DialogSelector(Selector.from_options(SipMatch(methods=["INVITE"]).model_dump()), max_dialogs=3, idle_s=60)
    for i in range(5):
        assert _req(ds, i, "INVITE", f"c{i}")
    c = ds.counters()
    assert c["active"] == 3 and c["evictions"] == 2
    assert not _resp(ds, 5, 200, "INVITE", "c0")        # evicted: judged on its own
    assert _resp(ds, 5, 200, "INVITE", "c4")
    assert not _resp(ds, 5 + 61, 200, "INVITE", "c3")   # idle past 60 s
    assert ds.counters()["active"] == 0


def test_the_task_contract_rejects_what_cannot_match():
    with pytest.raises(ValidationError, match="at least one condition"):
        SipOptions(match={})
    with pytest.raises(ValidationError, match="exactly one of"):
        SipMatch(headers=[{"name": "X-Tenant"}])
    with pytest.raises(ValidationError, match="bad header name"):
        SipMatch(headers=[{"name": "X Tenant", "equals": "a"}])
    with pytest.raises(ValidationError, match="bad method"):
        SipMatch(methods=["IN VITE"])
    with pytest.raises(ValidationError):
        SipMatch(call_id=["x"] * 65)
    assert SipMatch(methods=["invite"]).methods == ["INVITE"]


def _lines_header_getter(data: bytes, names: frozenset[str]):
    """The previous header_getter (a walk of every line), the specification of the search."""
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


def test_header_search_reads_the_lines_a_walk_of_every_line_reads():
    import random
    rnd = random.Random(18)
    names = frozenset({"x-tenant", "x-route", "a"})
    pieces = [b"X-Tenant", b"x-tenant", b"X-TENANT", b"x-tenant2", b"X-Route", b"a", b"A", b"ba", b"To", b":", b": ",
              b" ", b"\t", b"\x0b", b"\r\n", b"\r\n", b"\r\n", b"\r", b"\n", b"acme", b" acme ", b"eu-west", b"\xc3\xa9",
              b"\xff", b"sip:x@y", b";tag=1", b"\r\n\r\n"]
    for _ in range(4000):
        data = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30)))
        if rnd.random() < 0.5:
            data = b"INVITE sip:b@x SIP/2.0\r\n" + data
        want, got = _lines_header_getter(data, names), header_getter(data, names)
        for n in names:
            assert got(n) == want(n), (data, n)
