"""Tiny packet builders for the workload generator (no scapy: it must be fast).

Checksums are computed, so the frames are what a real host would put on the
wire; tests cross-check them with scapy.
"""
from __future__ import annotations

import struct


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ethernet(src: bytes, dst: bytes, ethertype: int, payload: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    """Ethernet II; ``vlans`` outermost first (QinQ: 802.1ad outer tag, 802.1Q inner)."""
    tpids = [0x88A8] * (len(vlans) - 1) + [0x8100] if vlans else []
    types = tpids + [ethertype]
    tags = b"".join(struct.pack("!HH", vid & 0x0FFF, types[i + 1]) for i, vid in enumerate(vlans))
    return dst + src + struct.pack("!H", types[0]) + tags + payload


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int = 0,
                flags_frag: int = 0, ttl: int = 64) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident, flags_frag, ttl, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", _csum(h)) + h[12:]


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 0, df: bool = False) -> bytes:
    return ipv4_header(src, dst, proto, len(payload), ident, 0x4000 if df else 0) + payload


def ipv4_fragments(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, mtu: int = 1500) -> list[bytes]:
    """Split an upper-layer payload into IPv4 fragments that fit ``mtu``."""
    step = (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off:off + step]
        more = off + step < len(payload)
        out.append(ipv4_header(src, dst, proto, len(chunk), ident, (0x2000 if more else 0) | (off // 8)) + chunk)
    return out


def ipv6(src: bytes, dst: bytes, nh: int, payload: bytes, hlim: int = 64) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, hlim, src, dst) + payload


def ipv6_fragments(src: bytes, dst: bytes, nh: int, payload: bytes, ident: int, mtu: int = 1500) -> list[bytes]:
    step = (mtu - 48) // 8 * 8
    out = []
    for off in range(0, len(payload), step):
        chunk = payload[off:off + step]
        more = off + step < len(payload)
        fh = struct.pack("!BBHI", nh, 0, off | (1 if more else 0), ident)
        out.append(ipv6(src, dst, 44, fh + chunk))
    return out


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def udp(src_ip: bytes, dst_ip: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    h = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    c = _csum(_pseudo(src_ip, dst_ip, 17, 8 + len(payload)) + h + payload) or 0xFFFF
    return h[:6] + struct.pack("!H", c) + payload


def tcp(src_ip: bytes, dst_ip: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"", window: int = 65535) -> bytes:
    h = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, window, 0, 0)
    c = _csum(_pseudo(src_ip, dst_ip, 6, 20 + len(payload)) + h + payload)
    return h[:16] + struct.pack("!H", c) + h[18:] + payload


TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
