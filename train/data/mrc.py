"""A minimal reader for MRC (MRC2014) volumes, enough for the LiTS-117 sample; numpy only.

Header fields used (1024 bytes, 4-byte words, numbered from 1 as in the MRC2014 standard):

* words 1-3, ``NX, NY, NZ``: voxels along columns, rows and sections (columns vary fastest);
* word 4, ``MODE``: the voxel type: 0 int8, 1 int16, 2 float32, 6 uint16, 12 float16;
* words 8-10 ``MX, MY, MZ`` and 11-13 ``CELLA`` (cell size, angstrom): a voxel size when both are
  positive (the LiTS sample leaves them zero, so its spacing is unknown);
* words 17-19, ``MAPC, MAPR, MAPS``: which axis (1 X, 2 Y, 3 Z) columns, rows and sections run along;
* word 24, ``NSYMBT``: bytes of extended header between the 1024-byte header and the data;
* word 53, ``MAP``: the bytes ``"MAP "`` (checked when present; old files leave it blank);
* word 54, ``MACHST``: byte order: ``0x44 0x44`` (or ``0x44 0x41``) little-endian, ``0x11 0x11``
  big-endian.

Everything else (origin, statistics, labels, symmetry) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["MrcVolume", "read_mrc", "MRC_MODES"]

HEADER_BYTES = 1024
MRC_MODES = {0: np.int8, 1: np.int16, 2: np.float32, 6: np.uint16, 12: np.float16}


@dataclass(frozen=True)
class MrcVolume:
    """An MRC volume as an ``(X, Y, Z)`` array (axis order from MAPC/MAPR/MAPS).

    Attributes:
        array: the voxels, in the file's type (native byte order).
        mode: the MRC mode number.
        voxel_size: CELLA / (MX, MY, MZ) along X, Y, Z in the file's unit (angstrom by the
            standard), or None when the header leaves the cell or sampling zero.
    """

    array: np.ndarray
    mode: int
    voxel_size: tuple[float, float, float] | None


def _byte_order(header: bytes) -> Literal["<", ">"]:
    stamp = header[212:214]
    if stamp == b"\x11\x11":
        return ">"
    if stamp in (b"\x44\x44", b"\x44\x41"):
        return "<"
    # No stamp (older writers): the mode must be a small number in one of the two orders.
    little = int(np.frombuffer(header[12:16], "<i4")[0])
    return "<" if 0 <= little < 256 else ">"


def read_mrc(data: bytes, *, name: str = "MRC data") -> MrcVolume:
    """Parse an MRC file's bytes into an ``(X, Y, Z)`` array.

    Raises:
        ValueError: naming ``name``, for a truncated file, an unknown mode, bad dimensions or a bad
            axis map.
    """
    if len(data) < HEADER_BYTES:
        raise ValueError(f"{name}: {len(data)} bytes, shorter than the 1024-byte MRC header")
    header = bytes(data[:HEADER_BYTES])
    if header[208:212] not in (b"MAP ", b"MAP\x00", b"\x00\x00\x00\x00", b"    "):
        raise ValueError(f"{name}: not an MRC file (word 53 is {header[208:212]!r}, expected 'MAP ')")
    order = _byte_order(header)
    words = np.frombuffer(header[:96], dtype=f"{order}i4")
    nx, ny, nz, mode = (int(v) for v in words[:4])
    sampling = [int(v) for v in words[7:10]]
    cell = [float(v) for v in np.frombuffer(header[40:52], dtype=f"{order}f4")]
    axis_map = [int(v) for v in words[16:19]]
    nsymbt = int(words[23])
    if mode not in MRC_MODES:
        raise ValueError(f"{name}: MRC mode {mode} is not supported (supported: "
                         f"{', '.join(f'{m} {np.dtype(t).name}' for m, t in MRC_MODES.items())})")
    if min(nx, ny, nz) < 1:
        raise ValueError(f"{name}: bad MRC dimensions {nx} x {ny} x {nz}")
    if axis_map == [0, 0, 0]:
        axis_map = [1, 2, 3]  # unset in some writers: the standard's default
    if sorted(axis_map) != [1, 2, 3]:
        raise ValueError(f"{name}: MAPC/MAPR/MAPS must be a permutation of 1, 2, 3; got {axis_map}")
    if nsymbt < 0:
        raise ValueError(f"{name}: negative extended header size {nsymbt}")
    dtype = np.dtype(MRC_MODES[mode]).newbyteorder(order)
    count = nx * ny * nz
    start = HEADER_BYTES + nsymbt
    if len(data) < start + count * dtype.itemsize:
        raise ValueError(f"{name}: truncated: {nx} x {ny} x {nz} voxels of mode {mode} need "
                         f"{start + count * dtype.itemsize} bytes, the file has {len(data)}")
    raw = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    # Stored as sections of rows of columns (columns fastest): C order (NZ, NY, NX).
    crs = raw.reshape(nz, ny, nx).transpose(2, 1, 0)  # (columns, rows, sections)
    xyz = crs.transpose(np.argsort([a - 1 for a in axis_map]))
    array = np.ascontiguousarray(xyz).astype(dtype.newbyteorder("="), copy=False)
    voxel_size: tuple[float, float, float] | None = None
    if all(c > 0 for c in cell) and all(m > 0 for m in sampling):
        # CELLA/MX is along X, etc. (three of each: header words 8-10 and 11-13).
        vx, vy, vz = (float(c / m) for c, m in zip(cell, sampling))
        voxel_size = (vx, vy, vz)
    return MrcVolume(array=array, mode=mode, voxel_size=voxel_size)
