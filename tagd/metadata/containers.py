"""File structure checks and the "image payload" of each container (pure, no exiftool).

Before a write: refuse files whose structure is broken or hostile (truncated, no SOI,
zero-length segments, two XMP packets, XMP with a DOCTYPE or invalid UTF-8). After a write:
the payload (JPEG scan data, PNG IDAT, WebP bitstream) must be byte-identical, which proves
the pixels were not re-encoded.

Over 400 lines: one structure check per container format (JPEG, PNG, WebP, TIFF), each short
and independent of the others, sharing the refusal messages and limits at the top.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from tagd.errors import TagdError

XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
# Some old software wrote "XMP\0" in place of "http" (about one Flickr photo in ten in COCO).
# exiftool reads such a packet but does not edit it (it adds a second, standard one); exiv2
# does not see it at all. tagd folds it into the standard packet (jpeg_xmp.py).
XMP_NONSTANDARD_HEADER = b"XMP\x00://ns.adobe.com/xap/1.0/\x00"
# Where tagd keeps the XMP segments it folded, as they were, for `tagd revert`: APP1 segments
# holding the packet deflated, so that no reader takes them for XMP (exiftool reads any APP1
# that starts with "http" or "XMP\0", or holds "<?xpacket" or "<exif:", as XMP).
STASH_STANDARD_HEADER = b"tagd:stash\x00S"
STASH_NONSTANDARD_HEADER = b"tagd:stash\x00N"
assert len(XMP_NONSTANDARD_HEADER) == len(XMP_JPEG_HEADER)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_XMP_BYTES = 16 * 1024 * 1024  # far beyond any real packet; a zip bomb in iTXt stops here


class StructureError(TagdError):
    """The file is malformed or hostile; `reason` is one line for the user."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Segment:
    """A JPEG marker segment before the scan data: bytes [start, end) of the file, from its 0xFF."""

    marker: int
    start: int
    end: int

    @property
    def body_start(self) -> int:
        return self.start + 4


# What an APP1 segment holds, by the header its body starts with (xmp_kind).
XMP_KINDS = {
    XMP_JPEG_HEADER: "standard", XMP_NONSTANDARD_HEADER: "nonstandard", XMP_EXTENSION_HEADER: "extension",
    STASH_STANDARD_HEADER: "stash-standard", STASH_NONSTANDARD_HEADER: "stash-nonstandard",
}


@dataclass
class Container:
    kind: str  # "jpeg" | "png" | "webp" | "tiff" | "other"
    xmp_packets: list[bytes] = field(default_factory=list)  # standard packets (checked, at most one)
    payload: bytes | None = None  # compressed image data; None where we cannot cut it out
    one_image: bool | None = None  # JPEG: single_image(), once it has been asked
    segments: list[Segment] = field(default_factory=list)  # JPEG: every segment before the scan data
    legacy_packets: list[bytes] = field(default_factory=list)  # JPEG: packets behind XMP_NONSTANDARD_HEADER

    def xmp_segments(self, data: bytes, *kinds: str) -> list[Segment]:
        """The JPEG's APP1 segments of these xmp_kind()s, in file order."""
        return [seg for seg in self.segments if seg.marker == 0xE1 and xmp_kind(data, seg) in kinds]


def xmp_kind(data: bytes, segment: Segment) -> str | None:
    for header, kind in XMP_KINDS.items():
        if data.startswith(header, segment.body_start):
            return kind
    return None


def sniff(head: bytes) -> str:
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return "other"


def inspect(data: bytes, suffix: str = "") -> Container:
    """Parse `data` enough to refuse broken files and cut out the payload."""
    kind = sniff(data[:16])
    if kind == "other" and suffix.lower() in (".jpg", ".jpeg", ".jpe"):
        raise StructureError("not a JPEG: no SOI marker at the start")
    if kind == "jpeg":
        container = _inspect_jpeg(data)
    elif kind == "png":
        container = _inspect_png(data)
    elif kind == "webp":
        container = _inspect_webp(data)
    elif kind == "tiff":
        container = Container("tiff", xmp_packets=_find_packets(data))
    else:
        container = Container("other", xmp_packets=_find_packets(data))
    if len(container.xmp_packets) > 1:
        raise StructureError(f"{len(container.xmp_packets)} standard XMP packets in one file (ambiguous; refusing)")
    for packet in container.xmp_packets:
        check_xmp(packet)
    return container


def check_xmp(packet: bytes) -> None:
    """Refuse XMP that is not valid UTF-8, carries a DOCTYPE/ENTITY, or is not well-formed XML."""
    if packet.startswith((b"\xfe\xff", b"\xff\xfe")):
        try:
            text = packet.decode("utf-16")
        except UnicodeDecodeError:
            raise StructureError("XMP packet is not valid UTF-16") from None
    else:
        try:
            text = packet.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StructureError(f"XMP packet is not valid UTF-8 (byte {exc.start})") from None
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise StructureError("XMP packet contains a DOCTYPE/ENTITY declaration (entity-expansion or XXE risk)")
    try:
        SafeET.fromstring(text.strip().rstrip("\x00").strip() or "<empty/>", forbid_dtd=True, forbid_entities=True)
    except DefusedXmlException as exc:
        raise StructureError(f"XMP packet refused: {type(exc).__name__}") from None
    except SafeET.ParseError as exc:
        raise StructureError(f"XMP packet is not well-formed XML ({exc})") from None


def _inspect_jpeg(data: bytes) -> Container:
    n = len(data)
    pos = 2
    packets: list[bytes] = []
    legacy: list[bytes] = []
    extended: dict[bytes, dict[int, bytes]] = {}  # GUID -> offset -> chunk
    segments: list[Segment] = []
    while True:
        if pos >= n:
            raise StructureError("truncated JPEG: ends before the image data")
        if data[pos] != 0xFF:
            raise StructureError(f"corrupt JPEG: expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise StructureError("truncated JPEG: ends inside a marker")
        marker = data[pos]
        start = pos - 1
        pos += 1
        if marker == 0xD8:
            raise StructureError(f"corrupt JPEG: second SOI marker at byte {start}")
        if marker == 0xD9:
            raise StructureError("corrupt JPEG: EOI before any image data")
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > n:
            raise StructureError("truncated JPEG: ends inside a segment header")
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2:
            raise StructureError(f"corrupt JPEG: zero-length segment (marker 0xFF{marker:02X} at byte {start})")
        end = pos + length
        if end > n:
            raise StructureError(f"truncated JPEG: segment 0xFF{marker:02X} at byte {start} runs past the end of the file")
        body = data[pos + 2:end]
        if marker == 0xE1 and body.startswith(XMP_JPEG_HEADER):
            packets.append(body[len(XMP_JPEG_HEADER):])
        elif marker == 0xE1 and body.startswith(XMP_NONSTANDARD_HEADER):
            legacy.append(body[len(XMP_NONSTANDARD_HEADER):])
        elif marker == 0xE1 and body.startswith(XMP_EXTENSION_HEADER):
            _extension_chunk(body[len(XMP_EXTENSION_HEADER):], extended)
        if marker == 0xDA:
            payload = data[start:]
            if not data.rstrip(b"\x00").endswith(b"\xff\xd9") and data.find(b"\xff\xd9", end) < 0:
                raise StructureError("truncated JPEG: the image data has no end (no EOI marker)")
            for packet in legacy:
                check_xmp(packet)
            for chunks in extended.values():
                check_xmp(b"".join(chunk for _, chunk in sorted(chunks.items())))
            return Container("jpeg", packets, payload, segments=segments, legacy_packets=legacy)
        segments.append(Segment(marker, start, end))
        pos = end


def _extension_chunk(body: bytes, into: dict[bytes, dict[int, bytes]]) -> None:
    """One Extended XMP chunk: 32-byte GUID, full length, offset (XMP part 3, 1.1.3.1)."""
    if len(body) < 40:
        raise StructureError("corrupt JPEG: a short Extended XMP segment")
    guid, (total, offset) = body[:32], struct.unpack(">II", body[32:40])
    if total > MAX_XMP_BYTES or offset + len(body) - 40 > total:
        raise StructureError("corrupt JPEG: an Extended XMP segment beyond its declared length")
    into.setdefault(guid, {})[offset] = body[40:]


def _inspect_png(data: bytes) -> Container:
    pos, n = len(PNG_SIGNATURE), len(data)
    packets: list[bytes] = []
    # Views, not slices: the image data of a 12 MP PNG is ~20 MB and is copied once, when joined.
    view = memoryview(data)
    idat: list[memoryview] = []
    first = True
    while True:
        if pos + 8 > n:
            raise StructureError("truncated PNG: no IEND chunk")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > n:
            raise StructureError(f"truncated PNG: chunk {kind!r} runs past the end of the file")
        body = view[pos + 8:pos + 8 + length]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack(">I", data[end - 4:end])[0]:
            raise StructureError(f"corrupt PNG: bad CRC in chunk {kind.decode('latin-1')!r}")
        if first and kind != b"IHDR":
            raise StructureError("corrupt PNG: first chunk is not IHDR")
        first = False
        if kind == b"iTXt" and body[:18] == b"XML:com.adobe.xmp\x00":
            packets.append(_itxt_text(bytes(body)))
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            return Container("png", packets, b"".join(idat))
        pos = end


def _itxt_text(body: bytes) -> bytes:
    _, _, rest = body.partition(b"\x00")
    if len(rest) < 2:
        raise StructureError("corrupt PNG: short iTXt chunk")
    compressed, rest = rest[0], rest[2:]
    _, _, rest = rest.partition(b"\x00")  # language tag
    _, _, text = rest.partition(b"\x00")  # translated keyword
    if compressed:
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(text, MAX_XMP_BYTES)
        except zlib.error as exc:
            raise StructureError(f"corrupt PNG: compressed XMP does not inflate ({exc})") from None
        if inflater.unconsumed_tail:
            raise StructureError("PNG XMP inflates beyond 16 MB (refusing a compression bomb)")
    return text


def _inspect_webp(data: bytes) -> Container:
    (riff_size,) = struct.unpack("<I", data[4:8])
    if riff_size + 8 > len(data):
        raise StructureError("truncated WebP: file shorter than its RIFF header says")
    pos, end_all = 12, riff_size + 8
    packets: list[bytes] = []
    payload = bytearray()
    while pos + 8 <= end_all:
        kind, size = struct.unpack("<4sI", data[pos:pos + 8])
        end = pos + 8 + size
        if end > end_all:
            raise StructureError(f"truncated WebP: chunk {kind!r} runs past the end")
        body = data[pos + 8:end]
        if kind == b"XMP ":
            packets.append(body)
        elif kind in (b"VP8 ", b"VP8L", b"ALPH", b"ANMF"):
            payload += kind + body
        pos = end + (size & 1)
    if not payload:
        raise StructureError("corrupt WebP: no image data")
    return Container("webp", packets, bytes(payload))


def _find_packets(data: bytes) -> list[bytes]:
    """XMP packets in a container we do not parse (TIFF): every `<x:xmpmeta` ... `</x:xmpmeta>`."""
    packets = []
    pos = 0
    while True:
        start = data.find(b"<x:xmpmeta", pos)
        if start < 0:
            return packets
        end = data.find(b"</x:xmpmeta>", start)
        if end < 0:
            raise StructureError("truncated XMP packet (no closing x:xmpmeta)")
        head = data.rfind(b"<?xpacket begin", max(0, start - 200), start)
        packets.append(data[head if head >= 0 else start:end + len(b"</x:xmpmeta>")])
        pos = end


def read_head(path: Path, size: int = 16) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


# ---- metadata-only stand-ins ------------------------------------------------------------------
# exiftool walks (and in PNG's case, CRC-checks in Perl) the whole image data of a file it
# validates or rewrites: ~2 s for a 20 MB PNG. tagd proves the image data byte-identical itself,
# so exiftool only needs the metadata: a stub is the file with its image data taken out.

_EMPTY_IDAT = struct.pack(">I4s", 0, b"IDAT") + struct.pack(">I", zlib.crc32(b"IDAT"))


def png_stub(data: bytes) -> tuple[bytes, memoryview]:
    """(the PNG with its run of IDAT chunks replaced by one empty IDAT, a view of that run's raw
    bytes: ~20 MB for 12 MP, not copied).

    The file must have passed `inspect`. IDAT chunks are consecutive by the PNG spec; a file
    whose IDATs are not is refused here (StructureError) and written the slow way by the caller.
    """
    pos, n = len(PNG_SIGNATURE), len(data)
    start = end = -1
    while pos + 12 <= n:
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        nxt = pos + 12 + length
        if kind == b"IDAT":
            if start < 0:
                start = pos
            elif end >= 0:
                raise StructureError("PNG image data chunks are not consecutive")
        elif start >= 0 and end < 0:
            end = pos
        if kind == b"IEND":
            break
        pos = nxt
    if start < 0 or end < 0:
        raise StructureError("PNG has no image data chunks")
    return data[:start] + _EMPTY_IDAT + data[end:], memoryview(data)[start:end]


def png_unstub(stub: bytes, idat_run: bytes | memoryview) -> list[bytes | memoryview]:
    """Put a PNG's image data back into a stub that went through exiftool: the new file's parts,
    in order, to be written one after the other (joining 20 MB would hold the GIL for it)."""
    at = stub.find(_EMPTY_IDAT, len(PNG_SIGNATURE))
    if at < 0 or stub.find(_EMPTY_IDAT, at + 1) >= 0:
        raise StructureError("the written PNG stub lost its image data placeholder")
    return [stub[:at], idat_run, stub[at + len(_EMPTY_IDAT):]]


def single_image(container: Container) -> bool:
    """A JPEG whose payload is one image: its first EOI is its last two bytes (no trailer such as
    MPF previews, whose offsets exiftool must see in the whole file)."""
    if container.one_image is None:
        container.one_image = container.payload is not None and _first_eoi_ends(container.payload)
    return container.one_image


def _first_eoi_ends(payload: bytes) -> bool:
    """0xFFD9 cannot occur inside entropy-coded data, so the first one ends the image.

    numpy, not bytes.find: the same scan of a 12 MP JPEG's ~2 MB, but without holding the GIL,
    which `tagd scan` showed bytes.find holding for 10 % of all GIL time (decoding and inference
    threads waited on it)."""
    import numpy as np

    if len(payload) < 2 or payload[-2:] != b"\xff\xd9":
        return False
    data = np.frombuffer(payload, dtype=np.uint8)[:-2]
    marks = np.flatnonzero(data[:-1] == 0xFF)  # ~1 in 256 bytes (0xFF00 stuffing)
    # (A pair straddling the end cannot match: the byte after data is the final 0xFF.)
    return not bool((data[marks + 1] == 0xD9).any())


def jpeg_stub(data: bytes, container: Container, one_image: bool | None = None) -> bytes | None:
    """Everything before the scan data, plus EOI; None unless the file is a single image.
    `one_image`: single_image(container) when the caller already knows it (a scan of the
    whole payload, ~2 ms for 12 MP)."""
    if not (single_image(container) if one_image is None else one_image):
        return None
    assert container.payload is not None
    return data[: len(data) - len(container.payload)] + b"\xff\xd9"


def jpeg_edit_stub(data: bytes, container: Container) -> bytes:
    """What exiftool edits in place of a single-image JPEG: everything before the scan data, the
    start-of-scan header (exiftool refuses a JPEG without one), then EOI at once."""
    payload = container.payload
    assert payload is not None and payload[:2] == b"\xff\xda"
    (length,) = struct.unpack(">H", payload[2:4])
    return data[: len(data) - len(payload)] + payload[: 2 + length] + b"\xff\xd9"


def jpeg_unstub(edited: bytes, payload: bytes) -> list[bytes]:
    """Put a JPEG's scan data back after a jpeg_edit_stub() that went through exiftool: the new
    file's parts, in order (as png_unstub)."""
    (length,) = struct.unpack(">H", payload[2:4])
    tail = payload[: 2 + length] + b"\xff\xd9"
    # Cut where the segments say the scan starts, not at the first FF DA bytes: an EXIF
    # thumbnail (a JPEG with its own SOS), an ICC profile or a digest may contain them.
    try:
        cut = _inspect_jpeg(edited).payload
    except StructureError as exc:
        raise StructureError(f"the JPEG stub came back from exiftool changed after its metadata ({exc.reason})") from None
    if cut != tail:
        raise StructureError("the JPEG stub came back from exiftool changed after its metadata")
    return [edited[: len(edited) - len(tail)], payload]


def metadata_stub(data: bytes, container: Container, one_image: bool | None = None) -> bytes | None:
    """The file without its image data, for exiftool to read and validate; None: use the file."""
    if container.kind == "jpeg":
        return jpeg_stub(data, container, one_image)
    if container.kind == "png":
        try:
            return png_stub(data)[0]
        except StructureError:
            return None
    return None


def jpeg_head(path: Path, limit: int = 16 * 1024 * 1024) -> bytes | None:
    """The bytes of a JPEG before its scan data (segment by segment, never the image data),
    or None for a file that is not a JPEG or whose segments run past `limit`."""
    with open(path, "rb") as fh:
        out = bytearray(fh.read(2))
        if out != b"\xff\xd8":
            return None
        while len(out) < limit:
            header = fh.read(4)
            if len(header) < 4 or header[0] != 0xFF:
                return bytes(out + header)
            out += header
            if header[1] == 0xDA or header[1] == 0xD9:
                return bytes(out)
            length = struct.unpack(">H", header[2:4])[0]
            body = fh.read(max(0, length - 2))
            out += body
            if len(body) < length - 2:
                return bytes(out)
    return None
