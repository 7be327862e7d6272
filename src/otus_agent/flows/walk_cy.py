"""The flow table's per-packet loop over a decoded batch (Cython pure-Python mode, see docs/architecture.md).

``walk`` takes the TCP/UDP/SCTP packets itself -- five-tuple lookup, counters, TCP state -- and hands
every rarer case back to the stage (ICMP and other IP protocols, timeouts, new flows, sweeps), so the
table's rules stay in ``flows/stage.py`` and ``flows/table.py``. Compiled, the loop indexes the rows as
C arrays; uncompiled, the same source runs as plain Python.
"""
try:
    import cython
except ImportError:  # the pure build without Cython installed
    from otus_agent import _cython_shim as cython  # type: ignore[no-redef]

if cython.compiled:  # the one definition: decode/layout.pxd (its Python view is generated from it)
    from cython.cimports.otus_agent.decode.layout import (  # noqa: I001
        F_DPORT, F_IPVER, F_L3OFF, F_L4OFF, F_PAYLEN, F_PROTO, F_SPORT, F_TCPFLAGS, F_TCPSEQ, NF, ST_DROPPED,
        ST_FRAGMENT, ST_L4, ST_OTHER_IP,
    )
else:
    from otus_agent.decode.layout import (  # noqa: I001
        F_DPORT, F_IPVER, F_L3OFF, F_L4OFF, F_PAYLEN, F_PROTO, F_SPORT, F_TCPFLAGS, F_TCPSEQ, NF, ST_DROPPED,
        ST_FRAGMENT, ST_L4, ST_OTHER_IP,
    )

from otus_agent.flows.table import ESTABLISHED, NONE, RESET, SYN_RECEIVED

SYN_ACK = cython.declare(cython.longlong, 0x12)
S_RESET = cython.declare(cython.longlong, RESET)
S_SYN_RECEIVED = cython.declare(cython.longlong, SYN_RECEIVED)
S_ESTABLISHED = cython.declare(cython.longlong, ESTABLISHED)
S_NONE = cython.declare(cython.longlong, NONE)


def walk(stage: object, buf: bytes, rows: cython.longlong[:], n: cython.Py_ssize_t, ts: cython.longlong[:],
         wl: cython.longlong[:]) -> None:
    """Account packets ``0..n-1`` of a decoded batch on ``stage`` (a FlowStage)."""
    i: cython.Py_ssize_t
    o: cython.Py_ssize_t
    st: cython.longlong
    t: cython.longlong
    length: cython.longlong
    l3: cython.Py_ssize_t
    l4: cython.Py_ssize_t
    proto: cython.longlong
    flags: cython.longlong
    d: cython.int
    new: cython.bint
    last: cython.longlong
    s0: cython.longlong
    s1: cython.longlong
    t_min: cython.longlong = stage._t_min  # type: ignore[attr-defined]
    next_sweep: cython.longlong = stage._next_sweep  # type: ignore[attr-defined]
    flows: dict = stage.flows  # type: ignore[attr-defined]
    packets: cython.longlong = 0
    nbytes: cython.longlong = 0
    events = stage.events  # type: ignore[attr-defined]
    tcp_lim: tuple = stage._tcp_lim  # type: ignore[attr-defined]
    for i in range(n):
        o = i * NF
        st = rows[o]
        t = ts[i]
        if st != ST_L4:
            if st == ST_OTHER_IP:
                stage._other(buf, rows, o, t, wl[i])  # type: ignore[attr-defined]
                next_sweep = stage._next_sweep  # type: ignore[attr-defined]
            elif st == ST_FRAGMENT:
                stage._fragment(buf, rows, o, t, wl[i])  # type: ignore[attr-defined]
                next_sweep = stage._next_sweep  # type: ignore[attr-defined]
            elif st == ST_DROPPED:
                stage.undecoded += 1  # type: ignore[attr-defined]
            continue
        length = wl[i]
        if t >= next_sweep:
            stage._sweep(t)  # type: ignore[attr-defined]
            next_sweep = stage._next_sweep  # type: ignore[attr-defined]
        l3 = rows[o + F_L3OFF]
        if rows[o + F_IPVER] == 4:
            src = buf[l3 + 12:l3 + 16]
            dst = buf[l3 + 16:l3 + 20]
        else:
            src = buf[l3 + 8:l3 + 24]
            dst = buf[l3 + 24:l3 + 40]
        proto = rows[o + F_PROTO]
        sp = rows[o + F_SPORT]
        dp = rows[o + F_DPORT]
        k = (src, dst, sp, dp, proto)
        f = flows.get(k)
        d = 0
        if f is None:
            f = flows.get((dst, src, dp, sp, proto))
            d = 1
        new = False
        last = t
        s0 = s1 = -1  # TCP state before this segment (its wheel entry is no later than that deadline), after it
        if f is not None:
            last = f.last_ns
            if t - last > t_min and stage._expired(f, t):  # type: ignore[attr-defined]
                stage._end(f, t, stage._timeout_reason(f))  # type: ignore[attr-defined]
                f = None
                last = t
        if proto == 6:
            flags = rows[o + F_TCPFLAGS]
            if f is not None and (flags & SYN_ACK) == 2 and f.closed():
                if d == 0 and rows[o + F_TCPSEQ] == f.isn:  # its SYN again (as tshark: the same stream)
                    s0 = f.state
                    f.reopen()
                else:  # a new connection on the same ports
                    stage._end(f, t, "rst" if f.state == S_RESET else "fin")  # type: ignore[attr-defined]
                    f = None
                    last = t
            if f is None:
                f, d = stage._tcp_new(k, rows[o + F_IPVER], src, dst, sp, dp, flags, t)  # type: ignore[attr-defined]
                new = True
                s0 = S_NONE  # filed by _new, before _tcp_new set a mid-stream flow's state
            l4 = rows[o + F_L4OFF]
            was = f.state
            if s0 < 0:
                s0 = was
            f.tcp(d, flags, rows[o + F_TCPSEQ], rows[o + F_PAYLEN], (buf[l4 + 14] << 8) | buf[l4 + 15])
            s1 = f.state
            if was == S_SYN_RECEIVED and s1 == S_ESTABLISHED and events is not None:
                stage._event(f, "established", t)  # type: ignore[attr-defined]
        elif f is None:
            f = stage._new(k, rows[o + F_IPVER], proto, src, dst, sp, dp, t)  # type: ignore[attr-defined]
            d = 0
            new = True
        if d == 0:
            f.pk_ab += 1
            f.by_ab += length
        else:
            f.pk_ba += 1
            f.by_ba += length
        f.last_ns = t
        # the flow's deadline moved earlier than its wheel entry: a shorter timeout in its new TCP state, or
        # packet time went back (rare: the stage files it again)
        if t < last or (s1 != s0 and tcp_lim[s1] < tcp_lim[s0]):
            stage._refile(f)  # type: ignore[attr-defined]
        packets += 1
        nbytes += length
        if new and events is not None:
            stage._event(f, "start", t)  # type: ignore[attr-defined]
    stage.packets += packets  # type: ignore[attr-defined]
    stage.bytes += nbytes  # type: ignore[attr-defined]
