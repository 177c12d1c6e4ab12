"""Reading and writing a photo's keywords, atomically and verified, with provenance for revert.

The safe write procedure (shared/METADATA.md): refuse broken or hostile files; have exiftool
write a temp file beside the original; check the temp file (image payload byte-identical,
all other metadata unchanged, keywords read back, no new validation warnings); fsync it;
carry over mode, owner and xattrs; make sure the original did not change meanwhile;
`os.replace`; fsync the directory. On any failure the temp file is removed and the original
is byte-identical. Writing what is already there is a no-op, so repeated writes leave the
file byte-identical to the first.

Over 400 lines: MetadataWriter's read, write and revert and the steps of the safe write are one
object's methods over one exiftool and one temp-file discipline. The disk side is in
files.py, the keyword fields in fields.py, the container formats in containers.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import stat as stat_mod
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from tagd.memory import large_operation
from tagd.metadata.containers import (
    STASH_NONSTANDARD_HEADER, STASH_STANDARD_HEADER, XMP_NONSTANDARD_HEADER, Container, StructureError, inspect,
    jpeg_edit_stub, jpeg_head, jpeg_stub, jpeg_unstub, metadata_stub, png_stub, png_unstub, single_image, sniff,
)
from tagd.metadata import files
from tagd.metadata.exiftool import ExifTool, ExifToolError, ExifToolPool, first_error
from tagd.metadata.files import READ_ONLY_DIRECTORY, READ_ONLY_FILE, TEMP_MARK, InFileUnsafe, WriteError, remove_stale_temp_files
from tagd.metadata.fields import (
    ALWAYS, FIELDS, READ_ARGS, SEPARATORS, FieldValues, PhotoInfo, as_list, hierarchy_values, keywords_after_edits, mwg_keywords, read_xp_keywords,
    structural_warnings, truncate_utf8, unique, xp_argument,
)
from tagd.metadata.iptc import MIXED as IPTC_MIXED, READ_CHARSET as IPTC_READ_CHARSET, IptcState, keyword_args
from tagd.metadata.jpeg_xmp import drop_stash, fold, has_legacy_xmp, packets_by_precedence, unfold
from tagd.metadata.provenance import NS, Provenance
from tagd.metadata.regions import REGION_INFO, Box
from tagd.metadata import regions as mwg
from tagd.metadata.sidecar import (
    IN_FILE_SUFFIXES, SidecarNaming, SidecarPolicy, existing_sidecar, sidecar_path, wants_sidecar,
)
from tagd.metadata.webp import set_xmp

log = logging.getLogger(__name__)

_UNCHANGED: Any = object()  # regions: leave them as they are
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Differences in these are the point of a write (or exiftool's bookkeeping), not damage.
_EXPECTED_CHANGES = {
    *FIELDS.values(),
    "Photoshop:IPTCDigest", "IPTC:CodedCharacterSet", "XMP-x:XMPToolkit", "SourceFile",
    "ExifTool:Validate", "ExifTool:Warning", "ExifTool:ExifToolVersion",
    "RIFF:WebP_Flags",  # the VP8X flag that announces an XMP chunk
    "IPTC:EnvelopeRecordVersion",  # added with CodedCharacterSet (envelope record 1:90)
    # exiftool's note that the XMP did not fit one JPEG segment and went on in Extended XMP
    # segments: the layout of the packet, not data (every property is compared, wherever it sits).
    "XMP-xmpNote:HasExtendedXMP",
}












@dataclass(frozen=True)
class WriteOptions:
    sidecar: SidecarPolicy = "auto"
    sidecar_naming: SidecarNaming = "full"
    mtime: Literal["update", "preserve"] = "update"


@dataclass
class PhotoKeywords:
    """A photo's keywords as tagd found them, and where they live."""

    photo: Path
    target: Path  # the file that holds (or will hold) the keywords: the photo or its sidecar
    in_sidecar: bool
    keywords: list[str]
    fields: FieldValues
    provenance: Provenance | None
    stat: os.stat_result | None  # of `target`; None for a sidecar not created yet
    file_keywords: list[str] = field(default_factory=list)  # in the photo itself, when a sidecar is used
    structure_warnings: list[str] = field(default_factory=list)  # exiftool's, for `target`
    info: PhotoInfo = field(default_factory=PhotoInfo)  # date taken, camera, size: for the index
    iptc: IptcState = field(default_factory=IptcState)  # `target`'s IPTC charset and digest
    stashed_xmp: bool = False  # a JPEG whose XMP tagd folded (jpeg_xmp): revert can give the originals back
    regions: dict[str, Any] | None = None  # XMP-mwg-rs:RegionInfo as exiftool read it (numbers as text)
    in_file_refusal: str | None = None  # why the photo itself cannot be written (InFileUnsafe), known at read


@dataclass
class KeywordUpdate:
    """What to write: the final keyword list (by relevance) and how tagd got there."""

    keywords: list[str]
    hierarchy: dict[str, str] = field(default_factory=dict)  # keyword -> "animal|cat"
    machine_tags: dict[str, float] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    suggested_removals: list[str] = field(default_factory=list)  # suggest mode: recorded, not applied
    model_version: str | None = None
    regions: list[Box] | None = None  # the detector's objects to write as MWG regions (None: regions untouched)


@dataclass
class WriteOutcome:
    photo: Path
    target: Path
    changed: bool
    keywords: list[str]
    message: str = ""
    photo_sha256: str | None = None  # of the photo file as it is now, when tagd rewrote it
    sidecar_reason: str | None = None  # why a photo that is written in-file got a sidecar instead


def clean_keyword(keyword: str) -> str:
    """Keywords are single-line text (exiftool takes one argument per line): control characters
    become spaces, ends are trimmed; the text between is the user's and stays as it is."""
    return _CONTROL.sub(" ", keyword).strip()


class MetadataWriter:
    def __init__(self, exiftool: ExifTool | ExifToolPool | None = None, options: WriteOptions = WriteOptions()) -> None:
        self.exiftool = exiftool or ExifTool()
        self.options = options
        self._cleaned_dirs: set[Path] = set()
        self._clean_lock = threading.Lock()

    @property
    def parallelism(self) -> int:
        """How many threads may write at once, each with its own exiftool process."""
        return self.exiftool.size if isinstance(self.exiftool, ExifToolPool) else 1

    # ---- reading --------------------------------------------------------------------------
    def target(self, photo: Path) -> Path:
        """The file a write of `photo`'s keywords goes to: the photo, or its sidecar."""
        photo = Path(os.path.realpath(photo))
        sidecar = existing_sidecar(photo)
        if sidecar is None and not wants_sidecar(photo, self.options.sidecar):
            return photo
        return sidecar or sidecar_path(photo, self.options.sidecar_naming)

    def read(self, photo: Path) -> PhotoKeywords:
        """The photo's keywords by the MWG rule, from its sidecar when it has (or needs) one."""
        photo = Path(os.path.realpath(photo))
        use_sidecar = wants_sidecar(photo, self.options.sidecar)
        sidecar = existing_sidecar(photo)
        try:
            photo_stat = os.stat(photo)
        except FileNotFoundError:
            raise WriteError(photo, "file not found") from None
        except OSError as exc:
            raise WriteError(photo, f"cannot stat: {exc.strerror}") from None
        if not stat_mod.S_ISREG(photo_stat.st_mode):
            raise WriteError(photo, "not a regular file")
        if use_sidecar or sidecar is not None:
            target = sidecar or sidecar_path(photo, self.options.sidecar_naming)
            file_record, _ = self._read_record(photo)
            file_values = FieldValues.from_exiftool(file_record, read_xp_keywords(photo))
            if sidecar is not None:
                record, _ = self._read_record(sidecar)  # XMP only: no IPTC charset to keep
                values = FieldValues.from_exiftool(record)
                prov = Provenance.from_exiftool(record)
                keywords = _current_keywords(values, prov) if values.present else mwg_keywords(file_values)
                return PhotoKeywords(photo, sidecar, True, keywords, values, prov,
                                     os.stat(sidecar), mwg_keywords(file_values), info=PhotoInfo.from_exiftool(file_record),
                                     regions=record.get(REGION_INFO) or file_record.get(REGION_INFO))
            keywords = mwg_keywords(file_values)
            return PhotoKeywords(photo, target, True, keywords, FieldValues(), None, None, keywords,
                                 info=PhotoInfo.from_exiftool(file_record), regions=file_record.get(REGION_INFO))
        return self._read_in_file(photo, photo_stat)

    def _read_in_file(self, photo: Path, photo_stat: os.stat_result) -> PhotoKeywords:
        record, iptc = self._read_record(photo)
        values = FieldValues.from_exiftool(record, read_xp_keywords(photo))
        prov = Provenance.from_exiftool(record)
        return PhotoKeywords(photo, photo, False, _current_keywords(values, prov), values, prov, photo_stat,
                             structure_warnings=structural_warnings(record), info=PhotoInfo.from_exiftool(record),
                             iptc=iptc, stashed_xmp=bool(record.get(_STASHED)),
                             in_file_refusal=record.get(_REFUSAL), regions=record.get(REGION_INFO))

    def _read_record(self, path: Path) -> tuple[dict[str, Any], IptcState]:
        """exiftool's record, its IPTC text decoded in the file's charset, and that charset.

        A JPEG with legacy XMP (jpeg_xmp) is read as tagd will write it: folded, so that the
        keywords of every packet count, as some reader shows each of them. Where it cannot be
        folded, its keyword fields are the union of the packets' (and the record says why the
        photo itself must not be written)."""
        head = jpeg_head(path) if path.suffix.lower() in (".jpg", ".jpeg", ".jpe") else None
        record = None
        if head is not None and XMP_NONSTANDARD_HEADER in head:
            record = self._legacy_view(path)
        if record is None:
            record = self._exiftool_record(path)
        if head is not None and (STASH_STANDARD_HEADER in head or STASH_NONSTANDARD_HEADER in head):
            record[_STASHED] = True
        return record, IptcState.from_exiftool(record)

    def _exiftool_record(self, path: Path, source: Path | None = None) -> dict[str, Any]:
        try:
            (record,) = self.exiftool.read_json([source or path], READ_ARGS, IPTC_READ_CHARSET)
        except ExifToolError as exc:
            raise WriteError(path, f"cannot read metadata: {exc}") from None
        if "ExifTool:Error" in record:
            raise WriteError(path, f"cannot read metadata: {record['ExifTool:Error']}")
        return record

    def _legacy_view(self, path: Path) -> dict[str, Any] | None:
        try:
            data = path.read_bytes()
            container = inspect(data, path.suffix)
        except (OSError, StructureError):
            return None  # the write refuses it with the reason; read what exiftool reads
        if not has_legacy_xmp(container):
            return None
        refusal = None
        with tempfile.TemporaryDirectory(prefix="tagd-read-") as scratch:
            try:
                folded = fold(data, container)
                stub = jpeg_stub(folded, inspect(folded, path.suffix), one_image=True)
                assert stub is not None
                view = Path(scratch) / "folded.jpg"
                view.write_bytes(stub)
                record = self._exiftool_record(path, view)
            except StructureError as exc:
                refusal = exc.reason
                record = self._exiftool_record(path)
            records = self._packet_records(path, packets_by_precedence(data, container), Path(scratch))
        # Every packet's keywords are the user's (some reader shows each packet): the union, the
        # winning (standard) packet's first. The fold itself keeps the standard packet's values.
        for tag in (t for t in FIELDS.values() if t.startswith("XMP-")):
            values = unique(v for r in reversed(records) for v in as_list(r.get(tag)) if v != "")
            if values:
                record[tag] = values
        if refusal is not None:
            record[_REFUSAL] = f"its XMP cannot be folded into one packet ({refusal})"
        return record

    def _packet_records(self, path: Path, packets: list[bytes], scratch: Path) -> list[dict[str, Any]]:
        """exiftool's reading of each XMP packet on its own."""
        files = []
        for i, packet in enumerate(packets):
            files.append(scratch / f"packet{i}.xmp")
            files[-1].write_bytes(packet)
        try:
            return self.exiftool.read_json(files, _ALL_ARGS)
        except ExifToolError as exc:
            raise WriteError(path, f"cannot read metadata: {exc}") from None

    # ---- writing --------------------------------------------------------------------------
    def write(self, current: PhotoKeywords, update: KeywordUpdate) -> WriteOutcome:
        """Write `update`; a sound photo that cannot be edited in place safely (InFileUnsafe)
        gets a sidecar instead when sidecars are allowed (`write.sidecar = "auto"`)."""
        try:
            return self._write(current, update)
        except InFileUnsafe as exc:
            if current.in_sidecar or current.target != current.photo:
                raise
            log.info("%s: %s; keywords go to a sidecar", current.photo, exc.reason)
            instead = PhotoKeywords(current.photo, sidecar_path(current.photo, self.options.sidecar_naming), True,
                                    list(current.keywords), FieldValues(), None, None, list(current.keywords),
                                    info=current.info, regions=current.regions)
            outcome = self._write(instead, update)
            outcome.sidecar_reason = exc.reason
            return outcome

    def _write(self, current: PhotoKeywords, update: KeywordUpdate) -> WriteOutcome:
        final = unique(k for k in (clean_keyword(k) for k in update.keywords) if k)
        if set(final) == set(current.keywords):
            # The same keywords ranked a little differently (the library's evidence grows):
            # the file's order stays, and an unchanged photo is not rewritten to reorder it.
            final = list(current.keywords)
        values = self._field_values(current, final, update.hierarchy)
        previous = current.provenance
        provenance = Provenance(
            model_version=update.model_version,
            machine_tags={k: v for k, v in update.machine_tags.items() if k in final},
            added=[k for k in update.added if k in final],
            removed=list(update.removed),
            rejected=list(update.rejected),
            suggested_removals=[k for k in update.suggested_removals if k in final],
            written=final,
            originals=previous.originals if previous else dict(current.fields.present),
            created_sidecar=previous.created_sidecar if previous else (current.in_sidecar and current.stat is None),
            original_iptc=previous.original_iptc if previous else current.iptc,
            regions_before=previous.regions_before if previous and previous.regions_before else
            ("present" if current.regions else "absent") if update.regions is not None else None,
        )
        region_info: dict[str, Any] | None | object = _UNCHANGED
        if update.regions is not None:
            wanted = mwg.merged(current.regions, update.regions, (current.info.width, current.info.height))
            if _canonical(wanted) != _canonical(current.regions):
                region_info = wanted
        if previous is not None and previous.comparable() == provenance.comparable() and region_info is _UNCHANGED and all(
            current.fields.present.get(short) == vals for short, vals in values.items()
        ):
            return WriteOutcome(current.photo, current.target, False, final, "already up to date")
        digest = self._apply(current, values, provenance, regions=region_info)
        return WriteOutcome(current.photo, current.target, True, final,
                            photo_sha256=digest if current.target == current.photo else None)

    def revert(self, photo: Path) -> WriteOutcome:
        """Give the photo back the keywords it had before tagd, and drop tagd's namespace.

        A photo tagd wrote in the file and later (`--sidecar`) into a sidecar too is reverted in
        both places, the sidecar first: its "originals" hold the file's keywords with tagd's."""
        current = self.read(photo)
        outcome = self._revert(current)
        if not current.in_sidecar or current.photo.suffix.lower() not in IN_FILE_SUFFIXES:
            return outcome
        inner = self._read_in_file(current.photo, os.stat(current.photo))
        if inner.provenance is None:
            return outcome
        in_file = self._revert(inner)
        if not outcome.changed:
            return in_file
        keywords = in_file.keywords if not current.target.exists() else outcome.keywords
        return WriteOutcome(current.photo, current.target, True, keywords, f"{outcome.message}, and {in_file.message} in the file")

    def _revert(self, current: PhotoKeywords) -> WriteOutcome:
        prov = current.provenance
        if prov is None:
            return WriteOutcome(current.photo, current.target, False, current.keywords, "nothing to revert: tagd never wrote here")
        added = set(prov.added)
        users = unique([*(k for k in current.keywords if k not in added), *prov.removed])
        created = prov.created_sidecar and current.in_sidecar
        before_tagd = current.file_keywords if created else _keywords_of(prov.originals)
        # Exact restore only if it loses nothing: keywords the user added between two tagd
        # writes (and tagd later removed, in full mode) are not in the originals.
        if set(current.keywords) == set(prov.written) and set(users) == set(before_tagd):
            # Untouched since tagd's last write: every field back exactly as it was.
            if created:
                self._remove_sidecar(current)
                return WriteOutcome(current.photo, current.target, True, current.file_keywords, "removed the sidecar tagd created")
            values = {short: prov.originals.get(short) for short in set(FIELDS) if short in prov.originals or short in current.fields.present}
            # XMP tagd folded goes back as it was, byte for byte (jpeg_xmp), IPTC to its charset.
            finish = unfold if current.stashed_xmp else None
            restore_iptc = prov.original_iptc
        else:
            # The user edited keywords after tagd: keep their edits, undo only tagd's own; the
            # XMP tagd kept from before its fold no longer describes the photo.
            values = self._field_values(current, users, {})
            finish = drop_stash if current.stashed_xmp else None
            restore_iptc = None
        region_info: dict[str, Any] | None | object = _UNCHANGED
        if prov.regions_before is not None and mwg.tagd_regions(current.regions):
            # Only tagd's regions go; the RegionInfo goes too where the file had none before.
            keep = mwg.user_regions(current.regions)
            region_info = None if not keep and prov.regions_before == "absent" else \
                mwg.merged(current.regions, [], (current.info.width, current.info.height))
        self._apply(current, values, None, finish, restore_iptc=restore_iptc, regions=region_info)
        restored = _keywords_of(values)
        return WriteOutcome(current.photo, current.target, True, restored, "reverted")

    def _field_values(self, current: PhotoKeywords, final: list[str], hierarchy: dict[str, str]) -> dict[str, list[str] | None]:
        present = current.fields.present
        values: dict[str, list[str] | None] = {"subject": final}
        # A keyword's path, from whichever field the user gave it one in (People/Anna in
        # digiKam's TagsList is People|Anna for Lightroom's field too), else tagd's for its tags.
        paths = dict(hierarchy)
        for short, sep in SEPARATORS.items():
            for entry in present.get(short, []):
                if sep in entry and "|" not in entry.replace(sep, ""):
                    paths[entry.split(sep)[-1].strip()] = entry.replace(sep, "|")
        for short, sep in SEPARATORS.items():
            if short in ALWAYS or short in present:
                values[short] = hierarchy_values(present.get(short, []), final, paths, sep)
        if "lastkeywordxmp" in present and not any("/" in e for e in present["lastkeywordxmp"]):
            values["lastkeywordxmp"] = final  # a flat list where the file has one: keep it flat
        # WebP keeps IPTC/EXIF in chunks tagd does not rewrite (see webp.py): XMP only there.
        xmp_only = current.target.suffix.lower() == ".webp"
        if "iptc" in present and not xmp_only:
            values["iptc"] = unique(truncate_utf8(k) for k in final)
        if "xpkeywords" in present and not xmp_only:
            values["xpkeywords"] = [k for k in final if ";" not in k]  # ";" separates XPKeywords
        for short in ALWAYS:
            values.setdefault(short, [])
        return values

    # ---- the safe write procedure -----------------------------------------------------------
    def _apply(self, current: PhotoKeywords, values: dict[str, list[str] | None], provenance: Provenance | None,
               finish: Callable[[bytes, Container], bytes] | None = None, restore_iptc: IptcState | None = None,
               regions: dict[str, Any] | None | object = _UNCHANGED) -> str:
        """Write through the safe procedure; returns the sha256 of the file as written.
        `finish`: a last change of the JPEG's segments after exiftool's verified edit (revert
        of folded XMP: jpeg_xmp.unfold or drop_stash). `restore_iptc`: a revert's IPTC charset
        and digest to go back to (iptc.keyword_args). `regions`: the RegionInfo to write (None:
        remove it; _UNCHANGED: leave it)."""
        target = current.target
        self._clean_stale_temp_files(target.parent)
        creating = current.stat is None
        if current.structure_warnings:
            raise WriteError(target, f"damaged metadata ({current.structure_warnings[0]}); not rewritten")
        if current.in_file_refusal and target == current.photo:
            raise InFileUnsafe(target, current.in_file_refusal)
        if current.iptc.charset == IPTC_MIXED and values.get("iptc") is not None:
            raise InFileUnsafe(target, "its IPTC mixes UTF-8 and Latin-1 text without saying which, and rewriting it "
                                       "would garble one of them")
        try:
            folder_mode = os.stat(target.parent).st_mode
        except OSError as exc:
            raise WriteError(target, files.os_reason(exc)) from None
        if not folder_mode & (stat_mod.S_IWUSR | stat_mod.S_IWGRP | stat_mod.S_IWOTH):
            # Root could write anyway; the owner's intent counts, as for a read-only file.
            raise WriteError(target, f"{READ_ONLY_DIRECTORY}; not written")
        large = not creating and current.stat is not None and current.stat.st_size >= LARGE_FILE_BYTES
        with large_operation if large else contextlib.nullcontext():
            with tempfile.TemporaryDirectory(prefix="tagd-regions-") as scratch:
                return self._apply_locked(current, values, provenance, creating, finish, restore_iptc,
                                          self._region_args(regions, Path(scratch)))

    def _apply_locked(self, current: PhotoKeywords, values: dict[str, list[str] | None],
                      provenance: Provenance | None, creating: bool,
                      finish: Callable[[bytes, Container], bytes] | None, restore_iptc: IptcState | None,
                      region_args: list[str]) -> str:
        target = current.target
        original_data, before = b"", None
        if not creating:
            original_data, before = self._precheck(target, current.stat)
        temp = self._temp_name(target, target.suffix)
        source, scratch = target, None  # what exiftool rewrites when it takes a whole file
        args = [*self._exiftool_args(values, provenance, current.iptc, restore_iptc), *region_args]
        # One charset reads both files in the checks: a declared block ignores it, and only an
        # undeclared Latin block (before, or after a revert) needs Latin.
        charsets = {current.iptc.charset, restore_iptc.charset if restore_iptc else "none"}
        charset = IPTC_READ_CHARSET if charsets & {"Latin", IPTC_MIXED} else "UTF8"
        try:
            kind = None if creating else sniff(original_data[:16])
            if before is not None and has_legacy_xmp(before):
                # The edit, and every check of it, start from the file with its XMP folded
                # into one standard packet (jpeg_xmp): what every reader will then see.
                original_data = self._fold(target, original_data, before)
                before = inspect(original_data, target.suffix)
                if not single_image(before):
                    source = scratch = self._temp_name(target, target.suffix)
                    scratch.write_bytes(original_data)
            if creating:
                self._exiftool_create(target, temp, args, [])
            elif kind == "webp":
                self._write_webp(target, original_data, temp, args)
            elif kind == "jpeg" and before is not None and single_image(before):
                self._write_jpeg(target, original_data, before, temp, args)
            elif not (kind == "png" and self._write_png(target, original_data, temp, args)):
                self._exiftool_create(target, temp, ["-o", Path(os.path.abspath(temp)), *args], [source])
            digest = ""
            if before is not None:
                digest = self._verify(target, source, original_data, before, temp, values, provenance, charset,
                                      regions_written=bool(region_args))
                if finish is not None:
                    digest = self._finish(target, temp, before, finish)
            files.fsync_file(temp)
            if not creating:
                files.copy_attributes(target, temp, current.stat, self.options.mtime)
            self._replace(temp, target, current.stat)
            return digest
        except BaseException as exc:
            files.unlink_quietly(temp)  # whatever went wrong, the original is untouched and no temp stays
            if isinstance(exc, ExifToolError):
                raise WriteError(target, str(exc)) from None
            if isinstance(exc, OSError):
                raise WriteError(target, files.os_reason(exc)) from None
            raise
        finally:
            if scratch is not None:
                files.unlink_quietly(scratch)

    @staticmethod
    def _region_args(regions: dict[str, Any] | None | object, scratch: Path) -> list[str]:
        if regions is _UNCHANGED:
            return []
        if regions is None:
            return [f"-{REGION_INFO}="]
        return [f"-j={mwg.import_file(regions, scratch)}"]  # type: ignore[arg-type]

    def _fold(self, target: Path, data: bytes, container: Container) -> bytes:
        """The JPEG with its legacy XMP folded (jpeg_xmp.fold), checked with exiftool: the one
        packet must read as each old packet read on its own, the standard packet's values
        winning where they disagree."""
        try:
            folded = fold(data, container)
        except StructureError as exc:
            raise InFileUnsafe(target, f"its XMP cannot be folded into one packet ({exc.reason})") from None
        packets = packets_by_precedence(data, container)
        merged = packets_by_precedence(folded, inspect(folded, target.suffix))
        with tempfile.TemporaryDirectory(prefix="tagd-fold-") as scratch:
            *old, new = self._packet_records(target, [*packets, *merged], Path(scratch))
        expected: dict[str, Any] = {}
        for record in old:
            expected.update(record)
        changed = sorted(k for k in set(expected) | set(new) if k.startswith("XMP") and expected.get(k) != new.get(k))
        if changed:
            raise InFileUnsafe(target, f"folding its XMP packets into one would change {', '.join(changed[:3])}")
        return folded

    def _finish(self, target: Path, temp: Path, before: Container, finish: Callable[[bytes, Container], bytes]) -> str:
        """Apply `finish` to the verified temp file; its image data must stay as it was."""
        data = temp.read_bytes()
        try:
            new = finish(data, inspect(data, target.suffix))
            after = inspect(new, target.suffix)
        except StructureError as exc:
            raise WriteError(target, f"the reverted file failed the structure check: {exc.reason}") from None
        if after.payload != before.payload:
            raise WriteError(target, "image data would change; not reverted")
        with open(temp, "wb") as fh:
            fh.write(new)
        return hashlib.sha256(new).hexdigest()

    def _temp_name(self, target: Path, suffix: str) -> Path:
        return target.parent / f".{target.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{suffix}"

    def _exiftool_create(self, target: Path, output: Path, args: list[str | Path], sources: list[Path]) -> None:
        out, err = self.exiftool.execute([*args, *(Path(os.path.abspath(s)) for s in sources or [output])])
        # With a JSON import (-j=, the regions) exiftool reports its count on stderr instead.
        if "1 image files created" not in out + err or not output.is_file():
            raise WriteError(target, f"exiftool did not write it: {first_error(err) or out.strip() or 'no output'}")

    def _write_png(self, target: Path, data: bytes, temp: Path, args: list[str]) -> bool:
        """exiftool edits the PNG without its image data (a stub, see containers.png_stub), and
        the image data goes back in: exiftool CRC-checks every chunk it copies, in Perl (~2 s for
        20 MB). False when the file cannot be cut that way: the caller writes it whole."""
        try:
            stub, idat_run = png_stub(data)
        except StructureError:
            return False
        self._edit_apart(target, temp, args, stub, ".png", lambda out: png_unstub(out, idat_run))
        return True

    def _write_jpeg(self, target: Path, data: bytes, container: Container, temp: Path, args: list[str]) -> None:
        """exiftool edits the JPEG's metadata alone (a stub without the scan data, see containers.
        jpeg_edit_stub); the scan data goes back after it. Half the exiftool time of a whole-file
        rewrite, and Perl never copies the megabytes of image data."""
        assert container.payload is not None
        payload = container.payload
        self._edit_apart(target, temp, args, jpeg_edit_stub(data, container), ".jpg", lambda out: jpeg_unstub(out, payload))

    def _write_webp(self, target: Path, data: bytes, temp: Path, args: list[str]) -> None:
        """exiftool edits the XMP as a standalone packet; webp.set_xmp swaps the chunk."""
        packets = inspect(data, target.suffix).xmp_packets
        self._edit_apart(target, temp, args, packets[0] if packets else None, ".xmp", lambda out: [set_xmp(data, out)])

    def _edit_apart(self, target: Path, temp: Path, args: list[str], piece: bytes | None, suffix: str,
                    put_back: Callable[[bytes], Sequence[bytes | memoryview]]) -> None:
        """exiftool edits `piece`, a part of the file (None: a new one), as a file of its own;
        `put_back` gives the whole new file's parts from what exiftool wrote; they go into `temp`."""
        piece_in, piece_out = self._temp_name(target, suffix), self._temp_name(target, suffix)
        try:
            if piece is not None:
                piece_in.write_bytes(piece)
                self._exiftool_create(target, piece_out, ["-o", Path(os.path.abspath(piece_out)), *args], [piece_in])
            else:
                self._exiftool_create(target, piece_out, args, [])
            new = put_back(piece_out.read_bytes())
        except StructureError as exc:
            raise WriteError(target, exc.reason) from None
        finally:
            files.unlink_quietly(piece_in)
            files.unlink_quietly(piece_out)
        with open(temp, "xb") as fh:
            for part in new:
                fh.write(part)

    def _precheck(self, target: Path, seen: os.stat_result) -> tuple[bytes, Container]:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            raise WriteError(target, "file vanished before writing") from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise WriteError(target, "not a regular file")
        if files.changed(seen, st):
            raise WriteError(target, "file changed since its keywords were read; not written")
        if st.st_nlink > 1:
            raise WriteError(target, f"hard-linked ({st.st_nlink} links): rewriting would break the link; use sidecar mode")
        if not st.st_mode & (stat_mod.S_IWUSR | stat_mod.S_IWGRP | stat_mod.S_IWOTH):
            raise WriteError(target, f"{READ_ONLY_FILE}; not written")
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise WriteError(target, "directory is not writable; use sidecar mode elsewhere or fix permissions")
        try:
            data = target.read_bytes()
        except OSError as exc:
            raise WriteError(target, files.os_reason(exc)) from None
        try:
            return data, inspect(data, target.suffix)
        except StructureError as exc:
            raise WriteError(target, exc.reason) from None

    def _exiftool_args(self, values: dict[str, list[str] | None], provenance: Provenance | None,
                       iptc: IptcState, restore_iptc: IptcState | None) -> list[str]:
        args = ["-charset", f"iptc={iptc.read_charset}"]  # how exiftool reads what it keeps
        for short, items in values.items():
            tag = FIELDS[short]
            if short == "iptc":
                args += keyword_args(items, iptc, restore_iptc)  # its own -charset wins: it comes later
                continue
            args.append(f"-{tag}=")
            if items is None:
                continue
            if short == "xpkeywords":
                if items:
                    args.append(f"-{tag}={xp_argument(items)}")
            else:
                args += [f"-{tag}={item}" for item in items]
        args += provenance.assignments() if provenance else [f"-{NS}:all="]
        return args

    def _verify(self, original: Path, source: Path, original_data: bytes, before: Container, temp: Path,
                values: dict[str, list[str] | None], provenance: Provenance | None, charset: str,
                regions_written: bool = False) -> str:
        """Refuse a temp file that is not the original plus exactly our edit; returns its sha256.
        `original_data` and `before`: the original's bytes and structure, as the edit started
        from them (held in `source`: the original itself, or a scratch copy of its folded form)."""
        new_data = temp.read_bytes()
        try:
            after = inspect(new_data, original.suffix)
        except StructureError as exc:
            raise WriteError(original, f"written file failed the structure check: {exc.reason}") from None
        if before.payload is not None and before.payload != after.payload:
            raise InFileUnsafe(original, "exiftool would re-encode its image data")
        if before.kind == "tiff":
            files.same_pixels(original, temp)
        old, new = self._metadata_records(original, source, original_data, new_data, before, after, temp, charset)
        if regions_written and _canonical(mwg.user_regions(old.get(REGION_INFO))) != \
                _canonical(mwg.user_regions(new.get(REGION_INFO))):
            raise InFileUnsafe(original, "its own MWG regions would not come through unchanged")
        expected = _EXPECTED_CHANGES | ({REGION_INFO} if regions_written else set())
        changed = sorted(
            key for key in set(old) | set(new)
            if key not in expected and not key.startswith(f"{NS}:") and not key.startswith("Composite:")
            and not key.endswith(("Offset", "Offsets"))  # where data sits moves; the data is checked apart
            and old.get(key) != new.get(key)
        )
        if changed:
            raise InFileUnsafe(original, f"exiftool would also change {', '.join(changed[:5])} in it")
        got = FieldValues.from_exiftool(new, read_xp_keywords(temp) if temp.suffix else None).present
        for short, expected in values.items():
            if (got.get(short) or None) != (expected or None):
                raise InFileUnsafe(original, f"its {FIELDS[short]} keywords did not read back as they were written")
        got_prov = Provenance.from_exiftool(new)
        if (got_prov.comparable() if got_prov else None) != (provenance.comparable() if provenance else None):
            raise InFileUnsafe(original, "tagd's record of its changes did not read back as it was written")
        return hashlib.sha256(new_data).hexdigest()

    def _metadata_records(self, original: Path, source: Path, original_data: bytes, new_data: bytes,
                          before: Container, after: Container, temp: Path, charset: str
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        """All metadata of the original and the temp file, refusing new validation warnings.

        `exiftool -validate` costs ~18 ms on a 12 MP JPEG and ~1.7 s on a 20 MB PNG, nearly all
        of it spent walking image data that is already proven byte-identical. So a JPEG whose
        payload is one image (no trailer such as MPF previews, whose offsets need the whole
        file) and a PNG are read and validated as their metadata alone (containers.
        metadata_stub), both files in one call (~4 ms each). Both stubs lack the same image
        data, so warnings about that cancel out; any difference comes from the edit.
        """
        # The payloads are equal (checked before): one scan says whether both are one image.
        one_image = single_image(before) if before.kind == "jpeg" else None
        stubs = [metadata_stub(original_data, before, one_image), metadata_stub(new_data, after, one_image)]
        if stubs[0] is not None and stubs[1] is not None:
            with tempfile.TemporaryDirectory(prefix="tagd-verify-") as scratch:
                paths = []
                for name, stub in zip(("before", "after"), stubs):
                    path = Path(scratch) / f"{name}{original.suffix.lower()}"
                    path.write_bytes(stub)
                    paths.append(path)
                old, new = self._read_all(original, paths, charset, validate=True)
            if _warning_count(new) > _warning_count(old):
                raise InFileUnsafe(original, f"exiftool would leave a new warning in it ({new.get('ExifTool:Warning')})")
            return old, new
        # Other containers: the files themselves; the original validated only when needed.
        old, new = self._read_all(original, [source, temp], charset, validate=False)
        new_warnings = self._validation_count(original, temp)
        if new_warnings and new_warnings > self._validation_count(original, source):
            raise InFileUnsafe(original, f"exiftool would leave a new warning in it ({new.get('ExifTool:Warning')})")
        return old, new

    def _read_all(self, original: Path, paths: list[Path], charset: str, validate: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            old, new = self.exiftool.read_json(paths, [*_ALL_ARGS, *(["-validate"] if validate else [])], charset)
        except ExifToolError as exc:
            raise WriteError(original, f"cannot re-read the written file: {exc}") from None
        return old, new

    def _validation_count(self, original: Path, path: Path) -> int:
        try:
            (record,) = self.exiftool.read_json([path], _VALIDATE_ARGS)
        except ExifToolError as exc:
            raise WriteError(original, f"cannot validate the written file: {exc}") from None
        return _warning_count(record)

    def _replace(self, temp: Path, target: Path, seen: os.stat_result | None) -> None:
        if seen is not None:
            try:
                now = os.stat(target)
            except FileNotFoundError:
                raise WriteError(target, "file vanished while writing; not replaced") from None
            if files.changed(seen, now):
                raise WriteError(target, "file changed while writing; not replaced (will retry when it settles)")
        elif target.exists():
            raise WriteError(target, "a sidecar appeared while writing; not replaced")
        os.replace(temp, target)
        files.fsync_dir(target.parent)

    def _remove_sidecar(self, current: PhotoKeywords) -> None:
        assert current.stat is not None
        now = os.stat(current.target)
        if files.changed(current.stat, now):
            raise WriteError(current.target, "sidecar changed while reverting; not removed")
        os.unlink(current.target)
        files.fsync_dir(current.target.parent)

    def _clean_stale_temp_files(self, directory: Path) -> None:
        """Remove temp files left by a tagd process that died between write and rename."""
        with self._clean_lock:
            if directory in self._cleaned_dirs:
                return
            self._cleaned_dirs.add(directory)
        removed = remove_stale_temp_files(directory)
        if removed:
            log.info("%s: removed %d temp file(s) left by an interrupted tagd", directory, removed)










# The safe write holds a file several times over (original, temp, their image data): ~100 MB
# for a 20 MB PNG or TIFF, so large files take tagd.memory's lock.
LARGE_FILE_BYTES = 8 << 20

_VALIDATE_ARGS = ["-G1", "-n", "-validate", "-ExifTool:Validate", "-ExifTool:Warning"]
def _canonical(value: Any) -> Any:
    """A structure with its numbers compared as numbers ("0.5000" is "0.5")."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return value


# Keys tagd adds to an exiftool record it read (never exiftool's own: those have a group).
_STASHED, _REFUSAL = "tagd:stashed-xmp", "tagd:in-file-refusal"
_ALL_ARGS = ["-a", "-G1", "-n", "-struct", "-all", "--System:all", "--File:all"]


def _keywords_of(fields: dict[str, list[str] | None]) -> list[str]:
    """The keywords a set of field values shows by the MWG rule. Only tagd writes such sets
    (its originals, a revert), keeping IPTC in step with XMP: so XMP, where there is any, wins."""
    present = {k: v for k, v in fields.items() if v is not None}
    return mwg_keywords(FieldValues(present, has_xmp="subject" in present))


def _current_keywords(values: FieldValues, prov: Provenance | None) -> list[str]:
    return keywords_after_edits(values, prov.added, prov.written) if prov else mwg_keywords(values)


def _warning_count(record: dict[str, Any]) -> int:
    # With -n, Validate reads "errors warnings minor-warnings".
    return sum(int(n) for n in re.findall(r"\d+", str(record.get("ExifTool:Validate", "0"))))












