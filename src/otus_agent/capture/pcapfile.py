"""Read pcap/pcapng files in batches and write pcap files.

Readers yield ``PacketBatch`` objects: one ``bytes`` buffer holding many
records plus int64 arrays (offset, captured length, wire length, timestamp
in ns, link type).  The arrays are reused from batch to batch, so a consumer
handles a batch before asking for the next one.  Memory is bounded by the
chunk size (default 4 MiB) plus one record.
"""
from __future__ import annotations

import os
import struct
from array import array
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from otus_agent.capture import linktypes
from otus_agent.capture.frames_cy import STOP_CORRUPT, STOP_FULL, STOP_PARTIAL, walk_pcap

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
MAX_RECORD = 1 << 20            # a record bigger than this means a corrupt file
DEFAULT_CHUNK = 4 << 20
DEFAULT_BATCH = 4096


class CaptureFileError(Exception):
    """A capture file that cannot be read; the message is meant for users."""


@dataclass(slots=True)
class PacketBatch:
    buf: bytes
    n: int
    offs: array
    caplens: array
    wirelens: array
    ts_ns: array
    links: array

    def packet(self, i: int) -> bytes:
        o = self.offs[i]
        return self.buf[o:o + self.caplens[i]]


def _arrays(size: int) -> tuple[array, array, array, array, array]:
    return tuple(array("q", bytes(8 * size)) for _ in range(5))  # type: ignore[return-value]


class CaptureReader:
    """Common state of both formats; iterate ``batches()``."""

    def __init__(self, f: BinaryIO, name: str, batch_size: int, chunk_size: int):
        self._f = f
        self.name = name
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.offs, self.caplens, self.wirelens, self.ts_ns, self.links = _arrays(batch_size)
        self.packets = 0
        self.linktypes_seen: set[int] = set()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self) -> Iterator[PacketBatch]:
        raise NotImplementedError

    def _batch(self, buf: bytes, n: int) -> PacketBatch:
        self.packets += n
        return PacketBatch(buf, n, self.offs, self.caplens, self.wirelens, self.ts_ns, self.links)


class PcapReader(CaptureReader):
    def __init__(self, f: BinaryIO, name: str, header: bytes, batch_size: int, chunk_size: int):
        super().__init__(f, name, batch_size, chunk_size)
        magic_le = struct.unpack("<I", header[:4])[0]
        if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            endian, self.swapped = "<", False
            magic = magic_le
        else:
            endian, self.swapped = ">", True
            magic = struct.unpack(">I", header[:4])[0]
        self.nanosecond = magic == PCAP_MAGIC_NS
        self.version = struct.unpack(endian + "HH", header[4:8])
        self.snaplen, lt = struct.unpack(endian + "II", header[16:24])
        self.linktype = lt & 0x0FFFFFFF  # upper bits: FCS length flags
        if not linktypes.is_supported(self.linktype):
            raise CaptureFileError(f"{name}: unsupported link type {linktypes.describe(self.linktype)}")
        self.linktypes_seen.add(self.linktype)
        for i in range(batch_size):
            self.links[i] = self.linktype

    def batches(self) -> Iterator[PacketBatch]:
        """Each chunk is read at its file offset (``os.pread``) into a ``bytes`` of its own: no copy of
        the chunk in user space.  A record straddling the chunk's end is read again at the start of
        the next chunk.  Files that cannot seek (pipes) are read sequentially instead."""
        try:
            fd = self._f.fileno()
            os.pread(fd, 0, 24)
        except (OSError, AttributeError, ValueError):    # a pipe, or a file object without a descriptor
            yield from self._batches_stream()
            return
        file_pos = 24
        size = self.chunk_size
        while True:
            data = os.pread(fd, size, file_pos)
            eof = len(data) < size
            pos = 0
            while True:
                n, pos, stop = walk_pcap(data, pos, self.swapped, self.nanosecond, MAX_RECORD,
                                         self.offs, self.caplens, self.wirelens, self.ts_ns)
                if n:
                    yield self._batch(data, n)
                if stop != STOP_FULL:
                    break
            self._refuse(stop, file_pos + pos, eof)
            if eof:
                return
            # a record longer than the chunk: read more at once (MAX_RECORD bounds it)
            size = self.chunk_size if pos else 2 * size
            file_pos += pos

    def _refuse(self, stop: int, at: int, eof: bool) -> None:
        """The clear error for where the walk stopped (``at``: that byte of the file), if it is one."""
        if stop == STOP_CORRUPT:
            raise CaptureFileError(f"{self.name}: corrupt record at byte {at} "
                                   f"(captured length over {MAX_RECORD} bytes) after {self.packets} packets")
        if eof and stop == STOP_PARTIAL:
            raise CaptureFileError(f"{self.name}: capture file truncated in the middle of a packet "
                                   f"at byte {at} after {self.packets} packets")

    def _batches_stream(self) -> Iterator[PacketBatch]:
        data = b""
        pos = 0
        eof = False
        file_pos = 24
        while True:
            n, pos, stop = walk_pcap(data, pos, self.swapped, self.nanosecond, MAX_RECORD,
                                     self.offs, self.caplens, self.wirelens, self.ts_ns)
            if n:
                yield self._batch(data, n)
            if stop == STOP_FULL:
                continue
            self._refuse(stop, file_pos + pos, eof)
            if eof:
                return
            chunk = self._f.read(self.chunk_size)
            if not chunk:
                eof = True
            file_pos += pos
            data = data[pos:] + chunk
            pos = 0


class PcapngReader(CaptureReader):
    """pcapng: SHB, IDB, EPB, SPB and the obsolete PB; other blocks skipped."""

    def __init__(self, f: BinaryIO, name: str, batch_size: int, chunk_size: int):
        super().__init__(f, name, batch_size, chunk_size)
        self._endian = "<"
        self._ifaces: list[tuple[int, int, int, int]] = []  # linktype, snaplen, (num, shift/div)

    def _parse_idb(self, body: bytes) -> None:
        e = self._endian
        if len(body) < 8:
            raise CaptureFileError(f"{self.name}: interface description block too short")
        lt, _, snaplen = struct.unpack_from(e + "HHI", body, 0)
        if not linktypes.is_supported(lt):
            raise CaptureFileError(f"{self.name}: interface {len(self._ifaces)} has unsupported "
                                   f"link type {linktypes.describe(lt)}")
        mul, div, tsoff = 1000, 1, 0  # default resolution: microseconds
        pos = 8
        while pos + 4 <= len(body):
            code, olen = struct.unpack_from(e + "HH", body, pos)
            val = body[pos + 4:pos + 4 + olen]
            if code == 0:
                break
            if code == 9 and olen >= 1:
                r = val[0]
                if r & 0x80:
                    mul, div = 1_000_000_000, 1 << (r & 0x7F)
                elif r <= 9:
                    mul, div = 10 ** (9 - r), 1
                else:
                    mul, div = 1, 10 ** (r - 9)
            elif code == 14 and olen == 8:
                tsoff = struct.unpack(e + "q", val)[0] * 1_000_000_000
            pos += 4 + ((olen + 3) & ~3)
        self.linktypes_seen.add(lt)
        self._ifaces.append((lt, snaplen, mul, div, tsoff))  # type: ignore[arg-type]

    def batches(self) -> Iterator[PacketBatch]:
        data = b""
        pos = 0
        n = 0
        file_pos = 0
        eof = False
        offs, caplens, wirelens, ts, links = self.offs, self.caplens, self.wirelens, self.ts_ns, self.links
        while True:
            avail = len(data) - pos
            need = self._blocklen(data, pos)
            if avail < need and not eof:
                if n:  # the buffer is about to be replaced: hand out what it holds
                    yield self._batch(data, n)
                    n = 0
                chunk = self._f.read(max(self.chunk_size, need))
                eof = not chunk
                file_pos += pos
                data = data[pos:] + chunk
                pos = 0
                continue
            if avail == 0:
                if n:
                    yield self._batch(data, n)
                return
            if avail < need:
                if n:
                    yield self._batch(data, n)
                raise CaptureFileError(f"{self.name}: capture file truncated in the middle of a block "
                                       f"at byte {file_pos + pos} after {self.packets} packets")
            btype = struct.unpack_from("<I", data, pos)[0]
            if btype == PCAPNG_SHB:
                bom = data[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    self._endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    self._endian = ">"
                else:
                    raise CaptureFileError(f"{self.name}: bad pcapng byte-order magic at byte {file_pos + pos}")
                self._ifaces = []
            e = self._endian
            btype, blen = struct.unpack_from(e + "II", data, pos)
            if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
                raise CaptureFileError(f"{self.name}: corrupt pcapng block (length {blen}) at byte "
                                       f"{file_pos + pos} after {self.packets + n} packets")
            body_at = pos + 8
            body_len = blen - 12
            if btype == 1:
                self._parse_idb(data[body_at:body_at + body_len])
            elif btype in (6, 2):  # EPB, obsolete PB
                if body_len < 20:
                    raise CaptureFileError(f"{self.name}: corrupt packet block at byte {file_pos + pos}")
                if btype == 6:
                    iface, tsh, tsl, cap, wire = struct.unpack_from(e + "IIIII", data, body_at)
                else:
                    iface, _drops, tsh, tsl, cap, wire = struct.unpack_from(e + "HHIIII", data, body_at)
                if iface >= len(self._ifaces):
                    raise CaptureFileError(f"{self.name}: packet on undeclared interface {iface} "
                                           f"at byte {file_pos + pos}")
                if cap > body_len - 20:
                    raise CaptureFileError(f"{self.name}: corrupt packet block (captured length {cap}) "
                                           f"at byte {file_pos + pos}")
                lt, _snap, mul, div, tsoff = self._ifaces[iface]
                units = (tsh << 32) | tsl
                offs[n] = body_at + 20
                caplens[n] = cap
                wirelens[n] = wire
                t = units * mul // div + tsoff
                if not 0 <= t < 1 << 63:
                    raise CaptureFileError(f"{self.name}: packet timestamp out of range at byte {file_pos + pos}")
                ts[n] = t
                links[n] = lt
                n += 1
            elif btype == 3:  # SPB: always interface 0
                if not self._ifaces or body_len < 4:
                    raise CaptureFileError(f"{self.name}: simple packet block without interface "
                                           f"at byte {file_pos + pos}")
                wire = struct.unpack_from(e + "I", data, body_at)[0]
                lt, snap, _m, _d, _o = self._ifaces[0]
                cap = min(wire, body_len - 4, snap or wire)
                offs[n] = body_at + 4
                caplens[n] = cap
                wirelens[n] = wire
                ts[n] = 0
                links[n] = lt
                n += 1
            pos += blen
            if n == self.batch_size:
                yield self._batch(data, n)
                n = 0

    def _blocklen(self, data: bytes, pos: int) -> int:
        if len(data) - pos < 8:
            return 12
        blen = struct.unpack_from(self._endian + "I", data, pos + 4)[0]
        if struct.unpack_from("<I", data, pos)[0] == PCAPNG_SHB and len(data) - pos >= 12:
            e = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack_from(e + "I", data, pos + 4)[0]
        return min(blen, MAX_RECORD + 64)


def open_capture(path: str | os.PathLike[str], batch_size: int = DEFAULT_BATCH,
                 chunk_size: int = DEFAULT_CHUNK) -> CaptureReader:
    """Open a pcap or pcapng file, or raise CaptureFileError with a clear reason."""
    name = os.fspath(path)
    try:
        f = open(name, "rb")
    except FileNotFoundError:
        raise CaptureFileError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CaptureFileError(f"{name}: is a directory, not a capture file") from None
    except PermissionError:
        raise CaptureFileError(f"{name}: permission denied") from None
    except OSError as e:
        raise CaptureFileError(f"{name}: cannot open: {e.strerror}") from None
    try:
        head = f.read(24)
        if len(head) >= 4:
            m = struct.unpack("<I", head[:4])[0]
            mb = struct.unpack(">I", head[:4])[0]
            if m == PCAPNG_SHB:
                f.seek(0)
                return PcapngReader(f, name, batch_size, chunk_size)
            if PCAP_MAGIC_US in (m, mb) or PCAP_MAGIC_NS in (m, mb):
                if len(head) < 24:
                    raise CaptureFileError(f"{name}: truncated pcap file header")
                return PcapReader(f, name, head, batch_size, chunk_size)
        if not head:
            raise CaptureFileError(f"{name}: empty file, not a capture")
        raise CaptureFileError(f"{name}: not a pcap or pcapng file (unknown magic {head[:4].hex()})")
    except BaseException:
        f.close()
        raise


class PcapWriter:
    """Write classic pcap (little-endian, µs or ns timestamps)."""

    def __init__(self, f: BinaryIO, linktype: int, snaplen: int = 262144, nanosecond: bool = False):
        self._f = f
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._div = 1 if nanosecond else 1000
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
        self.bytes_written = 24
        self.packets = 0

    def write(self, ts_ns: int, data: bytes | memoryview, wirelen: int | None = None) -> None:
        cap = min(len(data), self.snaplen)
        sec, sub = divmod(ts_ns, 1_000_000_000)
        self._f.write(struct.pack("<IIII", sec, sub // self._div, cap, wirelen if wirelen is not None else len(data)))
        self._f.write(data[:cap])
        self.bytes_written += 16 + cap
        self.packets += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()
