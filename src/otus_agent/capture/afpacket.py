"""Live capture on AF_PACKET with a TPACKET_V3 mmap ring, a kernel BPF filter and fanout.

One ``Ring`` per interface: the socket is created receiving nothing, the
filter is attached, the ring set up, and only then is it bound to the
interface, so no unfiltered packet ever reaches the ring.  Retired blocks
are copied once (one copy per block, not per packet), indexed by a compiled
walker into a ``PacketBatch`` and handed back to the kernel at once.
Several processes can join one fanout group (the kernel's hash by flow, or the
group's own program, capture/fanout_bpf.py; defragmenting), so the fragments and
segments of one flow reach one worker.  The workers' sockets are their parent's
(``LiveCapture.open_sockets``), so a worker that dies keeps its place in the group
and the packets that come until it is back wait in its ring.

Ethernet-framed devices (Ethernet, veth, bridges, VXLAN, loopback) are read
raw, with their link header (LINKTYPE_ETHERNET).  The ``any`` device and
every other device type (tun, WireGuard, IP-in-IP, PPP...) are read cooked
(SOCK_DGRAM), from the network header on (LINKTYPE_RAW), the way libpcap
falls back to cooked capture for link layers it cannot parse.  The filter is
compiled for that link type, per ring.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import select
import socket
import struct
from array import array
from dataclasses import dataclass
from typing import Iterator

from otus_agent.capture import bpf
from otus_agent.capture.frames_cy import restore_vlans, walk_tpacket3
from otus_agent.capture.linktypes import ETHERNET as LINKTYPE_ETHERNET
from otus_agent.capture.linktypes import RAW as LINKTYPE_RAW
from otus_agent.capture.linktypes import describe
from otus_agent.capture.pcapfile import PacketBatch

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
TPACKET_V3 = 2
PACKET_MR_PROMISC = 1
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_CBPF = 6     # the group's own classic BPF program picks the member (capture/fanout_bpf.py)
PACKET_FANOUT_DATA = 22
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000   # join id 0 with it: a new group, its id picked by the kernel (Linux 4.2)
NEW_GROUP = 0                          # fanout_group value: a new group of this process's own (fanout_id reads it)
ETH_P_ALL = 0x0003
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ETHERNET_FRAMED = frozenset({ARPHRD_ETHER, ARPHRD_LOOPBACK})


class CaptureError(Exception):
    """Live capture cannot start; the message says why and, where it can, how to fix it."""


@dataclass
class RingConfig:
    block_size: int = 1 << 20      # bytes per block (a power of two, multiple of the page size)
    block_count: int = 32          # 32 MiB ring by default
    block_timeout_ms: int = 50     # a partly filled block is handed over after this long
    snaplen: int = 65535
    promiscuous: bool = False


def _capture_error(e: OSError, what: str) -> CaptureError:
    if e.errno in (errno.EPERM, errno.EACCES):
        return CaptureError(f"{what}: permission denied: live capture needs CAP_NET_RAW "
                            "(run as root, or grant it: setcap cap_net_raw,cap_net_admin+eip on the "
                            "Python binary, or AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN in systemd)")
    return CaptureError(f"{what}: {e.strerror or e}")


def interface_linktype(interface: str) -> int:
    """The LINKTYPE_* of what a Ring on ``interface`` delivers: ETHERNET for Ethernet-framed devices,
    RAW (cooked capture) for ``any`` and every other device type.  An interface not found here
    (checked offline, to run elsewhere) is taken to be Ethernet."""
    if interface == "any":
        return LINKTYPE_RAW
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifr = fcntl.ioctl(s, SIOCGIFHWADDR, struct.pack("16sH14s", interface.encode()[:15], 0, b""))
    except (OSError, UnicodeError):
        return LINKTYPE_ETHERNET
    hatype = struct.unpack_from("H", ifr, 16)[0]
    return LINKTYPE_ETHERNET if hatype in ETHERNET_FRAMED else LINKTYPE_RAW


def compile_for(filter_expr: str, interface: str, snaplen: int = 262144,
                linktype: int | None = None) -> list[tuple[int, int, int, int]]:
    """``filter_expr`` compiled for ``interface``'s link type; CaptureError naming both if libpcap refuses."""
    lt = interface_linktype(interface) if linktype is None else linktype
    try:
        return bpf.compile_filter(filter_expr, lt, snaplen)
    except bpf.FilterError as e:
        raise CaptureError(f"invalid filter {bpf.for_linktype(filter_expr, lt)!r} for interface {interface} "
                           f"(link type {describe(lt)}): {e}") from None


_libc = None


def _bind(sock: socket.socket, ifindex: int, proto: int) -> None:
    """bind(2) with a raw sockaddr_ll: Python's AF_PACKET addresses cannot say 'all interfaces'."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    # struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]
    addr = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(proto), ifindex, 0, 0, 0, b"")
    if _libc.bind(sock.fileno(), ctypes.c_char_p(addr), len(addr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


BLOCK_STATUS = 8    # tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1's block_status,
BLOCK_SEQ = 24      # num_pkts, offset_to_first_pkt, blk_len, and the seq_num the kernel gives each block it opens


def _check_ring(config: RingConfig) -> None:
    c = config
    if c.block_size < mmap.PAGESIZE or c.block_size & (c.block_size - 1) or c.block_count < 2:
        raise CaptureError("ring: block size must be a power of two >= page size, and block count >= 2")


def _ifindex(interface: str) -> int:
    try:
        return 0 if interface == "any" else socket.if_nametoindex(interface)
    except OSError:
        raise CaptureError(f"no such interface: {interface}") from None


def fanout_id(sock: socket.socket) -> int:
    """The id of the fanout group ``sock`` is in (getsockopt PACKET_FANOUT: id | type << 16)."""
    return struct.unpack("I", sock.getsockopt(SOL_PACKET, PACKET_FANOUT, 4))[0] & 0xFFFF


def open_ring_socket(interface: str, insns: list | None, config: RingConfig, fanout_group: int | None = None,
                     fanout_prog: list | None = None) -> socket.socket:
    """A packet socket with its filter, its TPACKET_V3 ring and its place in fanout group ``fanout_group``
    (``NEW_GROUP``: a new one, ``fanout_id`` tells its id; None: none), capturing.

    Apart from ``Ring`` so that a parent can make its workers' sockets (``LiveCapture.open_sockets``) and
    keep them: a worker that dies then leaves its socket in the group, in its place (the kernel moves the
    last member into a leaving member's place, which would move flows between workers), and the packets
    that come until it is back wait in the ring."""
    _check_ring(config)
    c = config
    ifindex = _ifindex(interface)
    cooked = interface_linktype(interface) != LINKTYPE_ETHERNET
    try:
        # protocol 0: receive nothing until bind(), after the filter is in place
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM if cooked else socket.SOCK_RAW, 0)
    except OSError as e:
        raise _capture_error(e, f"opening a packet socket on {interface}") from None
    try:
        if insns is not None:
            bpf.attach(sock, insns)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frame = 2048
        # tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov, sizeof_priv, feature_req
        req = struct.pack("IIIIIII", c.block_size, c.block_count, frame, (c.block_size * c.block_count) // frame,
                          c.block_timeout_ms, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        _bind(sock, ifindex, ETH_P_ALL)  # now packets start to flow
        if fanout_group is not None:
            mode = PACKET_FANOUT_HASH if fanout_prog is None else PACKET_FANOUT_CBPF
            if fanout_group == NEW_GROUP:   # never another process's group, whatever ids it chose
                try:
                    arg = (PACKET_FANOUT_FLAG_UNIQUEID | mode | PACKET_FANOUT_FLAG_DEFRAG) << 16
                    sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", arg))
                except OSError as e:         # a kernel before 4.2: an id of this process's own
                    if e.errno != errno.EINVAL:
                        raise
                    fanout_group = (os.getpid() ^ 0x5A5A ^ (ifindex << 8)) & 0xFFFF or 1
            if fanout_group != NEW_GROUP:
                arg = (fanout_group & 0xFFFF) | ((mode | PACKET_FANOUT_FLAG_DEFRAG) << 16)
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", arg))
            if fanout_prog is not None:   # the group's program; until it is set, every packet goes to member 0
                bpf.attach(sock, fanout_prog, SOL_PACKET, PACKET_FANOUT_DATA)
        if c.promiscuous and ifindex:
            mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)  # dropped with the socket
    except OSError as e:
        sock.close()
        raise _capture_error(e, f"setting up capture on {interface}") from None
    return sock


class Ring:
    """One interface, one AF_PACKET socket, one TPACKET_V3 ring: its own, or ``sock`` made by
    ``open_ring_socket`` before (a fanout worker's, kept by its parent across the worker's restarts)."""

    cooked = False   # SOCK_DGRAM: frames start at the network header (no tags to put back)

    def __init__(self, interface: str, insns: list | None, config: RingConfig, fanout_group: int | None = None,
                 batch_size: int = 8192, fanout_prog: list | None = None, sock: socket.socket | None = None):
        self.interface = interface
        self.config = config
        c = config
        _check_ring(c)
        self.any = interface == "any"
        self.ifindex = _ifindex(interface)
        self.linktype = interface_linktype(interface)
        self.cooked = self.linktype != LINKTYPE_ETHERNET
        self.sock = sock if sock is not None else open_ring_socket(interface, insns, c, fanout_group, fanout_prog)
        try:
            self.mm = mmap.mmap(self.sock.fileno(), c.block_size * c.block_count, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            self.sock.close()
            raise _capture_error(e, f"mapping the ring of {interface}") from None
        self.block = self._first_block()
        self.kernel_packets = 0
        self.kernel_drops = 0
        self.freeze_count = 0
        self.blocks = 0
        self.loopback_outgoing_skipped = 0
        n = batch_size
        self.offs, self.caplens, self.wirelens, self.ts, self.vlans = (array("q", bytes(8 * n)) for _ in range(5))
        self.links = array("q", [self.linktype] * n)

    def _first_block(self) -> int:
        """The block to read first.  A new ring: block 0.  A ring some process read before (a restarted
        worker's): the kernel fills blocks in ring order and numbers each as it opens it, so the oldest
        block retired while nobody read, else the one the kernel fills now (the highest number)."""
        c, mm = self.config, self.mm
        retired: list[tuple[int, int]] = []
        opened: list[tuple[int, int]] = []
        for b in range(c.block_count):
            off = b * c.block_size
            status = struct.unpack_from("I", mm, off + BLOCK_STATUS)[0]
            seq = struct.unpack_from("Q", mm, off + BLOCK_SEQ)[0]
            (retired if status & TP_STATUS_USER else opened).append((seq, -b))
        if retired:
            return -min(retired)[1]
        return -max(opened)[1]

    def fileno(self) -> int:
        return self.sock.fileno()

    def poll_blocks(self) -> Iterator[PacketBatch]:
        """Every block the kernel has retired, in ring order."""
        c = self.config
        mm = self.mm
        while True:
            off = self.block * c.block_size
            status, num, first, blen = struct.unpack_from("IIII", mm, off + BLOCK_STATUS)
            if not status & TP_STATUS_USER:
                return
            data = mm[off:off + min(blen, c.block_size)]
            struct.pack_into("I", mm, off + BLOCK_STATUS, TP_STATUS_KERNEL)  # the copy is ours: hand it back
            self.block = (self.block + 1) % c.block_count
            self.blocks += 1
            if num == 0:
                continue
            if num > len(self.offs):
                self._grow(num)
            n, skipped = walk_tpacket3(data, first, num, self.offs, self.caplens, self.wirelens, self.ts,
                                       self.vlans)
            self.loopback_outgoing_skipped += skipped
            if not self.cooked:
                data = restore_vlans(data, n, self.offs, self.caplens, self.wirelens, self.vlans)
            yield PacketBatch(data, n, self.offs, self.caplens, self.wirelens, self.ts, self.links)

    def _grow(self, n: int) -> None:
        self.offs, self.caplens, self.wirelens, self.ts, self.vlans = (array("q", bytes(8 * n)) for _ in range(5))
        self.links = array("q", [self.linktype] * n)

    def _restore_vlans(self, data: bytes, n: int) -> bytes:
        """Put back the 802.1Q tags the kernel moved into the frame headers (frames_cy.restore_vlans)."""
        if self.cooked:
            return data
        return restore_vlans(data, n, self.offs, self.caplens, self.wirelens, self.vlans)

    def read_stats(self) -> tuple[int, int]:
        """PACKET_STATISTICS (reset by each read): accumulate the kernel's counts."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops, freeze = struct.unpack("III", raw)
        self.kernel_packets += packets
        self.kernel_drops += drops
        self.freeze_count += freeze
        return self.kernel_packets, self.kernel_drops

    def close(self) -> None:
        try:
            self.read_stats()
        except OSError:
            pass
        try:
            self.mm.close()
        except (BufferError, ValueError):
            pass
        self.sock.close()


class LiveCapture:
    """Several interfaces polled together; yields batches until stopped.  With fanout, each interface is
    a group of its own (the kernel's groups are per device): ``fanout_groups``, one id per interface."""

    def __init__(self, interfaces: list[str], filter_expr: str | None, config: RingConfig | None = None,
                 fanout_groups: list[int] | None = None, fanout_prog: list | None = None,
                 socks: list[socket.socket] | None = None):
        self.config = config or RingConfig()
        self.filter_expr = filter_expr
        self.rings: list[Ring] = []
        try:
            if socks is None:
                socks = self.open_sockets(interfaces, filter_expr, self.config, fanout_groups, fanout_prog)
            for name, sock in zip(interfaces, socks):
                self.rings.append(Ring(name, None, self.config, sock=sock))
        except BaseException:
            self.close()
            for sock in (socks or [])[len(self.rings):]:
                sock.close()
            raise
        self.poller = select.poll()
        for r in self.rings:
            self.poller.register(r.fileno(), select.POLLIN | select.POLLERR)

    @staticmethod
    def open_sockets(interfaces: list[str], filter_expr: str | None, config: RingConfig,
                     fanout_groups: list[int] | None = None, fanout_prog: list | None = None) -> list[socket.socket]:
        """One capturing socket per interface (``open_ring_socket``), interface *k* in fanout group
        ``fanout_groups[k]`` (``NEW_GROUP``: a new one); all or none (CaptureError)."""
        out: list[socket.socket] = []
        try:
            for k, name in enumerate(interfaces):
                insns = compile_for(filter_expr, name, config.snaplen) if filter_expr else None
                group = None if fanout_groups is None else fanout_groups[k]
                out.append(open_ring_socket(name, insns, config, group, fanout_prog))
        except BaseException:
            for sock in out:
                sock.close()
            raise
        return out

    def batches(self, timeout_ms: int = 100) -> Iterator[PacketBatch]:
        """Batches that are ready now (waiting up to ``timeout_ms`` for the first)."""
        for r in self.rings:
            yield from r.poll_blocks()
        self.poller.poll(timeout_ms)
        for r in self.rings:
            yield from r.poll_blocks()

    def stats(self) -> dict:
        pk = dr = 0
        for r in self.rings:
            p, d = r.read_stats()
            pk += p
            dr += d
        return {"kernel_packets": pk, "kernel_drops": dr, "blocks": sum(r.blocks for r in self.rings),
                "loopback_outgoing_skipped": sum(r.loopback_outgoing_skipped for r in self.rings)}

    def close(self) -> None:
        for r in self.rings:
            r.close()
        self.rings = []
