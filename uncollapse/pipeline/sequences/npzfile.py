"""NPZ files that load with ``allow_pickle=False`` and whose arrays can be memory-mapped.

``np.load(path, mmap_mode="r")`` does not memory-map the members of an ``.npz`` (it ignores
``mmap_mode`` for archives and reads each member fully). An *uncompressed* NPZ member is a plain
``.npy`` stored byte for byte inside the zip, though, so :func:`open_npz` finds its data offset
(``ZipInfo.header_offset`` + the local header + the ``.npy`` header) and maps it with
``np.memmap``. :func:`write_npz` writes uncompressed zip64 members with the standard library's
``zipfile`` whose data starts on a 64-byte boundary, so the mapped arrays are aligned. Any
uncompressed ``np.savez`` file maps too; compressed members are read into memory.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from uncollapse.atomic import atomic_path
from uncollapse.errors import InputError

_ALIGN = 64
_LOCAL_HEADER = 30   # fixed part of a zip local file header
_ZIP64_EXTRA = 20    # the zip64 extra field zipfile adds to a local header with force_zip64
_PAD_ID = 0xCAFE     # private extra-field id that only pads; zip readers skip unknown ids
_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so equal arrays give equal files
_WRITE_BLOCK = 1 << 24


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed zip64 NPZ, atomically, with 64-byte aligned data.

    The file is what ``np.savez`` writes (``np.load`` reads it), except that each member's data
    starts on a 64-byte boundary. Object arrays are refused: the file must load with
    ``np.load(path, allow_pickle=False)``.
    """
    path = Path(path)
    for name, value in arrays.items():
        if np.asanyarray(value).dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object; store text as a unicode array")
    with atomic_path(path, suffix=".npz.tmp") as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in arrays.items():
            _write_member(archive, name, np.asanyarray(value))
    return path


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_DATE)
    info.compress_type = zipfile.ZIP_STORED
    # Pad the local header so the member starts 64-byte aligned; the .npy header pads itself
    # to a multiple of 64 bytes, so the array data is aligned too.
    header_end = (archive.fp.tell() + _LOCAL_HEADER + len(info.filename.encode())
                  + 4 + _ZIP64_EXTRA)
    pad = -header_end % _ALIGN
    info.extra = struct.pack("<HH", _PAD_ID, pad) + bytes(pad)
    if not array.flags.c_contiguous:  # C-ordered (and memory-mapped) input is not copied
        array = array.copy(order="C")
    header = np.lib.format.header_data_from_array_1_0(array)
    with archive.open(info, "w", force_zip64=True) as member:
        if len(repr(header)) > 65000:
            np.lib.format.write_array_header_2_0(member, header)
        else:
            np.lib.format.write_array_header_1_0(member, header)
        # The raw bytes go in blocks rather than through np.lib.format.write_array, which
        # copies each block with tobytes() first: 1.5x slower for a 1.4 GiB array here.
        data = array.reshape(-1).view(np.uint8)
        for start in range(0, data.size, _WRITE_BLOCK):  # bounded memory for mapped input
            member.write(data[start:start + _WRITE_BLOCK])


def open_npz(path: str | Path, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every array of an NPZ, memory-mapped read-only where the member is uncompressed.

    Never unpickles: an object array is an ``InputError``, as is a file that is not an NPZ.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "does not exist or is not a file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(path, f"not an NPZ archive ({exc}); write it with numpy.savez") from exc
    arrays = {}
    with archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            array = _map_member(path, raw, info) if mmap else None
            if array is None:
                array = _read_member(path, archive, info)
            arrays[name] = array
    return arrays


def _read_header(path: Path, fh, info: zipfile.ZipInfo):
    """``(shape, fortran, dtype)`` of the ``.npy`` member whose header starts at ``fh``."""
    name = info.filename[:-4]
    try:
        version = np.lib.format.read_magic(fh)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0,
                  (3, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f".npy format version {version} is not supported")
        shape, fortran, dtype = reader(fh)
    except (ValueError, EOFError) as exc:
        raise InputError(path, f"array {name!r} is not a readable .npy member ({exc}); rebuild "
                               "the file") from exc
    if dtype.hasobject:
        raise InputError(path, f"array {name!r} holds Python objects; it cannot be loaded "
                               "safely. Store text as a unicode array (dtype '<U...')")
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
            size = _check_size(path, info, shape, dtype, fh.tell())
            data = fh.read(size)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(path, f"array {info.filename[:-4]!r} cannot be read ({exc}); rebuild "
                               "the file") from exc
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


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
