"""Ring block walking and VLAN restoration on synthetic TPACKET_V3 blocks (no socket needed)."""
from __future__ import annotations

import struct
from array import array

import pytest

from otus_agent.capture import bpf
from otus_agent.capture import frames_cy as recwalk
from otus_agent.capture.afpacket import Ring
from otus_agent.decode import decoder as D
from otus_agent.sim import packets as P

from ...conftest import load_pure

_SRC, _DST = bytes((192, 0, 2, 1)), bytes((192, 0, 2, 2))
FRAME = P.ethernet(b"\2\0\0\0\0\1", b"\2\0\0\0\0\2", 0x0800,
                   P.ipv4(_SRC, _DST, 17, P.udp(_SRC, _DST, 5060, 5060, b"test")))


def block(frames: list[tuple[bytes, int | None, int]]) -> tuple[bytes, int]:
    """A retired block: 48-byte block header, then tpacket3_hdr + sockaddr_ll + frame each."""
    out = bytearray(48)
    first = len(out)
    for i, (frame, vlan, pkttype) in enumerate(frames):
        hdr_at = len(out)
        mac = 48 + 20 + 12  # header, sockaddr_ll, padding
        nxt = 0 if i == len(frames) - 1 else (mac + len(frame) + 15) & ~15
        status = 1 | (0x10 | 0x40 if vlan is not None else 0)
        hdr = struct.pack("<IIIIIIHH", nxt, 1700000000, 5, len(frame), len(frame), status, mac, mac)
        hdr += struct.pack("<IIHH", 0, vlan or 0, 0x8100 if vlan is not None else 0, 0) + bytes(8)
        sll = struct.pack("<HHiHBB8s", 17, 8, 2, 772 if pkttype == 4 else 1, pkttype, 6, b"")
        out += hdr + sll + bytes(mac - 48 - len(sll)) + frame
        if nxt:
            out += bytes(nxt - (len(out) - hdr_at))
    return bytes(out), first


@pytest.mark.parametrize("build", ["compiled", "pure"])
def test_walk_and_restore_vlan(build):
    mod = recwalk if build == "compiled" else load_pure("capture/frames_cy.py", "otus_pure_recwalk2")
    data, first = block([(FRAME, None, 0), (FRAME, 42, 0), (FRAME, None, 4)])
    arrs = [array("q", bytes(8 * 8)) for _ in range(5)]
    n, skipped = mod.walk_tpacket3(data, first, 3, *arrs)
    assert (n, skipped) == (2, 1)  # the outgoing loopback copy is skipped
    offs, caps, wires, ts, vlans = arrs
    assert data[offs[0]:offs[0] + caps[0]] == FRAME and ts[0] == 1700000000 * 10**9 + 5
    assert vlans[0] == -1 and vlans[1] == 42 | (0x8100 << 16)
    ring = Ring.__new__(Ring)  # only the restoring helper, no socket
    ring.any = False
    ring.offs, ring.caplens, ring.wirelens, ring.ts, ring.vlans = arrs
    buf = ring._restore_vlans(data, n)
    tagged = buf[offs[1]:offs[1] + caps[1]]
    assert tagged[12:16] == bytes.fromhex("8100002a") and tagged[16:] == FRAME[12:]
    dec = D.Decoder(4)
    out = dec.decode(buf, n, offs, caps, array("q", [1] * 8))
    assert out[D.NF + D.F_VLAN] == 42 and out[D.NF + D.F_STATUS] == D.ST_L4
    # the build's own restore_vlans gives the same bytes and offsets; a block without tags comes back as is
    arrs2 = [array("q", bytes(8 * 8)) for _ in range(5)]
    mod.walk_tpacket3(data, first, 3, *arrs2)
    assert mod.restore_vlans(data, n, arrs2[0], arrs2[1], arrs2[2], arrs2[4]) == buf and arrs2[:3] == arrs[:3]
    plain, first = block([(FRAME, None, 0), (FRAME, None, 0)])
    n2, _ = mod.walk_tpacket3(plain, first, 2, *arrs2)
    assert mod.restore_vlans(plain, n2, arrs2[0], arrs2[1], arrs2[2], arrs2[4]) is plain
    short, first = block([(FRAME[:10], 7, 0)])     # shorter than two MAC addresses: the tag goes at its end
    n3, _ = mod.walk_tpacket3(short, first, 1, *arrs2)
    got = mod.restore_vlans(short, n3, arrs2[0], arrs2[1], arrs2[2], arrs2[4])
    assert got[arrs2[0][0]:arrs2[0][0] + arrs2[1][0]] == FRAME[:10] + bytes.fromhex("81000007")


def test_corrupt_block_chain_stops():
    data, first = block([(FRAME, None, 0), (FRAME, None, 0)])
    arrs = [array("q", bytes(8 * 8)) for _ in range(5)]
    n, _ = recwalk.walk_tpacket3(data[:-10], first, 2, *arrs)  # second frame cut short
    assert n == 1


def test_default_filter_compiles_and_keeps_fragments():
    insns = bpf.compile_filter(bpf.default_sip_filter((5060, 5070)))
    assert len(insns) > 10
    with pytest.raises(bpf.FilterError, match="syntax error"):
        bpf.compile_filter("udp prot 5060")
    with pytest.raises(bpf.FilterError, match="NUL"):
        bpf.compile_filter("udp\0")
