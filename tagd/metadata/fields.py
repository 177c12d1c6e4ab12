"""The keyword fields other photo tools read, and the MWG rule for reading them (pure functions).

Field list and rules: shared/METADATA.md. Reading follows exiftool's MWG.pm: a naive union of
dc:subject and IPTC brings back keywords a non-XMP-aware tool already deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tagd.metadata.iptc import CURRENT_IPTC_DIGEST, IPTC_DIGEST

# exiftool tag names, by the short names tagd uses for them.
SUBJECT = "XMP-dc:Subject"
HIERARCHICAL = "XMP-lr:HierarchicalSubject"
TAGSLIST = "XMP-digiKam:TagsList"
LASTKEYWORDXMP = "XMP-microsoft:LastKeywordXMP"
IPTC_KEYWORDS = "IPTC:Keywords"
XPKEYWORDS = "IFD0:XPKeywords"

FIELDS: dict[str, str] = {
    "subject": SUBJECT,
    "hierarchical": HIERARCHICAL,
    "tagslist": TAGSLIST,
    "lastkeywordxmp": LASTKEYWORDXMP,
    "iptc": IPTC_KEYWORDS,
    "xpkeywords": XPKEYWORDS,
}
# Always written: what every reader looks at first (Windows, macOS, Lightroom, darktable).
ALWAYS = ("subject", "hierarchical")

READ_ARGS = (
    "-struct", "-a", "-G1",
    f"-{SUBJECT}", f"-{HIERARCHICAL}", f"-{TAGSLIST}", f"-{LASTKEYWORDXMP}",
    f"-{IPTC_KEYWORDS}", f"-{XPKEYWORDS}", f"-{IPTC_DIGEST}", f"-{CURRENT_IPTC_DIGEST}",
    "-XMP-tagd:all", "-XMP-mwg-rs:RegionInfo#", "-File:FileType", "-File:MIMEType", "-ExifTool:Warning",
    # Every IPTC string, to tell which charset an IPTC block without 1:90 is in (iptc.IptcState).
    "-IPTC:all",
    # For the index: when and with what the photo was taken, and its size.
    "-ExifIFD:DateTimeOriginal", "-XMP-exif:DateTimeOriginal", "-IFD0:Make", "-IFD0:Model", "-Composite:ImageSize",
    # Make and model as XMP writes them (tiff: namespace; exifEX has only the lens's), for photos
    # whose EXIF was dropped by an editor that kept the XMP.
    "-XMP-tiff:Make", "-XMP-tiff:Model",
)


@dataclass(frozen=True)
class PhotoInfo:
    taken: str | None = None  # "YYYY:MM:DD HH:MM:SS" as EXIF writes it
    camera: str | None = None
    width: int | None = None
    height: int | None = None

    @classmethod
    def from_exiftool(cls, record: dict[str, Any]) -> "PhotoInfo":
        taken = record.get("ExifIFD:DateTimeOriginal") or record.get("XMP-exif:DateTimeOriginal")
        # EXIF first, as for the date; each from XMP where EXIF lacks it (8 of coco128's photos).
        make, model = (str(record.get(f"IFD0:{k}") or record.get(f"XMP-tiff:{k}") or "").strip() for k in ("Make", "Model"))
        # "Canon Canon EOS R5" reads badly: drop the make when the model repeats it.
        camera = model if make and model.lower().startswith(make.split()[0].lower()) else f"{make} {model}".strip()
        width = height = None
        size = str(record.get("Composite:ImageSize", ""))
        for sep in ("x", " "):
            if sep in size:
                w, _, h = size.partition(sep)
                if w.strip().isdigit() and h.strip().isdigit():
                    width, height = int(w), int(h)
                break
        return cls(str(taken) if taken else None, camera or None, width, height)

IPTC_MAX_BYTES = 64


# exiftool warnings that mean the metadata structure is broken: such a file is not rewritten.
_STRUCTURAL = ("ifd", "directory", "corrupt", "truncated", "bad ", "short ", "invalid", "overlap", "offset")


def structural_warnings(record: dict[str, Any]) -> list[str]:
    """exiftool's non-minor warnings about a broken structure (a corrupt or hostile EXIF)."""
    out = []
    for warning in as_list(record.get("ExifTool:Warning")):
        text = warning.strip()
        if text.startswith("[minor]"):
            continue
        if any(word in text.lower() for word in _STRUCTURAL):
            out.append(text)
    return out


def as_list(value: Any) -> list[str]:
    """exiftool JSON gives a lone list item as a scalar; everything becomes a list of str."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def split_xp(value: Any) -> list[str]:
    return [part.strip() for part in str(value).split(";") if part.strip()] if value else []


def read_xp_keywords(path: Path) -> list[str] | None:
    """XPKeywords decoded from its raw UTF-16LE bytes, or None where it cannot be found.

    exiftool 12.57 decodes XPKeywords as UCS-2 and turns characters outside the BMP (emoji)
    into "?", so for JPEG and TIFF tagd reads the bytes itself. A small bounded reader, not
    piexif: piexif.load on hostile EXIF (huge counts) allocates tens of gigabytes.
    """
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as fh:
            head = fh.read(_XP_SCAN_BYTES)
    except OSError:
        return None
    if suffix in (".jpg", ".jpeg", ".jpe"):
        tiff = _jpeg_exif(head)
    elif suffix in (".tif", ".tiff"):
        tiff = head
    else:
        return None
    raw = _ifd0_entry(tiff, 0x9C9E) if tiff else None
    if raw is None:
        return None
    return split_xp(raw.decode("utf-16-le", "replace").rstrip("\x00"))


_XP_SCAN_BYTES = 256 * 1024  # EXIF lives in the first 64 KB of a JPEG; TIFF IFD0 near the start


def _jpeg_exif(data: bytes) -> bytes | None:
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            return None
        body = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            return body[6:]
        pos += 2 + length
    return None


def _ifd0_entry(tiff: bytes, wanted: int) -> bytes | None:
    """The raw value of one IFD0 entry, with every offset and count checked against `tiff`."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[ifd:ifd + 2], order)
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
    for i in range(min(count, 1000)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return None
        tag = int.from_bytes(tiff[entry:entry + 2], order)
        if tag != wanted:
            continue
        kind = int.from_bytes(tiff[entry + 2:entry + 4], order)
        n = int.from_bytes(tiff[entry + 4:entry + 8], order) * sizes.get(kind, 1)
        if n > 65536:
            return None
        if n <= 4:
            return tiff[entry + 8:entry + 8 + n]
        offset = int.from_bytes(tiff[entry + 8:entry + 12], order)
        return tiff[offset:offset + n] if offset + n <= len(tiff) else None
    return None


def xp_argument(keywords: list[str]) -> str:
    """XPKeywords value for exiftool: characters outside the BMP as UTF-16 surrogate pairs.

    exiftool encodes each code point as one UCS-2 unit and drops those above U+FFFF; handing it
    the two surrogates (sent as surrogate-escaped UTF-8) makes it write proper UTF-16LE.
    """
    text = ";".join(keywords)
    return "".join(c if ord(c) < 0x10000 else _surrogates(c) for c in text)


def _surrogates(c: str) -> str:
    code = ord(c) - 0x10000
    return chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF))


def truncate_utf8(text: str, limit: int = IPTC_MAX_BYTES) -> str:
    """Cut to at most `limit` UTF-8 bytes without splitting a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


@dataclass
class FieldValues:
    """The keyword fields present in one file (or sidecar), as exiftool reports them."""

    present: dict[str, list[str]] = field(default_factory=dict)
    iptc_digest: str | None = None
    current_iptc_digest: str | None = None
    has_xmp: bool = False

    @classmethod
    def from_exiftool(cls, record: dict[str, Any], raw_xp: list[str] | None = None) -> "FieldValues":
        """`raw_xp`: XPKeywords decoded from the bytes (see `read_xp_keywords`), preferred."""
        present: dict[str, list[str]] = {}
        for short, tag in FIELDS.items():
            if tag in record:
                if short == "xpkeywords":
                    present[short] = raw_xp if raw_xp is not None else split_xp(record[tag])
                else:
                    # An empty rdf:Bag reads as one empty string: a field with no keywords.
                    present[short] = [v for v in as_list(record[tag]) if v != ""]
        has_xmp = any(k.startswith("XMP-") for k in record)
        return cls(present, _str(record.get(IPTC_DIGEST)), _str(record.get(CURRENT_IPTC_DIGEST)), has_xmp)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def mwg_keywords(values: FieldValues) -> list[str]:
    """The photo's keywords by the MWG rule (exiftool MWG.pm), first-seen order, no duplicates.

    No IPTC -> XMP. XMP present and the IPTC digest missing or matching -> XMP. Otherwise the
    IPTC was edited by a tool that does not know XMP, so IPTC wins (with its 64-byte cuts
    repaired from XMP). Then hierarchical leaves and XPKeywords are added.
    """
    present = values.present
    leaves = [path.split(sep)[-1].strip() for short, sep in SEPARATORS.items() for path in present.get(short, [])]
    return unique(k.strip() for k in [*mwg_base(values), *leaves, *present.get("xpkeywords", [])] if k.strip())


# The hierarchical keyword fields and the separator each writes a path with. digiKam and
# Windows Photo Gallery write their hierarchies with "/" (People/Anna), Lightroom with "|".
SEPARATORS = {"hierarchical": "|", "tagslist": "/", "lastkeywordxmp": "/"}


def hierarchy_values(existing: list[str], final: list[str], paths: dict[str, str], sep: str) -> list[str]:
    """One hierarchical field's new entries for the keyword list `final`.

    The user's entries stay exactly as written (People/Anna stays People/Anna) while their leaf
    is still a keyword; every other keyword gets one entry: its path from `paths` ("animal|cat",
    written with this field's `sep`), else itself as a one-level entry, unless an entry already
    names it (Pets is in Pets|Mittens) or it holds `sep` itself (a keyword "AC/DC" in a "/"
    field would read back as two). Existing entries first, in their order: writing the same
    list twice gives the same field."""
    wanted = set(final)
    kept = [e for e in existing if e.split(sep)[-1].strip() in wanted]
    new = []
    for keyword in final:
        path = paths.get(keyword)
        entry = path.replace("|", sep) if path and "|" in path and sep not in path.replace("|", "") else keyword
        if entry == keyword and sep in keyword:
            continue
        new.append(entry)
    entries = unique([*kept, *new])
    named = {part.strip() for e in entries if sep in e for part in e.split(sep)}
    return [e for e in entries if sep in e or e.strip() not in named or e in kept]


def mwg_base(values: FieldValues) -> list[str]:
    """The flat keyword list the MWG rule trusts (dc:subject or IPTC), before the extras."""
    present = values.present
    xmp = present.get("subject", [])
    iptc = present.get("iptc")
    if iptc is None:
        return xmp
    if values.has_xmp and "subject" in present and (
        values.iptc_digest is None or values.iptc_digest == values.current_iptc_digest
    ):
        return xmp
    return [_repair_truncation(k, xmp) for k in iptc]


def keywords_after_edits(values: FieldValues, added: Iterable[str], written: Iterable[str]) -> list[str]:
    """mwg_keywords, except tagd's own additions the user deleted from the main list.

    tagd writes each addition into the flat list and the hierarchy alike. A tool that edits only
    dc:subject (or IPTC) leaves "food|dessert" behind when the user deletes "dessert"; by the
    union rule "dessert" would still be there and tagd would write it straight back.
    """
    base = {k.strip() for k in mwg_base(values)}
    written_set = set(written)
    deleted = {k for k in added if k in written_set and k not in base}
    return [k for k in mwg_keywords(values) if k not in deleted]


def _repair_truncation(keyword: str, xmp: list[str]) -> str:
    if len(keyword.encode("utf-8")) < IPTC_MAX_BYTES - 3:
        return keyword
    for full in xmp:
        if full.startswith(keyword) and full != keyword:
            return full
    return keyword
