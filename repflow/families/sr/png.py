"""A PNG written row strip by row strip, so an upscaled image never has to be whole in memory.

Pillow encodes only a whole image, held as 4 bytes per pixel: for a 144-megapixel output that is 576 MB on top
of the pixels themselves. PNG's pixel data is one zlib stream of rows, each prefixed by a filter byte; rows
are compressed as they come (filter 0, "none": about 10-30 % larger files than Pillow's adaptive filters,
read by every PNG decoder). The file is written to a hidden temporary file beside the target and renamed
onto it when complete; on any error the temporary file is removed and the target left as it was.
"""
from __future__ import annotations

import os
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np

__all__ = ["PngRowWriter"]

IDAT_BYTES = 1 << 20  # compressed bytes per IDAT chunk


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class PngRowWriter:
    """An 8-bit RGB PNG of ``width`` × ``height`` pixels at ``path``: :meth:`write` uint8 (rows, width, 3) strips
    top to bottom inside a ``with`` block; the file appears when the block ends after exactly ``height``
    rows."""

    def __init__(self, path: str | Path, width: int, height: int, *, level: int = 6):
        if width < 1 or height < 1:
            raise ValueError(f"PNG size must be at least 1×1, got {width}×{height}")
        self.path, self.width, self.height = Path(path), width, height
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{uuid.uuid4().hex[:8]}")
        self._file = open(self._tmp, "wb")
        self._zip = zlib.compressobj(level)
        self._pending = b""
        self.rows = 0
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        self._file.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header))

    def _emit(self, data: bytes, final: bool = False) -> None:
        self._pending += data
        while len(self._pending) >= IDAT_BYTES or (final and self._pending):
            self._file.write(_chunk(b"IDAT", self._pending[:IDAT_BYTES]))
            self._pending = self._pending[IDAT_BYTES:]

    def write(self, rows: np.ndarray) -> None:
        """Append uint8 (n, width, 3) rows."""
        if rows.dtype != np.uint8 or rows.ndim != 3 or rows.shape[1:] != (self.width, 3):
            raise ValueError(f"rows must be uint8 (n, {self.width}, 3), got {rows.dtype} {rows.shape}")
        if self.rows + len(rows) > self.height:
            raise ValueError(f"{self.rows + len(rows)} rows written to a PNG of height {self.height}")
        filtered = np.zeros((len(rows), 1 + 3 * self.width), np.uint8)  # filter byte 0 per row
        filtered[:, 1:] = rows.reshape(len(rows), -1)
        self._emit(self._zip.compress(filtered.tobytes()))
        self.rows += len(rows)

    def __enter__(self) -> PngRowWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if exc_type is None:
                if self.rows != self.height:
                    raise ValueError(f"{self.rows} of {self.height} rows written to {self.path}")
                self._emit(self._zip.flush(), final=True)
                self._file.write(_chunk(b"IEND", b""))
            self._file.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
