"""NPZ files that load with ``allow_pickle=False`` and whose arrays can be memory-mapped.

``np.load(path, mmap_mode="r")`` does not memory-map the members of an ``.npz`` (it ignores
``mmap_mode`` for archives and reads each member fully). An *uncompressed* NPZ member is a plain
``.npy`` stored byte for byte inside the zip, though, so :func:`open_npz` finds its data offset
(zip local header + ``.npy`` header) and maps it with ``np.memmap``. :func:`write_npz` writes
uncompressed members whose data starts on a 64-byte boundary, so the mapped arrays are aligned.
Any uncompressed ``np.savez`` file maps too; compressed members are read into memory.

Why the writer is hand-written rather than ``zipfile`` (``ZIP_STORED``, ``force_zip64=True``,
the array streamed into ``ZipFile.open(name, "w")``): ``zipfile`` computes the CRC-32 in the
writing thread, so checksum and write run one after the other. Building the compact form of
1,000,000 x 384 float32 vectors (``build_sequences(compact=True)``, 7 interleaved runs,
medians, 2-core x86_64, 2026-11-22) took 2.87x the time of ``np.save`` in memory (/dev/shm) and
4.27x on the repository's disk with ``zipfile``, against 2.17x and 2.56x with this writer, which
checksums in a second thread while it writes; the target is at most 3x. Reading uses
``zipfile`` for the directory and only parses the local header for the data offset.
"""

from __future__ import annotations

import io
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uncollapse.atomic import atomic_path
from uncollapse.data.expansion import limit, too_large
from uncollapse.data.npy import HEADER_FAILURES
from uncollapse.data.readable import ZIP, check_input_file
from uncollapse.errors import InputError

__all__ = ["NPZ_READ_FAILURES", "AsType", "open_npz", "why", "write_npz"]

_ALIGN = 64
_LOCAL_HEADER = 30
_PAD_ID = 0xCAFE     # private extra-field id that only pads; zip readers skip unknown ids
_ZIP64 = 0xFFFFFFFF  # "see the zip64 extra field"
_VERSION = 45        # zip64
_DOS_DATE = (1 << 5) | 1  # 1980-01-01: fixed, so equal arrays give equal files
_WRITE_BLOCK = 1 << 24
_THREADED_CRC = 1 << 22
_CONVERT_BLOCK = 1 << 22  # bytes of a converted block: the memory a streamed member costs


@dataclass(frozen=True)
class AsType:
    """``array.astype(dtype)`` as ``write_npz`` writes it: converted a block of rows at a time
    while the member is written, so a memory-mapped array larger than memory (``np.load(path,
    mmap_mode="r")``) is never copied whole.

    Example:
        >>> vectors = np.load("vectors_f16.npy", mmap_mode="r")
        >>> write_npz("out.npz", {"vectors": AsType(vectors, np.float32)})
    """

    array: np.ndarray
    dtype: np.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def blocks(self):
        """The converted array's bytes, about ``_CONVERT_BLOCK`` of them at a time."""
        row_bytes = max(1, int(np.prod(self.shape[1:], dtype=np.int64))
                        * np.dtype(self.dtype).itemsize)
        step = max(1, _CONVERT_BLOCK // row_bytes)
        for start in range(0, self.shape[0] if self.shape else 1, step):
            block = self.array[start:start + step] if self.shape else self.array
            yield np.ascontiguousarray(block, dtype=self.dtype).reshape(-1).view(np.uint8)


@dataclass(frozen=True)
class _Member:
    name: bytes
    offset: int
    size: int
    crc: int


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed zip64 NPZ, atomically, with 64-byte aligned data.

    The file is what ``np.savez`` writes (``np.load`` reads it), except that each member's data
    starts on a 64-byte boundary and the CRC-32 of a large member is computed in a second
    thread while the bytes are written. Object arrays are refused: the file must load with
    ``np.load(path, allow_pickle=False)``.
    """
    path = Path(path)
    for name, value in arrays.items():
        if np.dtype(value.dtype if isinstance(value, AsType)
                    else np.asanyarray(value).dtype).hasobject:
            raise TypeError(f"array {name!r} has dtype object; store text as UTF-8 bytes "
                            "plus offsets (see uncollapse.data.sequences.contract.utf8_texts)")
    with atomic_path(path, suffix=".npz.tmp") as tmp, open(tmp, "wb") as raw:
        members = [_write_member(raw, name, _streamable(np.asanyarray(value))
                                 if not isinstance(value, AsType) else value)
                   for name, value in arrays.items()]
        _write_directory(raw, members)
    return path


def _streamable(array: np.ndarray) -> np.ndarray | AsType:
    """A C-ordered array is written as it is (a memory map without a copy); any other is
    reordered a block at a time."""
    return array if array.flags.c_contiguous else AsType(array, array.dtype)


def _write_member(raw, name: str, array: np.ndarray | AsType) -> _Member:
    if isinstance(array, AsType):
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(array.dtype)),
                  "fortran_order": False, "shape": array.shape}
        nbytes = int(np.prod(array.shape, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    else:
        header = np.lib.format.header_data_from_array_1_0(array)
        nbytes = array.nbytes
    buffer = io.BytesIO()
    # the .npy header pads itself to a multiple of 64 bytes, so the data stays aligned
    if len(repr(header)) > 65000:
        np.lib.format.write_array_header_2_0(buffer, header)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
    npy_header = buffer.getvalue()
    size = len(npy_header) + nbytes
    member = f"{name}.npy".encode()
    offset = raw.tell()
    pad = -(offset + _LOCAL_HEADER + len(member) + 20 + 4) % _ALIGN
    extra = struct.pack("<HHQQ", 1, 16, size, size) + struct.pack("<HH", _PAD_ID, pad) + \
        bytes(pad)
    raw.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, _VERSION, 0, 0, 0, _DOS_DATE, 0, _ZIP64,
                          _ZIP64, len(member), len(extra)) + member + extra)
    crc = zlib.crc32(npy_header)
    raw.write(npy_header)
    if isinstance(array, AsType):
        for block in array.blocks():
            crc = zlib.crc32(block, crc)
            raw.write(block)
        return _finish_member(raw, member, offset, size, crc)
    data = array.reshape(-1).view(np.uint8)
    if data.size >= _THREADED_CRC:  # zlib releases the GIL: checksum and write overlap
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(zlib.crc32, data, crc)
            _write_blocks(raw, data)
            crc = pending.result()
    else:
        crc = zlib.crc32(data, crc)
        _write_blocks(raw, data)
    return _finish_member(raw, member, offset, size, crc)


def _finish_member(raw, member: bytes, offset: int, size: int, crc: int) -> _Member:
    """Put the CRC-32 into the member's local header, now that the data is written."""
    end = raw.tell()
    raw.seek(offset + 14)
    raw.write(struct.pack("<I", crc))
    raw.seek(end)
    return _Member(member, offset, size, crc)


def _write_blocks(raw, data: np.ndarray) -> None:
    for start in range(0, data.size, _WRITE_BLOCK):  # bounded memory for memory-mapped input
        raw.write(data[start:start + _WRITE_BLOCK])


def _write_directory(raw, members: list[_Member]) -> None:
    start = raw.tell()
    for m in members:
        extra = struct.pack("<HHQQQ", 1, 24, m.size, m.size, m.offset)
        raw.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, _VERSION, _VERSION, 0, 0, 0,
                              _DOS_DATE, m.crc, _ZIP64, _ZIP64, len(m.name), len(extra), 0, 0,
                              0, 0, _ZIP64) + m.name + extra)
    size = raw.tell() - start
    zip64_end = raw.tell()
    n = len(members)
    raw.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, _VERSION, _VERSION, 0, 0, n, n, size,
                          start))
    raw.write(struct.pack("<IIQI", 0x07064B50, 0, zip64_end, 1))
    raw.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                          min(size, _ZIP64), _ZIP64, 0))


def open_npz(path: str | Path, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every array of an NPZ, memory-mapped read-only where the member is uncompressed.

    Never unpickles: an object array is an ``InputError``, as is a file that is not an NPZ.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory; expected a regular file (an NPZ)")
    check_input_file(path, "an NPZ archive", "write it with numpy.savez", require=ZIP)
    try:
        archive = zipfile.ZipFile(path)
    except NPZ_READ_FAILURES as exc:
        raise InputError(path, f"not an NPZ archive ({why(exc)}); write it with numpy.savez"
                         ) from exc
    arrays = {}
    with archive, open(path, "rb") as raw:
        check_inflated_sizes(path, archive)
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            try:
                array = _map_member(path, raw, info) if mmap else None
                if array is None:
                    array = _read_member(path, archive, info)
            except NPZ_READ_FAILURES as exc:
                raise InputError(path, f"array {name!r} cannot be read: damaged NPZ/zip "
                                       f"({why(exc)}); rebuild the file or copy it again"
                                 ) from exc
            arrays[name] = array
    return arrays


def check_inflated_sizes(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse an NPZ whose deflated members together expand past the limit on decompressed
    input (``uncollapse.data.expansion``), from the sizes its zip directory declares, before
    any is inflated: a 2 MB scene file of zeros would otherwise take 2 GB of memory. The
    declared size bounds what ``zipfile`` inflates, whatever the compressed data holds."""
    # stored members are not counted: the size on disk is what they hold
    deflated = [i for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    cap, total = limit(), sum(i.file_size for i in deflated)
    if total > cap:
        largest = max(deflated, key=lambda i: i.file_size)
        raise too_large(path, f"is compressed (its largest array, "
                              f"{largest.filename.removesuffix('.npy')!r}, "
                              f"{largest.file_size:,} bytes) and", f"{total:,} bytes", cap)


def check_declared_sizes(path: str | Path) -> None:
    """Before ``np.load`` reads an NPZ: its deflated members stay within the limit on
    decompressed input, and each member's ``.npy`` header describes exactly the bytes the zip
    directory says the member holds (numpy sizes its array by the header). A file that is not
    a readable zip is left to the reader's own message."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except NPZ_READ_FAILURES:
        return
    with archive:
        check_inflated_sizes(path, archive)
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            try:
                with archive.open(info) as fh:
                    shape, _, dtype = _read_header(path, fh, info)
                    _check_size(path, info, shape, dtype, fh.tell())
            except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
                raise InputError(path, f"array {info.filename[:-4]!r} cannot be read: damaged "
                                       f"NPZ/zip ({why(exc)}); rebuild the file") from exc


NPZ_READ_FAILURES: tuple[type[BaseException], ...] = (
    *HEADER_FAILURES, OSError, zipfile.BadZipFile, NotImplementedError, OverflowError)
"""What reading a damaged NPZ raises (``np.load`` or :func:`open_npz`): a damaged member
header, and from ``zipfile`` or ``seek`` on damaged zip headers an unknown compression method
or zip version (NotImplementedError), or an offset that is not a file position (OSError Errno
22, ValueError, OverflowError)."""


def why(exc: BaseException) -> str:
    """A short reason for a read failure, without the tokenizer's tuple or a class name."""
    if isinstance(exc, tokenize.TokenError | SyntaxError):
        return "its .npy header text is damaged"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _read_header(path: Path, fh, info: zipfile.ZipInfo):
    """``(shape, fortran, dtype)`` of the ``.npy`` member whose header starts at ``fh``."""
    name = info.filename[:-4]
    try:
        version = np.lib.format.read_magic(fh)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f".npy format version {version} is not supported")
        shape, fortran, dtype = reader(fh)
    except HEADER_FAILURES as exc:
        raise InputError(path, f"array {name!r} is not a readable .npy member ({why(exc)}); "
                               "rebuild the file") from exc
    if dtype.hasobject:
        raise InputError(path, f"array {name!r} holds Python objects; it cannot be loaded "
                               "safely. Store text as UTF-8 bytes (uint8) plus int64 offsets, or "
                               "as a unicode array (dtype '<U...')")
    return shape, fortran, dtype


def _check_size(path: Path, info: zipfile.ZipInfo, shape, dtype, header_size: int) -> int:
    expected = int(np.prod(shape)) * dtype.itemsize
    held = info.file_size - header_size
    if expected != held:
        raise InputError(path, f"array {info.filename[:-4]!r} is truncated or damaged: its "
                               f"header says {shape} {dtype} ({expected} bytes) but the member "
                               f"holds {held}; rebuild the file")
    return expected


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    try:
        with archive.open(info) as fh:
            shape, fortran, dtype = _read_header(path, fh, info)
            data = bytearray(_check_size(path, info, shape, dtype, fh.tell()))
            fh.readinto(data)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(path, f"array {info.filename[:-4]!r} cannot be read ({exc}); rebuild "
                               "the file") from exc
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _map_member(path: Path, raw, info: zipfile.ZipInfo) -> np.ndarray | None:
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    raw.seek(info.header_offset)
    local = raw.read(_LOCAL_HEADER)
    if len(local) < _LOCAL_HEADER or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    member_start = info.header_offset + _LOCAL_HEADER + name_len + extra_len
    raw.seek(member_start)
    shape, fortran, dtype = _read_header(path, raw, info)
    _check_size(path, info, shape, dtype, raw.tell() - member_start)
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                     order="F" if fortran else "C")
