"""The one reading of /proc/net/packet that the simulator, the live tests and the benches wait on."""
from __future__ import annotations

import os
import socket

import pytest

from otus_agent.sim import packet_sockets

TABLE = """sk               RefCnt Type Proto  Iface R Rmem   User   Inode
ffff8f0a01 3      3    0000   0     0 0      0      1001
ffff8f0a02 3      3    0003   7     1 0      0      1002
ffff8f0a03 3      2    0003   0     1 0      0      1003
"""


def test_parse_reads_iface_and_running_by_header():
    assert packet_sockets.parse(TABLE) == [packet_sockets.PacketSocket(0, False), packet_sockets.PacketSocket(7, True),
                                           packet_sockets.PacketSocket(0, True)]
    assert packet_sockets.parse("") == []
    with pytest.raises(packet_sockets.NotListening):
        packet_sockets.parse("sk RefCnt Type\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a packet socket)")
def test_a_socket_counts_only_once_bound_to_the_interface():
    """Against this kernel: a socket made with protocol 0 (as Otus and libpcap make theirs) is listed
    but not running until its bind, which is when the wait must end."""
    before = packet_sockets.listening(None, "lo")
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        assert packet_sockets.listening(None, "lo") == before
        with pytest.raises(packet_sockets.NotListening, match=f"{before} of {before + 1}"):
            packet_sockets.wait(None, "lo", before + 1, timeout=0.3, settle=0)
        s.bind(("lo", 0x0003))
        assert packet_sockets.listening(None, "lo") == before + 1
        packet_sockets.wait(None, "lo", before + 1, timeout=2, settle=0)
    finally:
        s.close()
    with pytest.raises(packet_sockets.NotListening, match="gone"):
        packet_sockets.wait(None, "lo", 99, timeout=5, settle=0, alive=lambda: "gone")


def test_any_is_index_zero():
    assert packet_sockets.ifindex(None, "any") == 0
    assert packet_sockets.ifindex(None, "lo") == socket.if_nametoindex("lo")
