"""HEP v3 (Homer Encapsulation Protocol) output, over UDP or TCP, for Homer/heplify-server.

Each SIP message becomes one HEP3 packet: "HEP3", total length, then chunks
(vendor 0, type, length, value): IP family, protocol, addresses, ports,
timestamp (seconds, microseconds), protocol type 1 (SIP), capture agent id,
optional auth key, node name (0x0013), correlation id (0x0011, the Call-ID
or the configured correlation header) and the SIP payload (0x000f).

UDP sends are fire-and-forget (counted as sent or failed).  TCP reconnects
with a backoff; while disconnected, packets are counted as dropped.
"""
from __future__ import annotations

import socket
import struct
import time

FAMILY_IPV4, FAMILY_IPV6 = 2, 10
PROTO = {"udp": 17, "tcp": 6, "sctp": 132, "ws": 6}
HEP_SIP = 1
MAX_HEP = 65535


def _chunk(ctype: int, value: bytes) -> bytes:
    return struct.pack("!HHH", 0, ctype, 6 + len(value)) + value


def encode(payload: bytes, rec: dict, node_id: int, node_name: str | None, password: str | None) -> bytes | None:
    """One HEP3 packet, or None when it would exceed 65,535 bytes."""
    src, dst = rec["src_ip"], rec["dst_ip"]
    v6 = ":" in src
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    sec, ns = divmod(rec["ts"], 1_000_000_000)
    parts = [
        _chunk(0x0001, bytes([FAMILY_IPV6 if v6 else FAMILY_IPV4])),
        _chunk(0x0002, bytes([PROTO.get(rec["transport"], 17)])),
        _chunk(0x0005 if v6 else 0x0003, socket.inet_pton(fam, src)),
        _chunk(0x0006 if v6 else 0x0004, socket.inet_pton(fam, dst)),
        _chunk(0x0007, struct.pack("!H", rec["src_port"])),
        _chunk(0x0008, struct.pack("!H", rec["dst_port"])),
        _chunk(0x0009, struct.pack("!I", sec)),
        _chunk(0x000A, struct.pack("!I", ns // 1000)),
        _chunk(0x000B, bytes([HEP_SIP])),
        _chunk(0x000C, struct.pack("!I", node_id & 0xFFFFFFFF)),
    ]
    if password:
        parts.append(_chunk(0x000E, password.encode()))
    if node_name:
        parts.append(_chunk(0x0013, node_name.encode()))
    corr = rec.get("correlation_id") or rec.get("call_id")
    if corr:
        parts.append(_chunk(0x0011, corr.encode("utf-8", "surrogateescape")))
    parts.append(_chunk(0x000F, payload))
    body = b"".join(parts)
    total = 6 + len(body)
    if total > MAX_HEP:
        return None
    return b"HEP3" + struct.pack("!H", total) + body


def decode(packet: bytes) -> dict[int, bytes]:
    """Chunks of one HEP3 packet by type (tests and diagnostics)."""
    if packet[:4] != b"HEP3":
        raise ValueError("not HEP3")
    total = struct.unpack_from("!H", packet, 4)[0]
    out: dict[int, bytes] = {}
    pos = 6
    while pos + 6 <= total:
        _vendor, ctype, ln = struct.unpack_from("!HHH", packet, pos)
        if ln < 6 or pos + ln > total:
            raise ValueError("bad chunk length")
        out[ctype] = packet[pos + 6:pos + ln]
        pos += ln
    return out


class HepReporter:
    def __init__(self, address: str, proto: str = "udp", node_id: int = 2001, node_name: str | None = None,
                 password: str | None = None):
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"HEP address: expected HOST:PORT, got {address!r}")
        if proto not in ("udp", "tcp"):
            raise ValueError("HEP transport: udp or tcp")
        self.addr = (host.strip("[]"), int(port))
        self.proto, self.node_id, self.node_name, self.password = proto, node_id, node_name, password
        self.sent = self.failed = self.dropped = self.too_large = 0
        self.sock: socket.socket | None = None
        self._next_try = 0.0
        self._backoff = 0.5
        if proto == "udp":
            fam = socket.AF_INET6 if ":" in self.addr[0] else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_DGRAM)

    def _connect(self) -> bool:
        if self.sock is not None:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        try:
            self.sock = socket.create_connection(self.addr, timeout=2)
            self._backoff = 0.5
            return True
        except OSError:
            self._next_try = now + self._backoff
            self._backoff = min(self._backoff * 2, 30)
            return False

    def send(self, payload: bytes, rec: dict) -> None:
        pkt = encode(payload, rec, self.node_id, self.node_name, self.password)
        if pkt is None:
            self.too_large += 1
            return
        if self.proto == "udp":
            try:
                self.sock.sendto(pkt, self.addr)
                self.sent += 1
            except OSError:
                self.failed += 1
            return
        if not self._connect():
            self.dropped += 1
            return
        try:
            self.sock.sendall(pkt)
            self.sent += 1
        except OSError:
            self.failed += 1
            self.sock.close()
            self.sock = None

    def stats(self) -> dict:
        return {"hep_sent": self.sent, "hep_failed": self.failed, "hep_dropped_disconnected": self.dropped,
                "hep_too_large": self.too_large}

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
