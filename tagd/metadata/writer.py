"""Reading and writing a photo's keywords, with provenance for revert: which file holds them
(the photo or a sidecar), what each keyword field must hold (the MWG rule, hierarchies, IPTC
charsets, XP keywords, regions), what tagd's namespace records, and what must read back.

Every write goes through the safe write procedure (tagd.metadata.safe_write: a verified temp
file, fsynced, swapped in with os.replace; the original byte-identical on any failure), with
the disk primitives in files.py, the keyword fields in fields.py, the containers in
containers.py. Writing what is already there is a no-op, so repeated writes leave the file
byte-identical to the first.

Over 400 lines: read, write and revert share the field mapping and the provenance rules,
which are one piece of knowledge (what tagd did to which field, and how to undo it).
"""

from __future__ import annotations

import logging
import os
import re
import stat as stat_mod
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from tagd.metadata.containers import (
    STASH_NONSTANDARD_HEADER, STASH_STANDARD_HEADER, XMP_NONSTANDARD_HEADER, Container, StructureError, inspect,
    jpeg_head, jpeg_stub,
)
from tagd.metadata.exiftool import ExifTool, ExifToolError, ExifToolPool
from tagd.metadata.files import InFileUnsafe, WriteError
from tagd.metadata.fields import (
    ALWAYS, FIELDS, READ_ARGS, SEPARATORS, FieldValues, PhotoInfo, as_list, hierarchy_values, keywords_after_edits,
    mwg_keywords, read_xp_keywords, structural_warnings, truncate_utf8, unique, xp_argument,
)
from tagd.metadata.iptc import MIXED as IPTC_MIXED, READ_CHARSET as IPTC_READ_CHARSET, IptcState, keyword_args
from tagd.metadata.jpeg_xmp import drop_stash, fold, has_legacy_xmp, packets_by_precedence, unfold
from tagd.metadata.provenance import NS, Provenance
from tagd.metadata.regions import REGION_INFO, Box
from tagd.metadata import regions as mwg
from tagd.metadata.safe_write import SafeWrite
from tagd.metadata.sidecar import (
    IN_FILE_SUFFIXES, SidecarNaming, SidecarPolicy, existing_sidecar, sidecar_path, wants_sidecar,
)

log = logging.getLogger(__name__)

_UNCHANGED: Any = object()  # regions: leave them as they are
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")













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
        self.safe = SafeWrite(self.exiftool, options.mtime)

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
            records = self.safe.packet_records(path, packets_by_precedence(data, container), Path(scratch))
        # Every packet's keywords are the user's (some reader shows each packet): the union, the
        # winning (standard) packet's first. The fold itself keeps the standard packet's values.
        for tag in (t for t in FIELDS.values() if t.startswith("XMP-")):
            values = unique(v for r in reversed(records) for v in as_list(r.get(tag)) if v != "")
            if values:
                record[tag] = values
        if refusal is not None:
            record[_REFUSAL] = f"its XMP cannot be folded into one packet ({refusal})"
        return record


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
                self.safe.remove_sidecar(current.target, current.stat)
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
        """Write `values` and `provenance` through the safe procedure (tagd.metadata.safe_write);
        returns the sha256 of the file as written. `finish`: a last change of the JPEG's
        segments after exiftool's verified edit (revert of folded XMP: jpeg_xmp.unfold or
        drop_stash). `restore_iptc`: a revert's IPTC charset and digest to go back to
        (iptc.keyword_args). `regions`: the RegionInfo to write (None: remove it; _UNCHANGED:
        leave it)."""
        target = current.target
        if current.structure_warnings:
            raise WriteError(target, f"damaged metadata ({current.structure_warnings[0]}); not rewritten")
        if current.in_file_refusal and target == current.photo:
            raise InFileUnsafe(target, current.in_file_refusal)
        if current.iptc.charset == IPTC_MIXED and values.get("iptc") is not None:
            raise InFileUnsafe(target, "its IPTC mixes UTF-8 and Latin-1 text without saying which, and rewriting it "
                                       "would garble one of them")
        # One charset reads both files in the checks: a declared block ignores it, and only an
        # undeclared Latin block (before, or after a revert) needs Latin.
        charsets = {current.iptc.charset, restore_iptc.charset if restore_iptc else "none"}
        charset = IPTC_READ_CHARSET if charsets & {"Latin", IPTC_MIXED} else "UTF8"
        regions_written = regions is not _UNCHANGED
        edited = {*FIELDS.values(), *([REGION_INFO] if regions_written else [])}

        def expected(key: str) -> bool:
            return key in edited or key.startswith(f"{NS}:")

        def check(old: dict[str, Any], new: dict[str, Any], temp: Path) -> None:
            """Everything tagd wrote reads back as written; the user's own regions come through."""
            if regions_written and _canonical(mwg.user_regions(old.get(REGION_INFO))) != \
                    _canonical(mwg.user_regions(new.get(REGION_INFO))):
                raise InFileUnsafe(target, "its own MWG regions would not come through unchanged")
            got = FieldValues.from_exiftool(new, read_xp_keywords(temp) if temp.suffix else None).present
            for short, wanted in values.items():
                if (got.get(short) or None) != (wanted or None):
                    raise InFileUnsafe(target, f"its {FIELDS[short]} keywords did not read back as they were written")
            got_prov = Provenance.from_exiftool(new)
            if (got_prov.comparable() if got_prov else None) != (provenance.comparable() if provenance else None):
                raise InFileUnsafe(target, "tagd's record of its changes did not read back as it was written")

        with tempfile.TemporaryDirectory(prefix="tagd-regions-") as scratch:
            args = [*self._exiftool_args(values, provenance, current.iptc, restore_iptc),
                    *self._region_args(regions, Path(scratch))]
            return self.safe.apply(target, current.stat, args, charset=charset, expected=expected, check=check,
                                   finish=finish)

    @staticmethod
    def _region_args(regions: dict[str, Any] | None | object, scratch: Path) -> list[str]:
        if regions is _UNCHANGED:
            return []
        if regions is None:
            return [f"-{REGION_INFO}="]
        return [f"-j={mwg.import_file(regions, scratch)}"]  # type: ignore[arg-type]










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


def _keywords_of(fields: dict[str, list[str] | None]) -> list[str]:
    """The keywords a set of field values shows by the MWG rule. Only tagd writes such sets
    (its originals, a revert), keeping IPTC in step with XMP: so XMP, where there is any, wins."""
    present = {k: v for k, v in fields.items() if v is not None}
    return mwg_keywords(FieldValues(present, has_xmp="subject" in present))


def _current_keywords(values: FieldValues, prov: Provenance | None) -> list[str]:
    return keywords_after_edits(values, prov.added, prov.written) if prov else mwg_keywords(values)














