"""NPZ files that load with ``allow_pickle=False`` and whose arrays can be memory-mapped.

``np.load(path, mmap_mode="r")`` does not memory-map the members of an ``.npz`` (it ignores
``mmap_mode`` for archives and reads each member fully). An *uncompressed* NPZ member is a plain
``.npy`` stored byte for byte inside the zip, though, so :func:`open_npz` finds its data offset
(zip local header + ``.npy`` header) and maps it with ``np.memmap``. :func:`write_npz` writes
uncompressed members whose data starts on a 64-byte boundary, so the mapped arrays are aligned.
Any uncompressed ``np.savez`` file maps too; compressed members are read into memory.
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
_LOCAL_HEADER = 30
_ZIP64_EXTRA = 20  # zipfile adds a zip64 extra field to the local header when force_zip64
_PAD_ID = 0xCAFE   # private extra-field id that only pads; readers skip unknown ids
_WRITE_BLOCK = 1 << 24


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` as an uncompressed NPZ, atomically, with 64-byte aligned member data.

    Object arrays are refused: the file must load with ``np.load(path, allow_pickle=False)``.
    """
    path = Path(path)
    with atomic_path(path, suffix=".npz.tmp") as tmp:
        with open(tmp, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED,
                                                     allowZip64=True) as archive:
            for name, value in arrays.items():
                _write_member(archive, raw, name, np.asanyarray(value))
    return path


def _write_member(archive: zipfile.ZipFile, raw, name: str, array: np.ndarray) -> None:
    if array.dtype.hasobject:
        raise TypeError(f"array {name!r} has dtype object; store text as a unicode array")
    member = f"{name}.npy"
    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header_start = raw.tell()
    fixed = _LOCAL_HEADER + len(member.encode()) + _ZIP64_EXTRA + 4  # 4: pad field header
    info.extra = struct.pack("<HH", _PAD_ID, (-(header_start + fixed)) % _ALIGN) + bytes(
        (-(header_start + fixed)) % _ALIGN)
    if not array.flags.c_contiguous:  # C-ordered (and memory-mapped) input is not copied
        array = array.copy(order="C")
    header = np.lib.format.header_data_from_array_1_0(array)
    with archive.open(info, "w", force_zip64=True) as fh:
        # the .npy header pads itself to a multiple of 64 bytes, so the data stays aligned
        if len(repr(header)) > 65000:
            np.lib.format.write_array_header_2_0(fh, header)
        else:
            np.lib.format.write_array_header_1_0(fh, header)
        flat = array.reshape(-1)
        step = max(1, _WRITE_BLOCK // max(1, flat.itemsize))
        for start in range(0, flat.size, step):  # blocks bound memory for memory-mapped input
            fh.write(flat[start:start + step].view(np.uint8))


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


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(info) as fh:
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except ValueError as exc:
            raise InputError(path, f"array {info.filename[:-4]!r} holds Python objects "
                                   f"({exc}); it cannot be loaded safely. Store text as a "
                                   "unicode array (dtype '<U...')") from exc


def _map_member(path: Path, raw, info: zipfile.ZipInfo) -> np.ndarray | None:
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    raw.seek(info.header_offset)
    local = raw.read(_LOCAL_HEADER)
    if len(local) < _LOCAL_HEADER or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    raw.seek(info.header_offset + _LOCAL_HEADER + name_len + extra_len)
    try:
        version = np.lib.format.read_magic(raw)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            return None
        shape, fortran, dtype = reader(raw)
    except ValueError:
        return None
    if dtype.hasobject:
        raise InputError(path, f"array {info.filename[:-4]!r} holds Python objects; it cannot "
                               "be loaded safely. Store text as a unicode array (dtype '<U...')")
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                     order="F" if fortran else "C")
