"""A JPEG's legacy XMP folded into one standard packet, and unfolded again (pure, bytes in and out).

About one Flickr photo in ten carries its XMP behind the non-standard header `XMP\\0://...`.
exiftool reads that packet; exiv2 and most tools do not; a tool that adds a keyword writes a
second, standard packet beside it, and from then on readers disagree. Before tagd edits such
a file it folds every XMP packet into one standard packet (`xmp_merge.merge`: the standard
packet's values win, the legacy packet's other properties are kept) and keeps the original
segments, deflated, under stash headers (containers.STASH_*). `tagd revert` unfolds: tagd's
packet goes, the stashed segments come back as they were, and the file's XMP is byte for
byte what it was.
"""

from __future__ import annotations

import re
import struct
import zlib

from tagd.metadata.containers import (
    STASH_NONSTANDARD_HEADER, STASH_STANDARD_HEADER, XMP_JPEG_HEADER, XMP_NONSTANDARD_HEADER, Container,
    Segment, StructureError, xmp_kind,
)
from tagd.metadata.xmp_merge import MergeError, merge

_HEADER = {"standard": XMP_JPEG_HEADER, "nonstandard": XMP_NONSTANDARD_HEADER,
           "stash-standard": STASH_STANDARD_HEADER, "stash-nonstandard": STASH_NONSTANDARD_HEADER}
_STASH_OF = {"standard": "stash-standard", "nonstandard": "stash-nonstandard"}
_UNSTASHED = {v: k for k, v in _STASH_OF.items()}
MAX_SEGMENT_BODY = 0xFFFF - 2
# What makes exiftool read an APP1 segment as XMP, whatever its header (see containers).
_LOOKS_LIKE_XMP = re.compile(rb"^(http|XMP\0)|<(exif:|\?xpacket)")


def has_legacy_xmp(container: Container) -> bool:
    return container.kind == "jpeg" and bool(container.legacy_packets)


def has_stash(data: bytes, container: Container) -> bool:
    return bool(container.xmp_segments(data, *_UNSTASHED))


def packets_by_precedence(data: bytes, container: Container) -> list[bytes]:
    """The XMP packets a fold merges, lowest precedence first: the legacy ones in file order
    (a later one wins, as exiftool reads them), then the standard one, which wins over all."""
    legacy = [_packet(data, s) for s in container.xmp_segments(data, "nonstandard")]
    standard = [_packet(data, s) for s in container.xmp_segments(data, "standard")]
    return [*legacy, *standard]


def fold(data: bytes, container: Container) -> bytes:
    """`data` with its XMP in one standard packet and the original XMP segments stashed.

    Raises StructureError where that cannot be done safely (an Extended XMP beside a legacy
    packet, a packet the merge cannot read, a result too large for one segment)."""
    xmp = container.xmp_segments(data, "standard", "nonstandard")
    if not any(xmp_kind(data, s) == "nonstandard" for s in xmp):
        return data
    if container.xmp_segments(data, "extension"):
        raise StructureError("an Extended XMP packet beside a legacy XMP packet; cannot merge them safely")
    try:
        merged = merge(packets_by_precedence(data, container))
    except MergeError as exc:
        raise StructureError(f"the legacy XMP packet cannot be merged ({exc})") from None
    if len(XMP_JPEG_HEADER) + len(merged) > MAX_SEGMENT_BODY:
        raise StructureError("the legacy and the standard XMP packets together are too large for one JPEG segment")
    parts: list[bytes] = []
    at = 0
    for i, seg in enumerate(xmp):
        parts.append(data[at:seg.start])
        if i == 0:
            parts.append(_segment(XMP_JPEG_HEADER + merged))
        kind = xmp_kind(data, seg)
        assert kind is not None
        parts.append(_segment(_stash(_STASH_OF[kind], data[seg.body_start + len(_HEADER[kind]):seg.end])))
        at = seg.end
    parts.append(data[at:])
    return b"".join(parts)


def unfold(data: bytes, container: Container) -> bytes:
    """`data` with tagd's standard packet (and its Extended XMP) removed and the stashed
    segments given back their original headers: the XMP as it was before the fold."""
    return _rewrite(data, container, restore=True)


def drop_stash(data: bytes, container: Container) -> bytes:
    """`data` without the stashed segments (the user edited the folded packet since: the
    originals no longer describe the photo)."""
    return _rewrite(data, container, restore=False)


def _rewrite(data: bytes, container: Container, restore: bool) -> bytes:
    parts: list[bytes] = []
    at = 0
    for seg in container.segments:
        kind = xmp_kind(data, seg) if seg.marker == 0xE1 else None
        if kind in _UNSTASHED:
            parts.append(data[at:seg.start])
            if restore:
                packet = _unstash(data[seg.body_start + len(_HEADER[kind]):seg.end])
                parts.append(_segment(_HEADER[_UNSTASHED[kind]] + packet))
            at = seg.end
        elif restore and kind in ("standard", "extension"):
            parts.append(data[at:seg.start])
            at = seg.end
    parts.append(data[at:])
    return b"".join(parts)


def _packet(data: bytes, seg: Segment) -> bytes:
    kind = xmp_kind(data, seg)
    assert kind is not None
    return data[seg.body_start + len(_HEADER[kind]):seg.end]


def _stash(kind: str, packet: bytes) -> bytes:
    body = _HEADER[kind] + zlib.compress(packet, 9)
    if _LOOKS_LIKE_XMP.search(body):  # deflated bytes that happen to spell it: vanishingly rare
        raise StructureError("the original XMP cannot be kept where no reader mistakes it for XMP")
    return body


def _unstash(body: bytes) -> bytes:
    try:
        return zlib.decompress(body)
    except zlib.error as exc:
        raise StructureError(f"tagd's copy of the original XMP is damaged ({exc})") from None


def _segment(body: bytes) -> bytes:
    assert len(body) <= MAX_SEGMENT_BODY
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
