"""Compile tcpdump filter expressions to classic BPF with libpcap, attach them to sockets.

libpcap comes from the system (Debian's libpcap0.8) through ctypes; it is only
used to compile, never to capture.  A bad expression raises ``FilterError``
with libpcap's own message, before any capture starts.

A filter is compiled for the link type of the socket it goes on: libpcap's
offsets (and what it accepts at all) depend on it.  The default SIP filter is
therefore not one string but one per link type (``DefaultFilter``): only
Ethernet gets the ``vlan`` alternative, since libpcap rejects ``vlan`` for the
cooked, raw-IP and loopback headers (the ``any`` device is opened cooked, so
the kernel has already taken any tag off).  A filter the user wrote is never
rewritten; if libpcap rejects it for an interface's link type, the error says
which filter, which interface and link type, and libpcap's reason.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
import threading

from otus_agent.capture import linktypes

SO_ATTACH_FILTER = 26
SO_LOCK_FILTER = 44
DEFAULT_SIP_PORTS = (5060, 5061, 5080)


class FilterError(Exception):
    """An expression libpcap will not compile (message from libpcap), or no libpcap."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


_lib = None
_lock = threading.Lock()  # pcap_compile is not thread-safe in older libpcaps


def _libpcap():
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise FilterError("libpcap not found: install it (Debian: apt-get install libpcap0.8)") from None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def compile_filter(expr: str, linktype: int = linktypes.ETHERNET,
                   snaplen: int = 262144) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) instructions for ``expr`` on ``linktype`` (LINKTYPE_*) frames.

    A ``DefaultFilter`` is compiled in its form for ``linktype``; any other text as given.
    """
    expr = for_linktype(expr, linktype)
    if "\0" in expr:
        raise FilterError("filter expression contains a NUL byte")
    lib = _libpcap()
    with _lock:
        p = lib.pcap_open_dead(linktypes.dlt(linktype), snaplen)
        if not p:
            raise FilterError("libpcap could not open a compiler handle")
        prog = _Program()
        try:
            if lib.pcap_compile(p, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
                raise FilterError((lib.pcap_geterr(p) or b"cannot compile").decode(errors="replace"))
            insns = [(prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf, prog.bf_insns[i].k)
                     for i in range(prog.bf_len)]
            lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(p)
    return insns


def attach(sock: socket.socket, insns: list[tuple[int, int, int, int]], level: int = socket.SOL_SOCKET,
           option: int = SO_ATTACH_FILTER) -> None:
    """SO_ATTACH_FILTER: the kernel runs the program on every packet before the ring (or another option
    taking a ``struct sock_fprog``: PACKET_FANOUT_DATA)."""
    arr = (_Insn * len(insns))(*[_Insn(*i) for i in insns])
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HL", len(insns), ctypes.addressof(arr))
    sock.setsockopt(level, option, fprog)


DROP_ALL = [(0x06, 0, 0, 0)]  # ret #0


def _sip_expr(ports: tuple[int, ...], linktype: int, extra: tuple[str, ...] = ()) -> str:
    port_expr = " or ".join(f"port {p}" for p in ports)
    core = f"((udp or tcp or sctp) and ({port_expr})) or (ip and ip[6:2] & 0x3fff != 0) or (ip6 and ip6[6] == 44)"
    if extra:
        core = " or ".join([core, *(f"({e})" for e in extra)])
    if linktype in linktypes.VLAN_CAPABLE:
        return f"({core}) or (vlan and ({core}))"
    return core


class DefaultFilter(str):
    """The default filter: the SIP ports, IP fragments, and the ``extra`` clauses other parsers
    need (engine/parsers.py: each parser's ``capture`` clause), rendered per link type when compiled.

    Its text (what is shown, logged and checked offline) is the Ethernet form;
    ``for_linktype`` gives the form for another link type.  It is a ``str`` so
    that the code carrying a filter expression around need not know the
    difference.
    """

    ports: tuple[int, ...]
    extra: tuple[str, ...]

    def __new__(cls, ports: tuple[int, ...] = DEFAULT_SIP_PORTS, extra: tuple[str, ...] = ()) -> "DefaultFilter":
        ports = tuple(int(p) for p in ports)
        extra = tuple(extra)
        obj = super().__new__(cls, _sip_expr(ports, linktypes.ETHERNET, extra))
        obj.ports = ports
        obj.extra = extra
        return obj

    def __reduce__(self):
        return DefaultFilter, (self.ports, self.extra)

    def for_linktype(self, linktype: int) -> str:
        return _sip_expr(self.ports, linktype, self.extra)


def for_linktype(expr: str, linktype: int) -> str:
    """The text to compile for ``linktype``: the default filter's form for it, a user's filter unchanged."""
    return expr.for_linktype(linktype) if isinstance(expr, DefaultFilter) else expr


def default_sip_filter(ports: tuple[int, ...] = DEFAULT_SIP_PORTS, linktype: int | None = None) -> str:
    """SIP ports over UDP/TCP/SCTP, plus every IP fragment (later fragments carry no ports),
    with or without one VLAN tag where the link type can carry one.

    Without ``linktype``: a ``DefaultFilter``, rendered for each socket's link type when compiled.
    """
    f = DefaultFilter(ports)
    return f if linktype is None else f.for_linktype(linktype)


def default_filter(ports: tuple[int, ...], extra: tuple[str, ...] | None) -> str:
    """The default filter widened by ``extra`` clauses; None (a parser that reads every packet, e.g. the
    flow table): no filter at all, ``""``."""
    return "" if extra is None else DefaultFilter(ports, extra)
