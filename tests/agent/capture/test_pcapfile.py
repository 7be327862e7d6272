"""pcap/pcapng reading and pcap writing, checked against scapy's reader and writer."""
from __future__ import annotations

import io
import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import CookedLinux, Ether
from scapy.utils import PcapNgWriter, rdpcap
from scapy.utils import PcapWriter as ScapyPcapWriter

from otus_agent.capture.pcapfile import CaptureFileError, PcapWriter, open_capture

from ...conftest import corpus_path


def read_all(path, **kw) -> list[tuple[bytes, int, int, int]]:
    out = []
    with open_capture(path, **kw) as r:
        for b in r.batches():
            for i in range(b.n):
                out.append((b.packet(i), b.ts_ns[i], b.wirelens[i], b.links[i]))
    return out


FRAMES = [bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5060, dport=5060) / (b"x" * n))
          for n in (0, 1, 100, 1400, 7)]


@pytest.mark.parametrize("nanosecond", [False, True])
def test_writer_reader_roundtrip(tmp_path, nanosecond):
    path = tmp_path / "a.pcap"
    with open(path, "wb") as f:
        w = PcapWriter(f, 1, nanosecond=nanosecond)
        for i, fr in enumerate(FRAMES):
            w.write(1_700_000_000_123_456_789 + i * 1_000_000, fr)
    got = read_all(path)
    assert [g[0] for g in got] == FRAMES
    exp0 = 1_700_000_000_123_456_789 if nanosecond else 1_700_000_000_123_456_000
    assert got[0][1] == exp0
    # scapy reads what we wrote
    sc = rdpcap(str(path))
    assert [bytes(p) for p in sc] == FRAMES


def test_big_endian_pcap(tmp_path):
    path = tmp_path / "be.pcap"
    hdr = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    recs = b"".join(struct.pack(">IIII", 10 + i, 500, len(f), len(f)) + f for i, f in enumerate(FRAMES))
    path.write_bytes(hdr + recs)
    got = read_all(path)
    assert [g[0] for g in got] == FRAMES
    assert got[1][1] == 11 * 10**9 + 500_000


def test_snaplen_truncated_records_keep_wire_length(tmp_path):
    path = tmp_path / "s.pcap"
    with open(path, "wb") as f:
        w = PcapWriter(f, 1, snaplen=64)
        w.write(0, FRAMES[3])
    got = read_all(path)
    assert len(got[0][0]) == 64 and got[0][2] == len(FRAMES[3])


def test_small_chunks_and_batches_give_same_result(tmp_path):
    path = tmp_path / "c.pcap"
    with open(path, "wb") as f:
        w = PcapWriter(f, 1)
        for i in range(300):
            w.write(i, FRAMES[i % len(FRAMES)])
    ref = read_all(path)
    assert len(ref) == 300
    assert read_all(path, batch_size=7, chunk_size=100) == ref



def test_records_larger_than_the_chunk_and_pipes(tmp_path):
    """Files are read by offset (os.pread): a record longer than the chunk is read whole, a truncated
    last record is reported; a pipe (no offsets) is read sequentially with the same result."""
    import os
    import threading
    big = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5060, dport=5060) / (b"y" * 3000))
    frames = [FRAMES[1], big, FRAMES[3], big, FRAMES[0]]
    path = tmp_path / "b.pcap"
    with open(path, "wb") as f:
        w = PcapWriter(f, 1)
        for i, fr in enumerate(frames):
            w.write(i, fr)
    ref = read_all(path)
    assert [g[0] for g in ref] == frames
    assert read_all(path, batch_size=2, chunk_size=64) == ref
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(path.read_bytes()), daemon=True)
    feeder.start()
    assert read_all(fifo, chunk_size=100) == ref
    feeder.join(10)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CaptureFileError, match="truncated in the middle of a packet"):
        read_all(cut, chunk_size=64)

def test_pcapng_multi_interface(tmp_path):
    """Two interfaces with different link types, EPB and SPB blocks, ns resolution."""
    path = tmp_path / "m.pcapng"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb0 = block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0))
    idb1 = block(1, struct.pack("<HHI", 113, 0, 65535))
    sll = bytes(CookedLinux(proto=0x800) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP() / b"sll")
    ts = 1_700_000_000_000_000_001

    def epb(iface: int, data: bytes, t: int) -> bytes:
        return block(6, struct.pack("<IIIII", iface, t >> 32, t & 0xFFFFFFFF, len(data), len(data)) + data)

    spb = block(3, struct.pack("<I", len(FRAMES[1])) + FRAMES[1])
    unknown = block(0x0BAD, b"ignored")
    ts_us = 1_700_000_000_000_002
    path.write_bytes(shb + idb0 + idb1 + epb(0, FRAMES[2], ts) + unknown + epb(1, sll, ts_us) + spb)
    got = read_all(path)
    assert [(g[0], g[3]) for g in got] == [(FRAMES[2], 1), (sll, 113), (FRAMES[1], 1)]
    assert got[0][1] == ts  # interface 0: if_tsresol=9, nanoseconds
    assert got[1][1] == ts_us * 1000  # interface 1: default microseconds
    path.write_bytes(shb + idb0 + idb1 + epb(1, sll, 1 << 62))
    with pytest.raises(CaptureFileError, match="timestamp out of range"):
        read_all(path)
    # and a file written by scapy's pcapng writer (default µs resolution)
    path2 = tmp_path / "s.pcapng"
    w = PcapNgWriter(str(path2))
    for i, fr in enumerate(FRAMES):
        p = Ether(fr)
        p.time = 1_700_000_000 + i / 4
        w.write(p)
    w.close()
    got2 = read_all(path2)
    assert [g[0] for g in got2] == FRAMES
    assert got2[2][1] == (1_700_000_000 * 10**6 + 500_000) * 1000


@pytest.mark.corpus
def test_corpus_files_match_scapy():
    root = corpus_path("pcap")
    for path in sorted(root.rglob("*.pcap*"))[:40]:
        ours = read_all(path)
        theirs = rdpcap(str(path))
        assert len(ours) == len(theirs), path
        for (data, ts, wire, _), sp in zip(ours, theirs):
            assert data == bytes(sp)
            assert abs(ts - int(sp.time * 10**9)) < 2000, path  # float time in scapy
            assert wire == (sp.wirelen or len(data))


@pytest.mark.parametrize("content,needle", [
    (b"", "empty file"),
    (b"hello world, not a capture", "not a pcap or pcapng file"),
    (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147), "unsupported link type 147"),
    (struct.pack("<IHH", 0xA1B2C3D4, 2, 4), "truncated pcap file header"),
])
def test_bad_files_give_clear_errors(tmp_path, content, needle):
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureFileError) as e:
        read_all(path)
    assert needle in str(e.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CaptureFileError, match="no such file"):
        open_capture(tmp_path / "nope.pcap")
    with pytest.raises(CaptureFileError, match="is a directory"):
        open_capture(tmp_path)


def test_truncated_capture_reports_after_good_packets(tmp_path):
    path = tmp_path / "t.pcap"
    with open(path, "wb") as f:
        w = PcapWriter(f, 1)
        for fr in FRAMES:
            w.write(0, fr)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    seen = 0
    with pytest.raises(CaptureFileError, match="truncated in the middle of a packet") as e:
        with open_capture(path) as r:
            for b in r.batches():
                seen += b.n
    assert seen == len(FRAMES) - 1
    assert f"after {len(FRAMES) - 1} packets" in str(e.value)


def test_corrupt_record_length(tmp_path):
    path = tmp_path / "c.pcap"
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(hdr + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 60) + b"\0" * 60)
    with pytest.raises(CaptureFileError, match="corrupt record"):
        read_all(path)


def test_corrupt_pcapng_block(tmp_path):
    path = tmp_path / "c.pcapng"
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    path.write_bytes(shb + struct.pack("<II", 6, 5) + b"\0" * 16)
    with pytest.raises(CaptureFileError, match="corrupt pcapng block"):
        read_all(path)
    path.write_bytes(shb + struct.pack("<II", 6, 64) + b"\0" * 10)
    with pytest.raises(CaptureFileError, match="truncated"):
        read_all(path)
    idb = struct.pack("<IIHHI", 1, 20, 999, 0, 0) + struct.pack("<I", 20)
    path.write_bytes(shb + idb)
    with pytest.raises(CaptureFileError, match="unsupported link type 999"):
        read_all(path)


def test_writer_is_readable_by_scapy_writer_roundtrip(tmp_path):
    """And the reverse: a scapy-written pcap reads identically."""
    path = tmp_path / "sc.pcap"
    w = ScapyPcapWriter(str(path), linktype=1, nano=True)
    for fr in FRAMES:
        w.write(Ether(fr))
    w.close()
    assert [g[0] for g in read_all(path)] == FRAMES



def test_bytesio_writer():
    b = io.BytesIO()
    w = PcapWriter(b, 101)
    w.write(5, b"\x45")
    assert w.packets == 1 and w.bytes_written == len(b.getvalue()) == 24 + 16 + 1


def test_record_walker_builds_agree(tmp_path):
    """recwalk compiled and as pure Python index the same records."""
    from array import array

    from otus_agent.capture import frames_cy as recwalk

    from ...conftest import load_pure
    pure = load_pure("capture/frames_cy.py", "otus_pure_recwalk")
    path = tmp_path / "w.pcap"
    with open(path, "wb") as f:
        w = PcapWriter(f, 1, nanosecond=True)
        for i in range(50):
            w.write(i * 7, FRAMES[i % len(FRAMES)])
    data = path.read_bytes()[24:-3]  # ends inside the last record
    results = []
    for mod in (recwalk, pure):
        arrs = [array("q", bytes(8 * 64)) for _ in range(4)]
        res = mod.walk_pcap(data, 0, False, True, 1 << 20, *arrs)
        results.append((res, [a.tolist() for a in arrs]))
    assert results[0] == results[1]
    assert results[0][0][0] == 49 and results[0][0][2] == recwalk.STOP_PARTIAL
