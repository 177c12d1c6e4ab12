"""Put an XMP packet into a WebP file (exiftool 12.57, Debian 12's, cannot write RIFF files).

exiftool still does the XMP itself: it edits the packet as a standalone .xmp file, and this
module only swaps the RIFF `XMP ` chunk and sets the VP8X flag that announces it (adding a
VP8X header to a simple-format file). The image chunks are copied byte for byte.
"""

from __future__ import annotations

import struct

from tagd.metadata.containers import StructureError

XMP_FLAG = 0x04
ALPHA_FLAG = 0x10


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    (riff_size,) = struct.unpack("<I", data[4:8])
    end_all = min(len(data), riff_size + 8)
    pos, out = 12, []
    while pos + 8 <= end_all:
        kind, size = struct.unpack("<4sI", data[pos:pos + 8])
        if pos + 8 + size > end_all:
            raise StructureError(f"truncated WebP: chunk {kind!r} runs past the end")
        out.append((kind, data[pos + 8:pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return out


def _canvas(kind: bytes, body: bytes) -> tuple[int, int, bool]:
    if kind == b"VP8 ":
        if len(body) < 10 or body[3:6] != b"\x9d\x01\x2a":
            raise StructureError("corrupt WebP: bad VP8 frame header")
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if kind == b"VP8L":
        if len(body) < 5 or body[0] != 0x2F:
            raise StructureError("corrupt WebP: bad VP8L header")
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise StructureError(f"corrupt WebP: unexpected first chunk {kind!r}")


def set_xmp(data: bytes, packet: bytes | None) -> bytes:
    """`data` with its XMP chunk replaced by `packet` (removed when None)."""
    chunks = [(k, b) for k, b in _chunks(data) if k != b"XMP "]
    if not chunks:
        raise StructureError("corrupt WebP: no chunks")
    if chunks[0][0] == b"VP8X":
        header = bytearray(chunks[0][1])
        if packet is None:
            header[0] &= ~XMP_FLAG & 0xFF
        else:
            header[0] |= XMP_FLAG
        chunks[0] = (b"VP8X", bytes(header))
    elif packet is not None:
        width, height, alpha = _canvas(*chunks[0])
        flags = XMP_FLAG | (ALPHA_FLAG if alpha else 0)
        vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", vp8x))
    if packet is not None:
        chunks.append((b"XMP ", packet))  # metadata chunks go after the image data
    body = b"".join(k + struct.pack("<I", len(b)) + b + (b"\x00" if len(b) & 1 else b"") for k, b in chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
