"""IPTC's charset, and the exiftool arguments that change IPTC keywords and nothing else.

IPTC that does not declare its charset (no CodedCharacterSet, 1:90) has none: older tools
wrote Latin-1/cp1252, many newer ones UTF-8, and a file edited by both holds some of each.
Read as UTF-8, Latin-1 bytes come out as U+FFFD and a write would store "Caf?"; read as Latin,
UTF-8 comes out as "CafÃ©" and a write would make that permanent. So tagd reads IPTC as Latin
(which maps every byte to a character) and looks at each value's bytes: valid UTF-8 is
re-decoded as UTF-8, the rest stays Latin.

tagd leaves IPTC as it finds it unless there is text in it that readers decode differently:
an undeclared block gets 1:90 = UTF-8 when it holds (or tagd's keywords bring) text that is
not ASCII, and then only its non-ASCII Latin values are re-encoded (copying every IPTC value, as `-tagsFromFile @
-IPTC:all` does, rewrites times and dates in exiftool's own format: a 412-photo scan refused
one camera photo for it). What it found is recorded (IptcState.text), and a revert gives
exactly that back: the same bytes, the same digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IPTC_DIGEST = "Photoshop:IPTCDigest"
CURRENT_IPTC_DIGEST = "File:CurrentIPTCDigest"
CODED_CHARACTER_SET = "IPTC:CodedCharacterSet"
ENVELOPE_RECORD_VERSION = "IPTC:EnvelopeRecordVersion"
# How exiftool must be told to decode IPTC that declares no charset before tagd looks at it.
READ_CHARSET = "Latin"
MIXED = "mixed"


@dataclass(frozen=True)
class IptcState:
    """A file's IPTC charset and digest, as found."""

    charset: str = "none"  # "none" (no IPTC) | "declared" | "ascii" | "UTF8" | "Latin" | MIXED (undeclared ones)
    latin_tags: tuple[str, ...] = ()  # Latin or MIXED: the tags holding non-ASCII Latin text
    envelope: bool = False  # the envelope record version (1:00) was there
    digest: str | None = None  # Photoshop:IPTCDigest as found
    digest_matched: bool = False  # ... and it matched the IPTC data

    @classmethod
    def from_exiftool(cls, record: dict[str, Any]) -> "IptcState":
        """From a record read with `-charset iptc=READ_CHARSET`; decodes its IPTC text in place.
        Call once per record: decoding twice would take UTF-8 text for Latin."""
        iptc = {k: v for k, v in record.items() if k.startswith("IPTC:")}
        digest = record.get(IPTC_DIGEST)
        found = {"digest": None if digest is None else str(digest),
                 "digest_matched": digest is not None and str(digest) == str(record.get(CURRENT_IPTC_DIGEST)),
                 "envelope": ENVELOPE_RECORD_VERSION in record}
        if not iptc:
            return cls("none", **found)
        if CODED_CHARACTER_SET in record:
            return cls("declared", **found)  # exiftool follows the declaration whatever it is told
        kinds: set[str] = set()
        latin: list[str] = []
        for key, value in iptc.items():
            items = value if isinstance(value, list) else [value]
            decoded = []
            for item in items:
                text, kind = _redecode(str(item))
                decoded.append(text)
                if kind:
                    kinds.add(kind)
                if kind == "Latin" and key not in latin:
                    latin.append(key)
            record[key] = decoded if isinstance(value, list) else decoded[0]
        charset = MIXED if len(kinds) > 1 else kinds.pop() if kinds else "ascii"
        return cls(charset, tuple(latin), **found)

    @property
    def read_charset(self) -> str:
        """exiftool's `-charset iptc=` for reading this block's text right."""
        return READ_CHARSET if self.charset in ("Latin", MIXED) else "UTF8"

    def text(self) -> str:
        """For tagd's namespace (XMP-tagd:OriginalIPTC)."""
        return (f"charset={self.charset};envelope={int(self.envelope)};digest={self.digest or ''};"
                f"matched={int(self.digest_matched)};latin={','.join(self.latin_tags)}")

    @classmethod
    def parse(cls, text: str) -> "IptcState":
        fields = dict(part.partition("=")[::2] for part in text.split(";") if "=" in part)
        return cls(fields.get("charset", "none"), tuple(t for t in fields.get("latin", "").split(",") if t),
                   fields.get("envelope") == "1", fields.get("digest") or None, fields.get("matched") == "1")


def keyword_args(keywords: list[str] | None, state: IptcState, restore: IptcState | None = None) -> list[str]:
    """exiftool arguments that set IPTC:Keywords (None: delete them) in a block in `state`,
    changing nothing else that need not change; with `restore` (the state tagd found before
    its first write), the block goes back to that charset and digest."""
    args = ["-IPTC:Keywords="]
    charset = state.read_charset
    if restore is not None and not restore.envelope:
        args.append(f"-{ENVELOPE_RECORD_VERSION}=")  # exiftool adds it whenever it writes 1:90
    if restore is not None and state.charset == "declared" and restore.charset not in ("declared", "none"):
        # tagd declared UTF-8: undeclare it, and put back the Latin bytes it re-encoded.
        args += [f"-{CODED_CHARACTER_SET}="]
        if restore.charset in ("Latin", MIXED):
            charset = READ_CHARSET  # for writing: the undeclared block is Latin again
            args += _reencode(restore.latin_tags)
    elif restore is None and state.charset not in ("declared", "none") and not _fits(keywords or [], state):
        # A keyword the undeclared block cannot hold: declare UTF-8, re-encode its Latin text.
        args.append(f"-{CODED_CHARACTER_SET}=UTF8")
        args += _reencode(state.latin_tags)
    args += [f"-IPTC:Keywords={k}" for k in keywords or []]
    args.append(_digest_arg(restore))
    return ["-charset", f"iptc={charset}", *args]


def _reencode(tags: tuple[str, ...]) -> list[str]:
    """Copy these IPTC values onto themselves: exiftool decodes and encodes them again, in the
    charset the block has after this command (keywords are assigned, not copied)."""
    tags = tuple(t for t in tags if t != "IPTC:Keywords")
    return ["-tagsFromFile", "@", *(f"-{t}" for t in tags)] if tags else []


def _fits(keywords: list[str], state: IptcState) -> bool:
    """Whether `keywords` can go into the undeclared block and leave it undeclared. Only an
    ASCII block with ASCII keywords can: a block holding other text is declared on the first
    write, so that every reader decodes it alike (exiftool takes undeclared IPTC for Latin,
    exiv2 for UTF-8), and a revert undeclares it again."""
    return state.charset == "ascii" and all(k.isascii() for k in keywords)


def _digest_arg(restore: IptcState | None) -> str:
    """The IPTC digest says whether IPTC was edited after XMP (MWG): after tagd's write both
    agree; a revert puts back the digest as it was, or a fresh one where it had matched."""
    if restore is None or restore.digest_matched:
        return f"-{IPTC_DIGEST}=new"
    return f"-{IPTC_DIGEST}={restore.digest or ''}"


def _redecode(text: str) -> tuple[str, str | None]:
    """`text` as exiftool decoded it with the Latin charset, decoded again from its bytes:
    (text, "UTF8" | "Latin" | None for ASCII)."""
    raw = _latin_bytes(text)
    if raw is None or raw.isascii():
        return text, None
    try:
        return raw.decode("utf-8"), "UTF8"
    except UnicodeDecodeError:
        return text, "Latin"


def _latin_bytes(text: str) -> bytes | None:
    """The bytes exiftool's Latin charset decoded `text` from (None: it cannot have been)."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            if ord(ch) > 0xFF:
                return None
            out.append(ord(ch))  # the five bytes cp1252 leaves undefined map to themselves
    return bytes(out)
